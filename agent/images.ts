/**
 * The image store: Incus-format images (metadata.yaml + rootfs) kept by sha256 fingerprint, with
 * aliases. Files live in the state dir; rows in SQLite.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import type { Runner } from "../drivers/runner.ts";
import { BadRequest, Conflict, NotFound } from "./errors.ts";
import type { EventBus } from "./events.ts";
import { checkAliasName } from "./names.ts";
import type { Paths } from "./paths.ts";
import type { AliasRecord, ImageRecord, Store } from "./store.ts";

const MetadataSchema = z.object({
  architecture: z.string(),
  creation_date: z.number().int(),
  properties: z.record(z.string(), z.coerce.string()).default({}),
  templates: z.unknown().optional(),
});
export type ImageMetadata = z.infer<typeof MetadataSchema>;

export interface ImportOptions {
  filename?: string;
  public?: boolean;
  /** Called with bytes received so far. */
  progress?: (bytes: number) => void;
}

export class ImageStore {
  constructor(
    private store: Store,
    private paths: Paths,
    private runner: Runner,
    private events: EventBus,
  ) {}

  list(): ImageRecord[] {
    return this.store.listImages();
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

  /** Imports a unified image tarball from a stream; returns the stored record. */
  async import(body: ReadableStream<Uint8Array>, opts: ImportOptions = {}): Promise<ImageRecord> {
    await Deno.mkdir(this.paths.images, { recursive: true });
    const tmp = join(this.paths.images, `.upload-${crypto.randomUUID()}`);
    try {
      const hash = createHash("sha256");
      let size = 0;
      const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
      try {
        for await (const chunk of body) {
          hash.update(chunk);
          size += chunk.length;
          let off = 0;
          while (off < chunk.length) off += await file.write(chunk.subarray(off));
          opts.progress?.(size);
        }
      } finally {
        file.close();
      }
      if (size === 0) throw new BadRequest("Empty image upload");
      const fingerprint = hash.digest("hex");
      if (this.store.getImage(fingerprint)) {
        throw new Conflict(`Image "${fingerprint.slice(0, 12)}" already exists`);
      }
      const meta = await this.#readMetadata(tmp);
      const hasRootfs = await this.#hasMember(tmp, "rootfs");
      if (!hasRootfs) throw new BadRequest("Invalid image: no rootfs/ directory in the tarball");
      await Deno.rename(tmp, this.paths.image(fingerprint));
      const now = new Date().toISOString();
      const record: ImageRecord = {
        fingerprint,
        type: "container",
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
      this.events.lifecycle("image-created", `/1.0/images/${fingerprint}`);
      return record;
    } finally {
      await Deno.remove(tmp).catch(() => {});
    }
  }

  async #readMetadata(file: string): Promise<ImageMetadata> {
    for (const member of ["metadata.yaml", "./metadata.yaml"]) {
      const r = await this.runner.run(["tar", "-xOf", file, member], { allowFailure: true });
      if (r.code !== 0) continue;
      let raw: unknown;
      try {
        raw = parseYaml(r.stdout);
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

  async #hasMember(file: string, dir: string): Promise<boolean> {
    const r = await this.runner.run(["tar", "-tf", file], { allowFailure: true });
    return r.stdout.split("\n").some((l) =>
      l === `${dir}/` || l === `./${dir}/` || l.startsWith(`${dir}/`) || l.startsWith(`./${dir}/`)
    );
  }

  async delete(fingerprint: string): Promise<void> {
    const image = this.get(fingerprint);
    this.store.transaction(() => {
      for (const a of this.aliasesOf(image.fingerprint)) this.store.deleteAlias(a.name);
      this.store.deleteImage(image.fingerprint);
    });
    await Deno.remove(this.paths.image(image.fingerprint)).catch(() => {});
    this.events.lifecycle("image-deleted", `/1.0/images/${image.fingerprint}`);
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
    this.events.lifecycle("image-alias-created", `/1.0/images/aliases/${name}`, {
      target: image.fingerprint,
    });
    return alias;
  }

  updateAlias(name: string, target: string, description: string): AliasRecord {
    this.getAlias(name);
    const image = this.get(target);
    const alias = { name, target: image.fingerprint, description };
    this.store.putAlias(alias);
    this.events.lifecycle("image-alias-updated", `/1.0/images/aliases/${name}`, {
      target: image.fingerprint,
    });
    return alias;
  }

  deleteAlias(name: string): void {
    this.getAlias(name);
    this.store.deleteAlias(name);
    this.events.lifecycle("image-alias-deleted", `/1.0/images/aliases/${name}`);
  }
}
