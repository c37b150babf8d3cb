/** File access inside a VM: commands through the guest agent, content through guest-file-*. */
import type { InstanceSpec } from "../driver.ts";
import { CommandFiles } from "../command_files.ts";
import type { QgaClient } from "./qga.ts";

export function qgaFiles(agent: (inst: InstanceSpec) => Promise<QgaClient>): CommandFiles {
  return new CommandFiles({
    run: async (inst, argv, input) => {
      const r = await (await agent(inst)).run(argv, { input, timeoutMs: 30_000 });
      return { code: r.code, stdout: r.stdout, stderr: r.stderr };
    },
    readFile: (inst, path, max) => {
      const chunks = (async function* () {
        yield* (await agent(inst)).readChunks(path, max);
      })();
      return new ReadableStream<Uint8Array>({
        async pull(c) {
          const { value, done } = await chunks.next();
          if (done) c.close();
          else c.enqueue(value);
        },
        async cancel() {
          await chunks.return(undefined);
        },
      }, { highWaterMark: 1 });
    },
    writeFile: async (inst, path, data, append) =>
      await (await agent(inst)).writeFile(path, data, { append }),
  });
}
