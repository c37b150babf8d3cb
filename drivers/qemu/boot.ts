/**
 * How a VM boots, as its directory records it: `boot.json` says whether QEMU is given a kernel
 * (`kernel`, maybe `initrd`, beside it) or boots the disk through UEFI (OVMF's code from the host,
 * the VM's own copy of the variable store, `OVMF_VARS.fd`).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { InvalidState } from "../../contract/errors.ts";

export const BOOT_FILE = "boot.json";
export const KERNEL = "kernel";
export const INITRD = "initrd";
export const VARS = "OVMF_VARS.fd";
/** The files of a VM's dir besides its disk that it boots with, in the order they are copied. */
export const BOOT_FILES = [BOOT_FILE, KERNEL, INITRD, VARS] as const;

const OVMF_CODE = ["/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd"];
const OVMF_VARS = ["/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS.fd"];

export const BootFileSchema = z.object({
  kind: z.enum(["kernel", "uefi"]),
  /** The kernel's command line (kernel boots only). */
  cmdline: z.string().max(4096).optional(),
}).strict();
export type BootFile = z.infer<typeof BootFileSchema>;

/** The VM's boot record (written by outpost: a damaged one is an error, not a bad request). */
export function readBootFile(dir: string): BootFile {
  return BootFileSchema.parse(JSON.parse(Deno.readTextFileSync(join(dir, BOOT_FILE))));
}

export async function writeBootFile(dir: string, boot: BootFile): Promise<void> {
  await Deno.writeTextFile(join(dir, BOOT_FILE), JSON.stringify(boot));
}

/** The host's OVMF code, if it is installed. */
export function ovmfCode(): string | undefined {
  return OVMF_CODE.find((f) => existsSync(f));
}

/**
 * The host's blank OVMF variable store, refused when OVMF is not installed (`what` boots through
 * UEFI: "The image", "The backed-up VM").
 */
export function ovmfVarsTemplate(what: string): string {
  const vars = OVMF_VARS.find((f) => existsSync(f));
  if (!vars || !ovmfCode()) {
    throw new InvalidState(
      `${what} boots through UEFI, but OVMF is not installed (apt-get install ovmf)`,
    );
  }
  return vars;
}

/** A hard link where possible (same filesystem), else a copy. */
export async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await Deno.link(from, to);
  } catch {
    await Deno.copyFile(from, to);
  }
}
