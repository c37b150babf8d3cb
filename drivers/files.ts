/** File access inside an instance (the `/files` API): a narrow interface drivers may implement. */
import type { InstanceSpec } from "./driver.ts";
import { concatBytes } from "../contract/bytes.ts";
import type { FileContent, FileInfo, FileWrite } from "../contract/files.ts";

export interface FileAccess {
  /** Stats `path`; a directory also lists its entries. NotFound when missing. */
  stat(inst: InstanceSpec, path: string): Promise<FileInfo>;
  /**
   * What a GET of a path returns: a directory (with its entries) or a symlink (with its target)
   * as `stat` reports it, or a regular file's content; anything else is a BadRequest.
   */
  get(inst: InstanceSpec, path: string): Promise<FileInfo | FileContent>;
  write(inst: InstanceSpec, path: string, w: FileWrite): Promise<void>;
  /** Removes a file, symlink or empty directory. */
  remove(inst: InstanceSpec, path: string): Promise<void>;
  /**
   * An SFTP version 3 session on the instance's files (what `incus file push/pull/mount` speak
   * after `Upgrade: sftp`), confined like every other access. Absent where not supported.
   */
  sftp?(inst: InstanceSpec): Promise<SftpChannel>;
}

/**
 * The raw bytes of one SFTP session: the client's packets go into `writable`, the server's come
 * out of `readable`. `close()` ends the session at once (the server process is killed); `closed`
 * settles when it has ended, whichever side ended it.
 */
export interface SftpChannel {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  close(): void;
  closed: Promise<void>;
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
