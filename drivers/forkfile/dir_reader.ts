/**
 * Directories read a few entries at a time through libc's opendir/readdir: Deno's own directory
 * reading (and node:fs's opendir on top of it) reads a whole directory at once, so a directory of
 * millions of names, made by whoever owns the container, would take the helper's memory with it.
 * Loaded by the helper before it roots itself, so libc is never looked for inside a container.
 */

/** glibc's `struct dirent` on 64-bit Linux: d_ino, d_off, d_reclen, d_type, then d_name. */
const D_NAME = 19;

const ERRNO: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  13: "EACCES",
  20: "ENOTDIR",
  23: "ENFILE",
  24: "EMFILE",
  40: "ELOOP",
  36: "ENAMETOOLONG",
};

/** One open directory: its names (without `.` and `..`) one at a time. */
export interface DirHandle {
  /** The next name, or null at the end. */
  next(): string | null;
  close(): void;
}

export type DirReader = (path: string) => DirHandle;

/** Opens libc once; the returned function opens directories (throwing errors with a `code`). */
export function loadDirReader(): DirReader {
  const lib = Deno.dlopen("libc.so.6", {
    opendir: { parameters: ["buffer"], result: "pointer" },
    readdir: { parameters: ["pointer"], result: "pointer" },
    closedir: { parameters: ["pointer"], result: "i32" },
    __errno_location: { parameters: [], result: "pointer" },
  });
  const enc = new TextEncoder();
  return (path) => {
    const dir = lib.symbols.opendir(enc.encode(`${path}\0`));
    if (dir === null) {
      const p = lib.symbols.__errno_location();
      const errno = p ? new Deno.UnsafePointerView(p).getInt32() : 0;
      const code = ERRNO[errno] ?? `errno ${errno}`;
      throw Object.assign(new Error(`${code}: cannot open directory "${path}"`), { code });
    }
    let open = true;
    return {
      next() {
        while (open) {
          const entry = lib.symbols.readdir(dir);
          if (entry === null) return null;
          const name = new Deno.UnsafePointerView(entry).getCString(D_NAME);
          if (name !== "." && name !== "..") return name;
        }
        return null;
      },
      close() {
        if (!open) return;
        open = false;
        lib.symbols.closedir(dir);
      },
    };
  };
}
