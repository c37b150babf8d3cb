/** File access inside a VM: commands through the guest agent, content through guest-file-*. */
import type { InstanceRecord } from "../../agent/store.ts";
import { CommandFiles } from "../command_files.ts";
import type { QgaClient } from "./qga.ts";

export function qgaFiles(agent: (inst: InstanceRecord) => Promise<QgaClient>): CommandFiles {
  return new CommandFiles({
    run: async (inst, argv, input) => {
      const r = await (await agent(inst)).run(argv, { input, timeoutMs: 30_000 });
      return { code: r.code, stdout: r.stdout, stderr: r.stderr };
    },
    readFile: async (inst, path) => await (await agent(inst)).readFile(path),
    writeFile: async (inst, path, data, append) =>
      await (await agent(inst)).writeFile(path, data, { append }),
  });
}
