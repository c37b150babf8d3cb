/**
 * `outpost profile ...`: list, show, create, copy, edit, rename, delete; get/set/unset of config
 * keys; `device ...`; and assign/add/remove of an instance's profiles.
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { Instance, Profile } from "../contract/responses.ts";
import { instanceUrl, profileUrl } from "../contract/urls.ts";
import { type CliContext, setArgs, UsageError } from "./context.ts";
import { deviceCommand, type DeviceHolder } from "./devices.ts";
import { type Column, FORMAT_OPTION, parseFormat, printList } from "./format.ts";

/** What a PUT of a profile sends. */
type ProfileFields = Pick<Profile, "description" | "config" | "devices">;

const COLUMNS: Column<Profile>[] = [
  { header: "NAME", value: (p) => p.name },
  { header: "DESCRIPTION", value: (p) => p.description },
  { header: "USED BY", value: (p) => String(p.used_by.length) },
];

async function readProfile(ctx: CliContext, name: string) {
  const res = await ctx.client.fetch("GET", profileUrl(name));
  const env = await res.json();
  if (env.type === "error") throw new UsageError(env.error);
  return { body: env.metadata as Profile, etag: res.headers.get("etag") ?? "" };
}

async function writeProfile(ctx: CliContext, name: string, body: ProfileFields, etag = "") {
  const { description, config, devices } = body;
  await ctx.client.run("PUT", profileUrl(name), {
    body: { description, config, devices },
    headers: etag ? { "If-Match": etag } : {},
  });
}

/** Reads YAML from stdin when it is not a terminal (`profile create/edit NAME < file.yaml`). */
async function stdinYaml(): Promise<Partial<ProfileFields> | undefined> {
  if (Deno.stdin.isTerminal()) return undefined;
  const text = new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer());
  if (text.trim() === "") return undefined;
  const { parseYaml } = await import("./yaml.ts");
  const value = parseYaml(text);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError("The profile on stdin is not a YAML mapping");
  }
  return value as Partial<ProfileFields>;
}

/** `profile edit` on a terminal: the profile as YAML in $VISUAL/$EDITOR, sent back when saved. */
async function editInEditor(current: ProfileFields): Promise<Partial<ProfileFields>> {
  const { parseYaml, renderYaml } = await import("./yaml.ts");
  const file = await Deno.makeTempFile({ prefix: "outpost-profile-", suffix: ".yaml" });
  try {
    await Deno.writeTextFile(file, renderYaml(current));
    const editor = Deno.env.get("VISUAL") || Deno.env.get("EDITOR") || "vi";
    const status = await new Deno.Command("sh", {
      args: ["-c", `${editor} "$1"`, "editor", file],
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!status.success) throw new UsageError(`The editor (${editor}) failed`);
    return parseYaml(await Deno.readTextFile(file)) as Partial<ProfileFields>;
  } finally {
    await Deno.remove(file).catch(() => {});
  }
}

/** Changes an instance's profile list (read, change, write back with its ETag). */
async function changeInstanceProfiles(
  ctx: CliContext,
  name: string,
  fn: (profiles: string[]) => string[],
): Promise<void> {
  const res = await ctx.client.fetch("GET", instanceUrl(name));
  const env = await res.json();
  if (env.type === "error") throw new UsageError(env.error);
  const inst = env.metadata as Instance;
  const etag = res.headers.get("etag") ?? "";
  await ctx.client.run("PUT", instanceUrl(name), {
    body: {
      config: inst.config,
      devices: inst.devices,
      profiles: fn(inst.profiles),
      description: inst.description,
    },
    headers: etag ? { "If-Match": etag } : {},
  });
}

export function profileCommand(ctx: CliContext): CommandUnknownOpts {
  const profile = new Command("profile").description(
    "Manage profiles: config and devices that instances stack",
  );

  profile.command("list")
    .alias("ls")
    .description("List profiles and how many instances use each")
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const all = await ctx.client.get<Profile[]>("/1.0/profiles?recursion=1");
      await printList(format, all, COLUMNS);
    });

  profile.command("show")
    .description("Show a profile (YAML)")
    .argument("<name>", "Profile name")
    .action(async (name) => {
      const { body } = await readProfile(ctx, name);
      const { renderYaml } = await import("./yaml.ts");
      Deno.stdout.writeSync(new TextEncoder().encode(renderYaml(body)));
    });

  profile.command("create")
    .description("Create a profile (its config and devices from YAML on stdin, if any)")
    .argument("<name>", "Profile name")
    .option("-d, --description <text>", "Profile description")
    .action(async (name, opts) => {
      const from = await stdinYaml();
      await ctx.client.run("POST", "/1.0/profiles", {
        body: {
          name,
          description: opts.description ?? from?.description ?? "",
          config: from?.config ?? {},
          devices: from?.devices ?? {},
        },
      });
      console.log(`Profile ${name} created`);
    });

  profile.command("copy")
    .alias("cp")
    .description("Copy a profile under a new name")
    .argument("<source>", "Profile to copy")
    .argument("<target>", "New profile name")
    .action(async (source, target) => {
      const { body } = await readProfile(ctx, source);
      await ctx.client.run("POST", "/1.0/profiles", {
        body: {
          name: target,
          description: body.description,
          config: body.config,
          devices: body.devices,
        },
      });
    });

  profile.command("edit")
    .description("Edit a profile as YAML: from stdin when it is not a terminal, else in $EDITOR")
    .argument("<name>", "Profile name")
    .action(async (name) => {
      const { body, etag } = await readProfile(ctx, name);
      const current = { description: body.description, config: body.config, devices: body.devices };
      const next = (await stdinYaml()) ?? await editInEditor(current);
      await writeProfile(ctx, name, {
        description: next.description ?? "",
        config: next.config ?? {},
        devices: next.devices ?? {},
      }, etag);
    });

  profile.command("rename")
    .alias("mv")
    .description("Rename a profile (the instances using it follow)")
    .argument("<name>", "Profile name")
    .argument("<new-name>", "New name")
    .action(async (name, to) => {
      await ctx.client.run("POST", profileUrl(name), { body: { name: to } });
      console.log(`Profile ${name} renamed to ${to}`);
    });

  profile.command("delete")
    .alias("rm")
    .description("Delete profiles (not one in use, nor default)")
    .argument("<names...>", "Profile names")
    .action(async (names) => {
      for (const name of names) {
        await ctx.client.run("DELETE", profileUrl(name));
        console.log(`Profile ${name} deleted`);
      }
    });

  profile.command("get")
    .description("Print one config key of a profile")
    .argument("<name>", "Profile name")
    .argument("<key>", "Config key")
    .action(async (name, key) => {
      console.log((await readProfile(ctx, name)).body.config[key] ?? "");
    });

  profile.command("set")
    .description("Set config keys of a profile: NAME key=value... (or NAME key value)")
    .argument("<name>", "Profile name")
    .argument("<args...>", "key=value... or key value")
    .action(async (name, args) => {
      const values = setArgs(args);
      const { body, etag } = await readProfile(ctx, name);
      await writeProfile(ctx, name, { ...body, config: { ...body.config, ...values } }, etag);
    });

  profile.command("unset")
    .description("Remove a config key of a profile")
    .argument("<name>", "Profile name")
    .argument("<key>", "Config key")
    .action(async (name, key) => {
      const { body, etag } = await readProfile(ctx, name);
      if (!(key in body.config)) {
        throw new UsageError(`Config key "${key}" is not set on profile "${name}"`);
      }
      delete body.config[key];
      await writeProfile(ctx, name, body, etag);
    });

  const holder: DeviceHolder = {
    what: (name) => `profile "${name}"`,
    read: async (name) => {
      const { body, etag } = await readProfile(ctx, name);
      return { devices: body.devices, etag };
    },
    write: async (name, devices, etag) => {
      const { body } = await readProfile(ctx, name);
      await writeProfile(ctx, name, { ...body, devices }, etag);
    },
  };
  profile.addCommand(deviceCommand(holder, "profile"));

  profile.command("assign")
    .description('Set the profiles of an instance, in order: INSTANCE p1,p2 ("" for none)')
    .argument("<instance>", "Instance name")
    .argument("<profiles>", "Comma-separated profile names")
    .action(async (name, list) => {
      const names = list === "" ? [] : list.split(",");
      await changeInstanceProfiles(ctx, name, () => names);
      console.log(`Profiles ${names.join(", ")} applied to ${name}`);
    });

  profile.command("add")
    .description("Add a profile to an instance (on top of the others)")
    .argument("<instance>", "Instance name")
    .argument("<profile>", "Profile name")
    .action(async (name, p) => {
      await changeInstanceProfiles(ctx, name, (cur) => {
        if (cur.includes(p)) throw new UsageError(`Profile ${p} is already applied to ${name}`);
        return [...cur, p];
      });
      console.log(`Profile ${p} added to ${name}`);
    });

  profile.command("remove")
    .description("Remove a profile from an instance")
    .argument("<instance>", "Instance name")
    .argument("<profile>", "Profile name")
    .action(async (name, p) => {
      await changeInstanceProfiles(ctx, name, (cur) => {
        if (!cur.includes(p)) throw new UsageError(`Profile ${p} isn't applied to ${name}`);
        return cur.filter((x) => x !== p);
      });
      console.log(`Profile ${p} removed from ${name}`);
    });
  return profile;
}
