/**
 * The image store: Incus-format images (metadata.yaml + rootfs) kept by sha256 fingerprint, with
 * aliases. Files live in the state dir; rows in SQLite.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";
import type { ImageSource } from "../drivers/driver.ts";
import type { Runner } from "../drivers/runner.ts";
import { BadRequest, Conflict, NotFound, PayloadTooLarge } from "../contract/errors.ts";
import type { EventBus } from "./events.ts";
import { type FileStream, fileStream } from "./file_stream.ts";
import { checkAliasName } from "../contract/names.ts";
import type { Paths } from "./paths.ts";
import type { AliasRecord, ImageRecord, Store } from "./store.ts";
import { imageAliasUrl, imageUrl } from "../contract/urls.ts";

/** How a VM image boots: a kernel (+ initrd) given directly, or its disk through UEFI. */
const BootSchema = z.object({
  kernel: z.string(),
  initrd: z.string().optional(),
  cmdline: z.string().default(""),
}).strict();

// Loose: image producers add keys of their own (Incus ignores unknown ones too).
const MetadataSchema = z.looseObject({
  architecture: z.string(),
  creation_date: z.number().int(),
  properties: z.record(z.string(), z.coerce.string()).default({}),
  templates: z.unknown().optional(),
  /** outpost's extension for VM images with a kernel to boot directly. */
  boot: BootSchema.optional(),
});
export type ImageMetadata = z.infer<typeof MetadataSchema>;

/** What a driver needs to create an instance from an image. */
/** A tarball's member paths (without `./`), and whether it spells them `./x`. */
type Members = Set<string> & { dotted: boolean };

/** A path inside an image must stay inside it. */
function safeMember(path: string): boolean {
  return !path.startsWith("/") && !path.split("/").includes("..");
}

export interface ImportOptions {
  filename?: string;
  public?: boolean;
  /** Called with bytes received so far. */
  progress?: (bytes: number) => void;
}

/**
 * YAML, loaded on first use: the parser costs the daemon ~10 MiB of memory, and only image imports
 * and VM creates need it.
 */
async function parseYaml(text: string): Promise<unknown> {
  const { parse } = await import("yaml");
  return parse(text);
}

/** Image uploads larger than this are refused (they are streamed to disk, never held). */
export const MAX_IMAGE_BYTES = 16 * 2 ** 30;

export class ImageStore {
  /** Fingerprints being imported right now. */
  #importing = new Set<string>();

  constructor(
    private store: Store,
    private paths: Paths,
    private runner: Runner,
    private events: EventBus,
  ) {}

  list(): ImageRecord[] {
    return this.store.listImages();
  }

  /**
   * Start-up: removes uploads a kill interrupted and image files with no record (an import
   * killed between unpacking and recording).
   */
  async recover(log: (msg: string) => void): Promise<void> {
    const known = new Set(this.store.listImages().map((i) => i.fingerprint));
    let entries: Deno.DirEntry[] = [];
    try {
      entries = await Array.fromAsync(Deno.readDir(this.paths.images));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    for (const e of entries) {
      const fp = e.name.replace(/\.d$/, "");
      if (!e.name.startsWith(".upload-") && known.has(fp)) continue;
      await Deno.remove(join(this.paths.images, e.name), { recursive: true }).catch(() => {});
      log(`images: removed ${e.name} (left by an interrupted import)`);
    }
  }

  /** An image by full fingerprint or unique prefix. */
  get(fingerprint: string): ImageRecord {
    if (!/^[0-9a-f]{1,64}$/.test(fingerprint)) {
      throw new NotFound(`Image "${fingerprint}" not found`);
    }
    const found = this.store.findImages(fingerprint);
    if (found.length === 0) throw new NotFound(`Image "${fingerprint}" not found`);
    if (found.length > 1) {
      throw new BadRequest(`Image fingerprint prefix "${fingerprint}" is ambiguous`);
    }
    return found[0];
  }

  /** An image by alias, falling back to a fingerprint (prefix). */
  resolve(aliasOrFingerprint: string): ImageRecord {
    const alias = this.store.getAlias(aliasOrFingerprint);
    if (alias) return this.get(alias.target);
    try {
      return this.get(aliasOrFingerprint);
    } catch (err) {
      if (err instanceof NotFound) {
        throw new NotFound(`Image "${aliasOrFingerprint}" not found: no such alias or fingerprint`);
      }
      throw err;
    }
  }

  aliasesOf(fingerprint: string): AliasRecord[] {
    return this.store.listAliases().filter((a) => a.target === fingerprint);
  }

  file(fingerprint: string): string {
    return this.paths.image(fingerprint);
  }

  /** An image's file as uploaded, streamed; emits `image-retrieved`. */
  async export(fingerprint: string): Promise<FileStream & { image: ImageRecord }> {
    const image = this.get(fingerprint);
    const stream = await fileStream(this.file(image.fingerprint));
    if (!stream) {
      throw new NotFound(
        `The file of image "${
          image.fingerprint.slice(0, 12)
        }" is missing: delete the image and import it again`,
      );
    }
    this.events.lifecycle("image-retrieved", imageUrl(image.fingerprint));
    return { ...stream, image };
  }

  /** The unpacked directory of a VM image. */
  dir(fingerprint: string): string {
    return `${this.paths.image(fingerprint)}.d`;
  }

  /** What a driver needs to create an instance from this image. */
  async source(image: ImageRecord): Promise<ImageSource> {
    const file = this.file(image.fingerprint);
    if (image.type === "container") return { fingerprint: image.fingerprint, file };
    const dir = this.dir(image.fingerprint);
    const meta = MetadataSchema.parse(
      await parseYaml(await Deno.readTextFile(join(dir, "metadata.yaml"))),
    );
    const boot = meta.boot
      ? {
        kernel: join(dir, meta.boot.kernel),
        initrd: meta.boot.initrd ? join(dir, meta.boot.initrd) : undefined,
        cmdline: meta.boot.cmdline,
      }
      : undefined;
    return { fingerprint: image.fingerprint, file, dir, boot };
  }

  /** Imports a unified image tarball from a stream; returns the stored record. */
  async import(body: ReadableStream<Uint8Array>, opts: ImportOptions = {}): Promise<ImageRecord> {
    await Deno.mkdir(this.paths.images, { recursive: true });
    const tmp = join(this.paths.images, `.upload-${crypto.randomUUID()}`);
    let claimed: string | undefined;
    try {
      const hash = createHash("sha256");
      let size = 0;
      const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
      try {
        for await (const chunk of body) {
          hash.update(chunk);
          size += chunk.length;
          if (size > MAX_IMAGE_BYTES) {
            throw new PayloadTooLarge(`Image too large: the limit is ${MAX_IMAGE_BYTES} bytes`);
          }
          let off = 0;
          while (off < chunk.length) off += await file.write(chunk.subarray(off));
          opts.progress?.(size);
        }
      } finally {
        file.close();
      }
      if (size === 0) throw new BadRequest("Empty image upload");
      const fingerprint = hash.digest("hex");
      if (this.store.getImage(fingerprint) || this.#importing.has(fingerprint)) {
        throw new Conflict(`Image "${fingerprint.slice(0, 12)}" already exists`);
      }
      // Concurrent uploads of one new image: the first one imports it, the others are refused.
      this.#importing.add(fingerprint);
      claimed = fingerprint;
      const meta = await this.#readMetadata(tmp);
      const members = await this.#members(tmp);
      const type = members.has("rootfs.img")
        ? "virtual-machine"
        : [...members].some((m) => m === "rootfs" || m.startsWith("rootfs/"))
        ? "container"
        : undefined;
      if (!type) {
        throw new BadRequest(
          "Invalid image: the tarball has neither rootfs/ (a container) nor rootfs.img (a VM)",
        );
      }
      if (meta.boot) {
        for (const f of [meta.boot.kernel, meta.boot.initrd].filter((f) => f !== undefined)) {
          if (!safeMember(f) || !members.has(f)) {
            throw new BadRequest(`Invalid image: boot file "${f}" is not in the tarball`);
          }
        }
      }
      if (type === "virtual-machine") await this.#unpackVm(tmp, this.dir(fingerprint), members);
      await Deno.rename(tmp, this.paths.image(fingerprint));
      const now = new Date().toISOString();
      const record: ImageRecord = {
        fingerprint,
        type,
        architecture: meta.architecture,
        filename: opts.filename ?? `${fingerprint.slice(0, 12)}.tar.gz`,
        size,
        properties: meta.properties,
        public: opts.public ?? false,
        created_at: new Date(meta.creation_date * 1000).toISOString(),
        uploaded_at: now,
        last_used_at: "1970-01-01T00:00:00Z",
      };
      this.store.putImage(record);
      this.events.lifecycle("image-created", imageUrl(fingerprint));
      return record;
    } finally {
      if (claimed) this.#importing.delete(claimed);
      await Deno.remove(tmp).catch(() => {});
    }
  }

  async #readMetadata(file: string): Promise<ImageMetadata> {
    for (const member of ["metadata.yaml", "./metadata.yaml"]) {
      const r = await this.runner.run(["tar", "-xOf", file, member], { allowFailure: true });
      if (r.code !== 0) continue;
      let raw: unknown;
      try {
        raw = await parseYaml(r.stdout);
      } catch {
        throw new BadRequest("Invalid image: metadata.yaml is not YAML");
      }
      const parsed = MetadataSchema.safeParse(raw);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new BadRequest(
          `Invalid image metadata.yaml: ${issue.path.join(".")}: ${issue.message}`,
        );
      }
      return parsed.data;
    }
    throw new BadRequest("Invalid image: not a tarball with metadata.yaml at its top level");
  }

  /** The tarball's member paths, without a leading `./` or trailing `/`. */
  async #members(file: string): Promise<Members> {
    const r = await this.runner.run(["tar", "-tf", file], { allowFailure: true });
    const lines = r.stdout.split("\n").filter(Boolean);
    const names = new Set(lines.map((l) => l.replace(/^\.\//, "").replace(/\/$/, "")));
    return Object.assign(names, { dotted: lines[0]?.startsWith("./") ?? false });
  }

  /** Unpacks a VM image's disk, boot files and metadata once, at import. */
  async #unpackVm(file: string, dir: string, members: Members): Promise<void> {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true });
    const wanted = [...members].filter((m) =>
      m === "metadata.yaml" || m === "rootfs.img" || m.startsWith("boot/")
    );
    const prefix = members.dotted ? "./" : ""; // tar wants members spelled as listed
    try {
      await this.runner.run([
        "tar",
        "-xf",
        file,
        "-C",
        dir,
        "--no-same-owner",
        ...wanted.map((m) => prefix + m),
      ]);
      const info = await this.runner.run([
        "qemu-img",
        "info",
        "--output=json",
        join(dir, "rootfs.img"),
      ]);
      const format = JSON.parse(info.stdout).format;
      if (format !== "qcow2" && format !== "raw") {
        throw new BadRequest(`Invalid image: rootfs.img is ${format}, not qcow2 or raw`);
      }
    } catch (err) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw err;
    }
  }

  /** The unpacked copies of images kept on storage pools (the agent wires the pools). */
  volumes?: { forgetImage(fingerprint: string): Promise<void> };

  async delete(fingerprint: string): Promise<void> {
    const image = this.get(fingerprint);
    if (image.type === "virtual-machine") {
      // A VM's disk is an overlay on the image's: the image must outlive its VMs.
      const user = this.store.listInstances().find((i) =>
        i.config["volatile.base_image"] === image.fingerprint
      );
      if (user) {
        throw new Conflict(
          `Image "${
            image.fingerprint.slice(0, 12)
          }" backs the disk of VM "${user.name}": delete the VM first`,
        );
      }
    }
    this.store.transaction(() => {
      for (const a of this.aliasesOf(image.fingerprint)) this.store.deleteAlias(a.name);
      this.store.deleteImage(image.fingerprint);
    });
    await Deno.remove(this.paths.image(image.fingerprint)).catch(() => {});
    await Deno.remove(this.dir(image.fingerprint), { recursive: true }).catch(() => {});
    await this.volumes?.forgetImage(image.fingerprint);
    this.events.lifecycle("image-deleted", imageUrl(image.fingerprint));
  }

  markUsed(fingerprint: string): void {
    const image = this.store.getImage(fingerprint);
    if (image) this.store.putImage({ ...image, last_used_at: new Date().toISOString() });
  }

  // --- aliases ---

  listAliases(): AliasRecord[] {
    return this.store.listAliases();
  }

  getAlias(name: string): AliasRecord {
    const a = this.store.getAlias(name);
    if (!a) throw new NotFound(`Image alias "${name}" not found`);
    return a;
  }

  createAlias(name: string, target: string, description = ""): AliasRecord {
    checkAliasName(name);
    if (this.store.getAlias(name)) throw new Conflict(`Image alias "${name}" already exists`);
    const image = this.get(target);
    const alias = { name, target: image.fingerprint, description };
    this.store.putAlias(alias);
    this.events.lifecycle("image-alias-created", imageAliasUrl(name), {
      target: image.fingerprint,
    });
    return alias;
  }

  updateAlias(name: string, target: string, description: string): AliasRecord {
    this.getAlias(name);
    const image = this.get(target);
    const alias = { name, target: image.fingerprint, description };
    this.store.putAlias(alias);
    this.events.lifecycle("image-alias-updated", imageAliasUrl(name), {
      target: image.fingerprint,
    });
    return alias;
  }

  deleteAlias(name: string): void {
    this.getAlias(name);
    this.store.deleteAlias(name);
    this.events.lifecycle("image-alias-deleted", imageAliasUrl(name));
  }
}
