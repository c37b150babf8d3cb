/** `outpost config get/set/unset/show`: instance keys with a NAME, server keys without. */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { Instance, Server } from "../contract/responses.ts";
import { instanceUrl } from "../contract/urls.ts";
import { type CliContext, UsageError } from "./context.ts";
import { trustCommand } from "./trust.ts";
import { deviceCommand, type DeviceHolder, overrideCommand } from "./devices.ts";
import { renderYaml } from "./yaml.ts";

/** What a PUT of an instance sends back. */
type Writable = Pick<Instance, "config" | "devices" | "profiles" | "description">;

export async function readInstance(
  ctx: CliContext,
  name: string,
): Promise<{ body: Instance; etag: string }> {
  const res = await ctx.client.fetch("GET", instanceUrl(name));
  const env = await res.json();
  if (env.type === "error") throw new UsageError(env.error);
  return { body: env.metadata, etag: res.headers.get("etag") ?? "" };
}

export async function writeInstance(
  ctx: CliContext,
  name: string,
  body: Writable,
  etag: string,
): Promise<void> {
  const { config, devices, profiles, description } = body;
  await ctx.client.run("PUT", instanceUrl(name), {
    body: { config, devices, profiles, description },
    headers: etag ? { "If-Match": etag } : {},
  });
}

/** `set` takes `NAME k=v...`, `NAME key value`, `k=v...` (server) or `key value` (server). */
function splitSetArgs(args: string[]): { name?: string; values: Record<string, string> } {
  const pairs = (items: string[]) =>
    Object.fromEntries(items.map((i) => {
      const at = i.indexOf("=");
      if (at <= 0) throw new UsageError(`Invalid config "${i}": expected key=value`);
      return [i.slice(0, at), i.slice(at + 1)];
    }));
  if (args.length === 0) throw new UsageError("Nothing to set: give key=value");
  if (args[0].includes("=")) return { values: pairs(args) };
  if (args.length === 2 && !args[1].includes("=")) return { values: { [args[0]]: args[1] } };
  if (args.length === 3 && !args[1].includes("=")) {
    return { name: args[0], values: { [args[1]]: args[2] } };
  }
  return { name: args[0], values: pairs(args.slice(1)) };
}

export function configCommand(ctx: CliContext): CommandUnknownOpts {
  const config = new Command("config").description(
    "Manage instance and server configuration (without NAME: server keys)",
  );

  config.command("get")
    .description("Print one config key of an instance, or of the server")
    .argument("<name-or-key>", "Instance name, or a server key")
    .argument("[key]", "Config key")
    .action(async (first, key) => {
      if (key === undefined) {
        const server = await ctx.client.get<Server>("/1.0");
        console.log(server.config[first] ?? "");
      } else {
        const { body } = await readInstance(ctx, first);
        console.log(body.config[key] ?? "");
      }
    });

  config.command("set")
    .description("Set config keys: NAME key=value... (instance) or key=value... (server)")
    .argument("<args...>", "[NAME] key=value...")
    .action(async (args) => {
      const { name, values } = splitSetArgs(args);
      if (name === undefined) {
        const server = await ctx.client.get<Server>("/1.0");
        await ctx.client.run("PUT", "/1.0", { body: { config: { ...server.config, ...values } } });
        return;
      }
      const { body, etag } = await readInstance(ctx, name);
      await writeInstance(ctx, name, { ...body, config: { ...body.config, ...values } }, etag);
    });

  config.command("unset")
    .description("Remove a config key: NAME key (instance) or key (server)")
    .argument("<name-or-key>", "Instance name, or a server key")
    .argument("[key]", "Config key")
    .action(async (first, key) => {
      if (key === undefined) {
        const server = await ctx.client.get<Server>("/1.0");
        if (!(first in server.config)) {
          throw new UsageError(`Server config key "${first}" is not set`);
        }
        delete server.config[first];
        await ctx.client.run("PUT", "/1.0", { body: { config: server.config } });
        return;
      }
      const { body, etag } = await readInstance(ctx, first);
      if (!(key in body.config)) {
        throw new UsageError(`Config key "${key}" is not set on "${first}"`);
      }
      delete body.config[key];
      await writeInstance(ctx, first, body, etag);
    });

  config.command("show")
    .description("Show the configuration of an instance (YAML), or of the server")
    .argument("[name]", "Instance name")
    .option("-e, --expanded", "Show the config and devices with the instance's profiles applied")
    .action(async (name, opts) => {
      if (name === undefined) {
        const server = await ctx.client.get<Server>("/1.0");
        Deno.stdout.writeSync(new TextEncoder().encode(renderYaml({ config: server.config })));
        return;
      }
      const { body } = await readInstance(ctx, name);
      const shown = {
        architecture: body.architecture,
        config: opts.expanded ? body.expanded_config : body.config,
        devices: opts.expanded ? body.expanded_devices : body.devices,
        ephemeral: body.ephemeral,
        profiles: body.profiles,
        stateful: body.stateful,
        description: body.description,
      };
      Deno.stdout.writeSync(new TextEncoder().encode(renderYaml(shown)));
    });

  const holder: DeviceHolder = {
    what: (name) => `instance "${name}"`,
    read: async (name) => {
      const { body, etag } = await readInstance(ctx, name);
      return { devices: body.devices, expanded: body.expanded_devices, etag };
    },
    write: async (name, devices, etag) => {
      const { body } = await readInstance(ctx, name);
      await writeInstance(ctx, name, { ...body, devices }, etag);
    },
  };
  const device = deviceCommand(holder, "instance");
  device.addCommand(overrideCommand(holder));
  config.addCommand(device);
  config.addCommand(trustCommand(ctx));
  return config;
}
