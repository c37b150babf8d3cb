/** File access inside an instance (the `/files` API): a narrow interface drivers may implement. */
import type { InstanceRecord } from "../agent/store.ts";
import { concatBytes } from "./bytes.ts";

/** `other`: a device, FIFO or socket; reported, never read or written. */
export type FileType = "file" | "directory" | "symlink" | "other";

/** What the API reports about a path, with ids and mode as seen inside the instance. */
export interface FileInfo {
  type: FileType;
  uid: number;
  gid: number;
  /** Permission bits (e.g. 0o644), without the file type. */
  mode: number;
  size: number;
  /** Symlink target (for `symlink`). */
  target?: string;
  /** Entry names (for `directory`). */
  entries?: string[];
}

/** A regular file's metadata and content, streamed (never more than `info.size` bytes). */
export interface FileContent {
  info: FileInfo;
  body: ReadableStream<Uint8Array>;
}

export interface FileWrite {
  type: "file" | "directory" | "symlink";
  /** Ids inside the instance; undefined keeps the existing ones (or 0 for a new file). */
  uid?: number;
  gid?: number;
  /** Permission bits; undefined keeps the existing mode (or 0o644 / 0o755 for new ones). */
  mode?: number;
  /** Append to an existing file instead of replacing it. */
  append: boolean;
  /** Content of a file (streamed or whole), or the target of a symlink. */
  data?: Uint8Array | ReadableStream<Uint8Array>;
}

export interface FileAccess {
  /** Stats `path`; a directory also lists its entries. NotFound when missing. */
  stat(inst: InstanceRecord, path: string): Promise<FileInfo>;
  /**
   * What a GET of a path returns: a directory (with its entries) or a symlink (with its target)
   * as `stat` reports it, or a regular file's content; anything else is a BadRequest.
   */
  get(inst: InstanceRecord, path: string): Promise<FileInfo | FileContent>;
  write(inst: InstanceRecord, path: string, w: FileWrite): Promise<void>;
  /** Removes a file, symlink or empty directory. */
  remove(inst: InstanceRecord, path: string): Promise<void>;
}

/** The whole of a write's data, for accesses that cannot stream (bounded by `max` bytes). */
export async function dataBytes(
  data: FileWrite["data"],
  max: number,
): Promise<Uint8Array> {
  if (data === undefined) return new Uint8Array();
  if (data instanceof Uint8Array) return data;
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of data) {
    size += chunk.length;
    if (size > max) throw new RangeError(`More than ${max} bytes`);
    parts.push(chunk);
  }
  return concatBytes(parts);
}
