/**
 * `device add/remove/set/unset/get/show/list` for what holds devices (an instance under `config
 * device`, a profile under `profile device`), and `override` for an instance: each reads the
 * holder, changes its devices and writes it back with its ETag (as the stock client does).
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { parseKeyValues, setArgs, UsageError } from "./context.ts";

export type Devices = Record<string, Record<string, string>>;

/** Reads and writes one holder's devices. */
export interface DeviceHolder {
  /** Names the holder in messages (`instance "c1"`, `profile "web"`). */
  what(name: string): string;
  read(name: string): Promise<{ devices: Devices; expanded?: Devices; etag: string }>;
  write(name: string, devices: Devices, etag: string): Promise<void>;
}

export function deviceCommand(holder: DeviceHolder, noun: string): CommandUnknownOpts {
  const device = new Command("device").description(`Manage the devices of ${noun}s`);
  const change = async (name: string, fn: (devices: Devices) => void) => {
    const { devices, etag } = await holder.read(name);
    fn(devices);
    await holder.write(name, devices, etag);
  };
  const existing = (devices: Devices, name: string, dev: string) => {
    const d = devices[dev];
    if (!d) throw new UsageError(`Device "${dev}" does not exist on ${holder.what(name)}`);
    return d;
  };

  device.command("add")
    .description(`Add a device to ${noun}: NAME DEVICE TYPE key=value...`)
    .argument("<name>", `The ${noun}`)
    .argument("<device>", "Device name")
    .argument("<type>", "Device type (disk, none...)")
    .argument("[key=value...]", "Device keys")
    .action(async (name, dev, type, pairs) => {
      await change(name, (devices) => {
        if (devices[dev]) {
          throw new UsageError(`Device "${dev}" already exists on ${holder.what(name)}`);
        }
        devices[dev] = { ...parseKeyValues(pairs, "device key"), type };
      });
      console.log(`Device ${dev} added to ${name}`);
    });

  device.command("remove")
    .alias("rm")
    .description(`Remove devices from ${noun}`)
    .argument("<name>", `The ${noun}`)
    .argument("<devices...>", "Device names")
    .action(async (name, devs) => {
      await change(name, (devices) => {
        for (const dev of devs) {
          existing(devices, name, dev);
          delete devices[dev];
        }
      });
      console.log(`Device ${devs.join(", ")} removed from ${name}`);
    });

  device.command("set")
    .description(`Set keys of a device of ${noun}: NAME DEVICE key=value... (or key value)`)
    .argument("<name>", `The ${noun}`)
    .argument("<device>", "Device name")
    .argument("<args...>", "key=value... or key value")
    .action(async (name, dev, args) => {
      const values = setArgs(args, "device key");
      await change(name, (devices) => Object.assign(existing(devices, name, dev), values));
    });

  device.command("unset")
    .description(`Remove a key of a device of ${noun}`)
    .argument("<name>", `The ${noun}`)
    .argument("<device>", "Device name")
    .argument("<key>", "Device key")
    .action(async (name, dev, key) => {
      await change(name, (devices) => {
        const d = existing(devices, name, dev);
        if (!(key in d)) throw new UsageError(`Device "${dev}" has no key "${key}"`);
        delete d[key];
      });
    });

  device.command("get")
    .description(`Print one key of a device of ${noun}`)
    .argument("<name>", `The ${noun}`)
    .argument("<device>", "Device name")
    .argument("<key>", "Device key")
    .action(async (name, dev, key) => {
      const { devices } = await holder.read(name);
      console.log(existing(devices, name, dev)[key] ?? "");
    });

  device.command("show")
    .description(`Show the devices of ${noun} (YAML)`)
    .argument("<name>", `The ${noun}`)
    .action(async (name) => {
      const { devices } = await holder.read(name);
      const { renderYaml } = await import("./yaml.ts");
      Deno.stdout.writeSync(new TextEncoder().encode(renderYaml(devices)));
    });

  device.command("list")
    .alias("ls")
    .description(`List the device names of ${noun}`)
    .argument("<name>", `The ${noun}`)
    .action(async (name) => {
      const { devices } = await holder.read(name);
      for (const dev of Object.keys(devices).sort()) console.log(dev);
    });
  return device;
}

/**
 * `config device override NAME DEVICE key=value...`: copies a device the instance has from a
 * profile into its own devices, with the keys given changed.
 */
export function overrideCommand(holder: DeviceHolder): CommandUnknownOpts {
  return new Command("override")
    .description("Copy a device from the instance's profiles into the instance, changing keys")
    .argument("<name>", "The instance")
    .argument("<device>", "Device name")
    .argument("[key=value...]", "Keys to change")
    .action(async (name, dev, pairs) => {
      const { devices, expanded, etag } = await holder.read(name);
      if (devices[dev]) {
        throw new UsageError(`Device "${dev}" is already the instance's own: use device set`);
      }
      const from = expanded?.[dev];
      if (!from) throw new UsageError(`Device "${dev}" is not in the profiles of "${name}"`);
      devices[dev] = { ...from, ...parseKeyValues(pairs, "device key") };
      await holder.write(name, devices, etag);
      console.log(`Device ${dev} overridden for ${name}`);
    });
}
