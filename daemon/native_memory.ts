/**
 * The native heap's part of the daemon's memory. glibc's malloc keeps what the runtime frees
 * (HTTP buffers, child-process pipes, SQLite pages) in per-thread arenas and gives it back to the
 * kernel only from the top of the heap, so a burst of work (fifty launches) leaves the resident
 * size where the burst took it. The daemon caps the arenas, sends large blocks straight to
 * mmap (returned on free), and, once work stops, collects garbage (buffers the JavaScript side
 * dropped are only freed then; `gc` exists under `--expose-gc`, which outpost's runtime flags
 * set) and then trims the heaps.
 */

// mallopt(3) parameters.
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;
const M_ARENA_MAX = -8;

const SYMBOLS = {
  mallopt: { parameters: ["i32", "i32"], result: "i32" },
  malloc_trim: { parameters: ["usize"], result: "i32" },
} as const;

export interface NativeMemory {
  /** Notes that work happened. */
  touch(): void;
  /**
   * Called on a steady tick. The first tick without work after some collects garbage; the next
   * one trims the native heaps (V8 frees the dropped buffers on a background thread after a
   * collection). Work that goes on never pays for either.
   */
  settle(): void;
  close(): void;
}

/**
 * Tunes glibc's malloc for a long-lived daemon and returns the trimmer; a libc that is not glibc
 * (musl has neither call) or a runtime without FFI leaves everything as it is.
 */
export function tuneNativeMemory(): NativeMemory {
  let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
    lib.symbols.mallopt(M_ARENA_MAX, 2);
    lib.symbols.mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    lib.symbols.mallopt(M_TRIM_THRESHOLD, 128 * 1024);
  } catch {
    lib?.close();
    lib = undefined;
  }
  let state: "idle" | "working" | "quiet" | "collected" = "idle";
  return {
    touch() {
      state = "working";
    },
    settle() {
      if (state === "working") state = "quiet";
      else if (state === "quiet") {
        (globalThis as { gc?: () => void }).gc?.();
        state = "collected";
      } else if (state === "collected") {
        lib?.symbols.malloc_trim(0n);
        state = "idle";
      }
    },
    close() {
      lib?.close();
      lib = undefined;
    },
  };
}
