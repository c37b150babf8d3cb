/** Files inside an instance, as the files API (`/1.0/instances/{name}/files`) carries them. */

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
