/**
 * Marks the daemon's file descriptors close-on-exec. Node's listeners under Deno are opened
 * without it, so every child the daemon spawns (QEMU, file helpers, lxc-attach) would inherit the
 * listening sockets: after a kill -9 of the daemon, a VM still holding the unix socket or port
 * 8443 would take new connections into its backlog and never answer them, and the next daemon
 * could not bind its port. Called right after each listener starts.
 */

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
/** Descriptors above this are not looked at (the daemon's listeners come early). */
const MAX_FD = 4096;

let fcntl: ((fd: number, cmd: number, arg: number) => number) | null | undefined;

function libcFcntl(): typeof fcntl {
  if (fcntl === undefined) {
    try {
      const lib = Deno.dlopen("libc.so.6", {
        fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
      });
      fcntl = (fd, cmd, arg) => lib.symbols.fcntl(fd, cmd, arg);
    } catch {
      fcntl = null;
    }
  }
  return fcntl;
}

/**
 * Sets FD_CLOEXEC on every open descriptor from 3 up (stdio stays inheritable); answers how many
 * it changed, or -1 when libc cannot be reached.
 */
export function closeOnExec(): number {
  const f = libcFcntl();
  if (!f) return -1;
  let changed = 0;
  for (let fd = 3; fd < MAX_FD; fd++) {
    const flags = f(fd, F_GETFD, 0);
    if (flags < 0 || (flags & FD_CLOEXEC) !== 0) continue;
    if (f(fd, F_SETFD, flags | FD_CLOEXEC) === 0) changed++;
  }
  return changed;
}
