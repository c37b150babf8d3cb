/**
 * The few Node built-ins commander imports, for the CLI bundle (`scripts/bundle.ts` points
 * commander's imports here). Loading Node's compatibility layer costs a command line more than
 * everything else it does; commander only needs an event emitter, its output streams and the
 * environment. Executable subcommands (spawning `outpost-NAME` files) are not supported: outpost
 * has none.
 */

export class EventEmitter {
  #listeners = new Map();

  on(event, fn) {
    const list = this.#listeners.get(event) ?? [];
    list.push(fn);
    this.#listeners.set(event, list);
    return this;
  }

  once(event, fn) {
    const wrapper = (...args) => {
      this.off(event, wrapper);
      fn(...args);
    };
    return this.on(event, wrapper);
  }

  off(event, fn) {
    const list = this.#listeners.get(event);
    if (list) this.#listeners.set(event, list.filter((f) => f !== fn));
    return this;
  }

  removeListener(event, fn) {
    return this.off(event, fn);
  }

  emit(event, ...args) {
    const list = this.#listeners.get(event);
    if (!list || list.length === 0) return false;
    for (const fn of [...list]) fn(...args);
    return true;
  }

  listenerCount(event) {
    return this.#listeners.get(event)?.length ?? 0;
  }

  listeners(event) {
    return [...(this.#listeners.get(event) ?? [])];
  }
}

function unsupported() {
  throw new Error("Executable subcommands are not supported");
}

export const childProcess = { spawn: unsupported };
export const fs = { existsSync: unsupported, realpathSync: unsupported };
export const path = {
  basename(p, ext) {
    const base = p.split("/").filter(Boolean).pop() ?? "";
    return ext && base.endsWith(ext) ? base.slice(0, -ext.length) : base;
  },
  dirname: unsupported,
  extname: unsupported,
  resolve: unsupported,
};

const encoder = new TextEncoder();

function stream(file) {
  return {
    write(text) {
      const bytes = encoder.encode(text);
      for (let off = 0; off < bytes.length;) off += file.writeSync(bytes.subarray(off));
      return true;
    },
    get isTTY() {
      return file.isTerminal();
    },
    get columns() {
      try {
        return file.isTerminal() ? Deno.consoleSize().columns : undefined;
      } catch {
        return undefined;
      }
    },
    hasColors() {
      return file.isTerminal() && Deno.env.get("TERM") !== "dumb" && !Deno.noColor;
    },
  };
}

export const process = {
  argv: ["deno", "outpost", ...Deno.args],
  execArgv: [],
  execPath: Deno.execPath(),
  env: new Proxy({}, {
    get: (_, key) => typeof key === "string" ? Deno.env.get(key) : undefined,
  }),
  stdout: stream(Deno.stdout),
  stderr: stream(Deno.stderr),
  exit: (code) => Deno.exit(code),
  exitCode: undefined,
  on: unsupported,
  platform: Deno.build.os,
  versions: {},
};

/** ANSI escape sequences removed (commander measures help text with it). */
export function stripVTControlCharacters(text) {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\u001b\u009b][[\]()#;?]*(?:\d{1,4}(?:;\d{0,4})*)?[\dA-ORZcf-nqry=><~]/g,
    "",
  );
}
