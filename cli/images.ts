/** `outpost image ...`: build, import, list, delete, alias. */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { basename, join } from "node:path";
import type { Image, ImageAliasesEntry, Operation } from "../contract/responses.ts";
import { imageAliasUrl, imageUrl } from "../contract/urls.ts";
import { type CliContext, download, parseKeyValues, UsageError } from "./context.ts";
import { type Column, FORMAT_OPTION, formatBytes, parseFormat, printList } from "./format.ts";

const COLUMNS: Column<Image>[] = [
  { header: "ALIAS", value: (i) => i.aliases.map((a) => a.name).join("\n") },
  { header: "FINGERPRINT", value: (i) => i.fingerprint.slice(0, 12) },
  { header: "DESCRIPTION", value: (i) => i.properties.description ?? "" },
  { header: "ARCHITECTURE", value: (i) => i.architecture },
  {
    header: "TYPE",
    value: (i) => (i.type === "virtual-machine" ? "VIRTUAL-MACHINE" : "CONTAINER"),
  },
  { header: "SIZE", value: (i) => formatBytes(i.size) },
  { header: "UPLOAD DATE", value: (i) => i.uploaded_at.replace("T", " ").slice(0, 19) },
];

/** A stream of the file that reports upload progress on stderr. */
function withProgress(file: Deno.FsFile, total: number, label: string): ReadableStream<Uint8Array> {
  let sent = 0;
  let lastShown = -1;
  const tty = Deno.stderr.isTerminal();
  const enc = new TextEncoder();
  return file.readable.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        sent += chunk.length;
        const pct = total > 0 ? Math.floor((sent / total) * 100) : 100;
        // Show progress for uploads that take a while (> 8 MiB); on a pipe, one line per 25%.
        if (
          total > 8 * 2 ** 20 &&
          (tty ? pct !== lastShown : Math.floor(pct / 25) !== Math.floor(lastShown / 25))
        ) {
          lastShown = pct;
          const line = `${label}: ${pct}% (${formatBytes(sent)}/${formatBytes(total)})`;
          Deno.stderr.writeSync(enc.encode(tty ? `\r${line}` : `${line}\n`));
        }
        ctl.enqueue(chunk);
      },
      flush() {
        if (tty && lastShown >= 0) Deno.stderr.writeSync(enc.encode("\n"));
      },
    }),
  );
}

async function importFile(ctx: CliContext, path: string, aliases: string[]): Promise<string> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch {
    throw new UsageError(`Cannot read image file "${path}"`);
  }
  const size = (await file.stat()).size;
  const op = await ctx.client.run("POST", "/1.0/images", {
    raw: withProgress(file, size, "Uploading image"),
    headers: { "X-Incus-filename": basename(path) },
  }) as Operation;
  const fingerprint = op.metadata?.fingerprint as string;
  for (const alias of aliases) {
    await ctx.client.run("POST", "/1.0/images/aliases", {
      body: { name: alias, target: fingerprint },
    });
  }
  return fingerprint;
}

async function resolve(ctx: CliContext, ref: string): Promise<string> {
  try {
    return (await ctx.client.get<ImageAliasesEntry>(imageAliasUrl(ref))).target;
  } catch {
    const img = await ctx.client.get<Image>(imageUrl(ref));
    return img.fingerprint;
  }
}

export function imageCommand(ctx: CliContext): CommandUnknownOpts {
  const image = new Command("image").description("Manage images");

  image.command("build")
    .description(
      "Build a test image offline from Debian packages and import it (busybox: a container; vm-busybox: a VM with the Debian kernel and qemu-guest-agent)",
    )
    .argument("<kind>", "What to build: busybox or vm-busybox")
    .option("--alias <name>", "Alias for the new image (default: the kind)")
    .option("--output <file>", "Also keep the built tarball at this path")
    .action(async (kind, opts) => {
      if (kind !== "busybox" && kind !== "vm-busybox") {
        throw new UsageError(`Unknown image kind "${kind}": use busybox or vm-busybox`);
      }
      const dir = await Deno.makeTempDir({ prefix: "outpost-image-" });
      try {
        const out = opts.output ?? join(dir, `${kind}.tar.gz`);
        console.error(`Building ${kind} image`);
        const file = kind === "busybox"
          ? (await (await import("../image_build/busybox.ts")).buildBusyboxImage({
            outFile: out,
          })).file
          : (await (await import("../image_build/vm_busybox.ts")).buildVmBusyboxImage({
            outFile: out,
            progress: (msg) => console.error(msg),
          })).file;
        const fp = await importFile(ctx, file, [opts.alias ?? kind]);
        console.log(`Image imported with fingerprint: ${fp}`);
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    });

  image.command("import")
    .description("Import an image tarball (metadata.yaml + rootfs/)")
    .argument("<file>", "Image tarball")
    .option(
      "--alias <name>",
      "Alias for the image (repeatable)",
      (v: string, p: string[] = []) => [...p, v],
    )
    .action(async (file, opts) => {
      const fp = await importFile(ctx, file, opts.alias ?? []);
      console.log(`Image imported with fingerprint: ${fp}`);
    });

  image.command("export")
    .description("Write an image's tarball to a file (default: FINGERPRINT.tar.gz here)")
    .argument("<image>", "Alias or fingerprint")
    .argument("[file]", "Where to write it")
    .action(async (ref, target) => {
      const fp = await resolve(ctx, ref);
      const path = target ?? `${fp}.tar.gz`;
      await download(ctx, `${imageUrl(fp)}/export`, path);
      console.log(`Image exported to ${path}`);
    });

  image.command("list")
    .alias("ls")
    .description("List images")
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const all = await ctx.client.get<Image[]>("/1.0/images?recursion=1");
      await printList(format, all, COLUMNS, all);
    });

  image.command("delete")
    .alias("rm")
    .description("Delete images (by alias or fingerprint)")
    .argument("<images...>", "Aliases or fingerprints")
    .action(async (refs) => {
      for (const ref of refs) {
        const fp = await resolve(ctx, ref);
        await ctx.client.run("DELETE", imageUrl(fp));
      }
    });

  const alias = image.command("alias").description("Manage image aliases");
  alias.command("create")
    .description("Create an alias for an image")
    .argument("<alias>", "New alias")
    .argument("<image>", "Fingerprint (or another alias)")
    .action(async (name, ref) => {
      const target = await resolve(ctx, ref);
      await ctx.client.run("POST", "/1.0/images/aliases", { body: { name, target } });
    });
  alias.command("delete")
    .alias("rm")
    .description("Delete an alias")
    .argument("<alias>", "Alias")
    .action(async (name) => {
      await ctx.client.run("DELETE", imageAliasUrl(name));
    });
  alias.command("list")
    .alias("ls")
    .description("List aliases")
    .action(async () => {
      const all = await ctx.client.get<ImageAliasesEntry[]>("/1.0/images/aliases?recursion=1");
      await printList("table", all, [
        { header: "ALIAS", value: (a) => a.name },
        { header: "FINGERPRINT", value: (a) => a.target.slice(0, 12) },
        { header: "DESCRIPTION", value: (a) => a.description },
      ]);
    });

  return image;
}

/** `outpost publish NAME[/SNAP]`: a stopped instance or a snapshot made an image. */
export function publishCommand(ctx: CliContext): CommandUnknownOpts {
  return new Command("publish")
    .description(
      "Make an image from a stopped instance or a snapshot (NAME/SNAP), with aliases and properties",
    )
    .argument("<source>", "Instance or instance/snapshot")
    .argument("[key=value...]", "Image properties")
    .option(
      "--alias <name>",
      "Alias for the new image (repeatable)",
      (v: string, p: string[] = []) => [...p, v],
    )
    .option("--public", "Make the image public")
    .action(async (source, pairs, opts) => {
      const op = await ctx.client.run("POST", "/1.0/images", {
        body: {
          source: { type: source.includes("/") ? "snapshot" : "instance", name: source },
          aliases: (opts.alias ?? []).map((name) => ({ name })),
          properties: parseKeyValues(pairs, "property"),
          public: opts.public ?? false,
        },
      }) as Operation;
      console.log(`Instance published with fingerprint: ${op.metadata?.fingerprint}`);
    });
}
