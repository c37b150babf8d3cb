import assert from "node:assert/strict";
import type { ExecProcess } from "../drivers/driver.ts";
import { ExecSession } from "./exec_session.ts";

/** A command that prints `out` and exits with `code`, or with 128 + a signal it is sent. */
function fakeCommand(out: string, opts: { code?: number; untilSignal?: boolean } = {}) {
  const signals: number[] = [];
  let exit!: (code: number) => void;
  const status = new Promise<number>((r) => exit = r);
  if (!opts.untilSignal) exit(opts.code ?? 0);
  const proc: ExecProcess = {
    pid: 1,
    stdin: new WritableStream(),
    stdout: ReadableStream.from([new TextEncoder().encode(out)]),
    stderr: ReadableStream.from<Uint8Array>([]),
    resize() {},
    signal(signo) {
      signals.push(signo);
      exit(128 + signo);
      return Promise.resolve();
    },
    kill() {},
    status,
  };
  return { proc, signals };
}

interface Client {
  ws: WebSocket;
  /** The data received, once the stream's end (an empty text frame or a close) arrived. */
  ended: Promise<string>;
}

/** A websocket server for one session; `open(fd)` connects a client to that fd. */
async function withSession(
  interactive: boolean,
  fn: (
    session: ExecSession,
    open: (fd: string) => Promise<Client>,
  ) => Promise<void>,
) {
  const session = new ExecSession(interactive);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const secret = new URL(req.url).searchParams.get("secret") ?? "";
    return session.connect(secret, () => Deno.upgradeWebSocket(req, { idleTimeout: 0 })) ??
      new Response("no", { status: 403 });
  });
  const clients: WebSocket[] = [];
  const open = (fd: string) => {
    const ws = new WebSocket(
      `ws://127.0.0.1:${server.addr.port}/?secret=${session.secrets[fd]}`,
    );
    ws.binaryType = "arraybuffer";
    clients.push(ws);
    let got = "";
    let end!: (data: string) => void;
    const ended = new Promise<string>((r) => end = r);
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") got += new TextDecoder().decode(e.data);
      else if (e.data === "") end(got);
    };
    ws.onclose = () => end(got);
    return new Promise<Client>((resolve, reject) => {
      ws.onopen = () => resolve({ ws, ended });
      ws.onerror = () => reject(new Error(`fd ${fd} did not connect`));
    });
  };
  try {
    await fn(session, open);
  } finally {
    session.closeAll();
    await Promise.all(
      clients.map((ws) =>
        ws.readyState === WebSocket.CLOSED ? undefined : new Promise((r) => {
          ws.onclose = r;
          ws.close();
        })
      ),
    );
    await server.shutdown();
  }
}

Deno.test("a non-interactive exec starts once fds 0, 1 and 2 connect, without control (pylxd)", () =>
  withSession(false, async (session, open) => {
    assert.deepEqual(session.required, ["0", "1", "2"]);
    assert.ok("control" in session.secrets, "control is still offered");
    await open("0");
    const stdout = await open("1");
    await open("2");
    const { proc } = fakeCommand("hi\n", { code: 3 });
    assert.equal(await session.run(() => Promise.resolve(proc)), 3);
    assert.equal(await stdout.ended, "hi\n");
  }));

Deno.test("an interactive exec waits for its control socket before starting", () =>
  withSession(true, async (session, open) => {
    assert.deepEqual(session.required, ["0", "control"]);
    let started = false;
    const { proc } = fakeCommand("");
    const done = session.run(() => {
      started = true;
      return Promise.resolve(proc);
    });
    await open("0");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(started, false, "started without the control socket");
    await open("control");
    assert.equal(await done, 0);
    assert.equal(started, true);
  }));

Deno.test("a control socket that connects after the command started still delivers signals", () =>
  withSession(false, async (session, open) => {
    await open("0");
    await open("1");
    await open("2");
    const { proc, signals } = fakeCommand("", { untilSignal: true });
    const done = session.run(() => Promise.resolve(proc));
    const control = await open("control");
    control.ws.send(JSON.stringify({ command: "signal", signal: 15 }));
    assert.equal(await done, 143);
    assert.deepEqual(signals, [15]);
  }));
