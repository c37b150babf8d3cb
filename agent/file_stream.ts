/**
 * A regular file of the state dir (an image, a recorded log) served as a stream: never more than
 * its size when asked for, read a chunk at a time as the reader asks. The file is opened by the
 * first read, not before, so a body nobody reads (Hono answers HEAD with the GET handler and drops
 * the body) holds no file open; it is closed at the end or when the reader cancels.
 */

/** How much one read takes from the file. */
const CHUNK = 64 * 1024;

export interface FileStream {
  /** The file's size when asked for: the body's length, unless the file shrinks meanwhile. */
  size: number;
  body: ReadableStream<Uint8Array>;
}

/** The file at `path` to stream; undefined when it is missing or not a regular file. */
export async function fileStream(path: string): Promise<FileStream | undefined> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  if (!info.isFile) return undefined;
  let left = info.size;
  let file: Deno.FsFile | undefined;
  const close = () => {
    file?.close();
    file = undefined;
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        if (left > 0) {
          file ??= await Deno.open(path);
          const buf = new Uint8Array(Math.min(CHUNK, left));
          const n = await file.read(buf);
          if (n !== null) {
            left -= n;
            ctrl.enqueue(buf.subarray(0, n));
            return;
          }
        }
        close();
        ctrl.close();
      } catch (err) {
        close();
        ctrl.error(err);
      }
    },
    cancel: close,
  }, { highWaterMark: 0 });
  return { size: info.size, body };
}
