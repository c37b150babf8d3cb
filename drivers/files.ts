/** File access inside an instance (the `/files` API): a narrow interface drivers may implement. */
import type { InstanceRecord } from "../agent/store.ts";

export type FileType = "file" | "directory" | "symlink";

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

export interface FileWrite {
  type: FileType;
  /** Ids inside the instance; undefined keeps the existing ones (or 0 for a new file). */
  uid?: number;
  gid?: number;
  /** Permission bits; undefined keeps the existing mode (or 0o644 / 0o755 for new ones). */
  mode?: number;
  /** Append to an existing file instead of replacing it. */
  append: boolean;
  /** Content of a file, or the target of a symlink. */
  data?: Uint8Array;
}

export interface FileAccess {
  /** Stats `path`; a directory also lists its entries. NotFound when missing. */
  stat(inst: InstanceRecord, path: string): Promise<FileInfo>;
  /** The content of a regular file. */
  read(inst: InstanceRecord, path: string): Promise<Uint8Array>;
  write(inst: InstanceRecord, path: string, w: FileWrite): Promise<void>;
  /** Removes a file, symlink or empty directory. */
  remove(inst: InstanceRecord, path: string): Promise<void>;
}
