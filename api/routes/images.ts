/** `/1.0/images*`: list, upload, get, delete; `/1.0/images/aliases*`. */
import { Hono } from "hono";
import type { Agent } from "../../agent/agent.ts";
import { BadRequest, PayloadTooLarge } from "../../contract/errors.ts";
import { MAX_IMAGE_BYTES } from "../../agent/images.ts";
import { parseBody, recursion } from "../body.ts";
import { applyFilter } from "../filter.ts";
import { async, sync } from "../envelope.ts";
import { ImageAliasPostSchema, ImageAliasPutSchema } from "../../contract/schemas.ts";
import { imageView } from "../views.ts";

const header = (c: { req: { header(n: string): string | undefined } }, name: string) =>
  c.req.header(`x-incus-${name}`) ?? c.req.header(`x-lxd-${name}`);

export function imageRoutes(agent: Agent): Hono {
  const app = new Hono();
  const { images, operations } = agent;

  app.get("/1.0/images", (c) => {
    const views = applyFilter(
      images.list().map((i) => imageView(i, images)),
      c.req.query("filter"),
    );
    if (recursion(c) === 0) return sync(c, views.map((i) => `/1.0/images/${i.fingerprint}`));
    return sync(c, views);
  });

  app.post("/1.0/images", async (c) => {
    const type = c.req.header("content-type") ?? "";
    if (type.startsWith("application/json")) {
      throw new BadRequest(
        "Only image file uploads are supported yet: send the tarball as the body",
      );
    }
    if (type.startsWith("multipart/")) {
      throw new BadRequest(
        "Split images (metadata + rootfs) are not supported yet: use a unified tarball",
      );
    }
    const body = c.req.raw.body;
    if (!body) throw new BadRequest("Empty image upload");
    const length = c.req.header("content-length");
    if (length && /^\d+$/.test(length) && Number(length) > MAX_IMAGE_BYTES) {
      throw new PayloadTooLarge(`Image too large: the limit is ${MAX_IMAGE_BYTES} bytes`);
    }
    const filename = header(c, "filename");
    const isPublic = header(c, "public") === "true" || header(c, "public") === "1";
    // The upload is read while the request is open; the operation reports the result.
    const record = await images.import(body, { filename, public: isPublic });
    return async(
      c,
      operations.start({
        description: "Uploading image",
        resources: { images: [`/1.0/images/${record.fingerprint}`] },
        run: () => Promise.resolve({ fingerprint: record.fingerprint, size: record.size }),
      }),
    );
  });

  app.get("/1.0/images/aliases", (c) => {
    const list = images.listAliases();
    if (recursion(c) === 0) return sync(c, list.map((a) => `/1.0/images/aliases/${a.name}`));
    return sync(c, list.map((a) => ({ ...a, type: images.get(a.target).type })));
  });

  app.post("/1.0/images/aliases", async (c) => {
    const body = await parseBody(c, ImageAliasPostSchema);
    images.createAlias(body.name, body.target, body.description);
    return sync(c, {});
  });

  app.get("/1.0/images/aliases/:name", (c) => {
    const a = images.getAlias(c.req.param("name"));
    return sync(c, { ...a, type: images.get(a.target).type });
  });

  app.put("/1.0/images/aliases/:name", async (c) => {
    const body = await parseBody(c, ImageAliasPutSchema);
    images.updateAlias(c.req.param("name"), body.target, body.description);
    return sync(c, {});
  });

  app.delete("/1.0/images/aliases/:name", (c) => {
    images.deleteAlias(c.req.param("name"));
    return sync(c, {});
  });

  app.get("/1.0/images/:fp", (c) => {
    const image = images.get(c.req.param("fp"));
    return sync(c, imageView(image, images), { etag: image.fingerprint });
  });

  app.get("/1.0/images/:fp/export", async (c) => {
    const image = images.get(c.req.param("fp"));
    const file = await Deno.open(images.file(image.fingerprint));
    return c.body(file.readable, 200, {
      "Content-Type": "application/octet-stream",
      "Content-Disposition": `attachment; filename=${image.filename}`,
    });
  });

  app.delete("/1.0/images/:fp", async (c) => {
    const image = images.get(c.req.param("fp"));
    await images.delete(image.fingerprint);
    return async(
      c,
      operations.start({
        description: "Deleting image",
        resources: { images: [`/1.0/images/${image.fingerprint}`] },
        run: () => Promise.resolve(),
      }),
    );
  });

  return app;
}
