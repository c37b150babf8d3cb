/** `outpost export NAME [FILE]` and `outpost import FILE [NAME]`: instance backups as files. */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { Operation } from "../contract/responses.ts";
import { instanceUrl } from "../contract/urls.ts";
import { type CliContext, download, UsageError } from "./context.ts";

export function backupCommands(ctx: CliContext): CommandUnknownOpts[] {
  const exportCmd = new Command("export")
    .description(
      "Write a backup of an instance (its snapshots too unless --instance-only) to a file " +
        "(default NAME.tar.gz), in Incus's layout",
    )
    .argument("<name>", "Instance name")
    .argument("[file]", "Where to write it")
    .option("--instance-only", "Without the instance's snapshots")
    .action(async (name, file, opts) => {
      const backup = `export-${Date.now()}`;
      const url = `${instanceUrl(name)}/backups/${backup}`;
      await ctx.client.run("POST", `${instanceUrl(name)}/backups`, {
        body: { name: backup, instance_only: opts.instanceOnly ?? false },
      });
      try {
        const path = file ?? `${name}.tar.gz`;
        await download(ctx, `${url}/export`, path);
        console.log(`Backup exported to ${path}`);
      } finally {
        await ctx.client.run("DELETE", url).catch(() => {});
      }
    });

  const importCmd = new Command("import")
    .description("Create an instance from a backup file (as its own name, or NAME)")
    .argument("<file>", "Backup file")
    .argument("[name]", "The new instance's name")
    .action(async (path, name) => {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(path);
      } catch {
        throw new UsageError(`Cannot read backup file "${path}"`);
      }
      const headers: Record<string, string> = {};
      if (name) headers["X-Incus-Name"] = name;
      await ctx.client.run("POST", "/1.0/instances", {
        raw: file.readable,
        headers,
      }) as Operation;
      console.log(`Backup imported${name ? ` as ${name}` : ""}`);
    });
  return [exportCmd, importCmd];
}
