/** `/1.0/images*`: list, upload, get, export, delete; `/1.0/images/aliases*`. */
import type { Context } from "hono";
import type { Agent } from "../../agent/agent.ts";
import { BadRequest, PayloadTooLarge } from "../../contract/errors.ts";
import { MAX_IMAGE_BYTES } from "../../agent/images.ts";
import { parseBody, recursion } from "../../server/body.ts";
import { applyFilter } from "../filter.ts";
import { async, sync } from "../../server/envelope.ts";
import {
  ImageAliasPostSchema,
  ImageAliasPutSchema,
  ImagesPostSchema,
} from "../../contract/schemas.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { imageAliasView, imageView } from "../views.ts";
import { imageAliasUrl, imageUrl, instanceUrl } from "../../contract/urls.ts";

const header = (c: Context, name: string) =>
  c.req.header(`x-incus-${name}`) ?? c.req.header(`x-lxd-${name}`);

/**
 * A JSON `POST /1.0/images` asks for an image made from an instance or a snapshot (published, an
 * operation), or from elsewhere (a server, a URL: refused by what it asks).
 */
async function publishOrRefuse(c: Context, agent: Agent): Promise<Response> {
  const body = await parseBody(c, ImagesPostSchema);
  const type = body.source?.type ?? "";
  if (["instance", "container", "virtual-machine", "snapshot"].includes(type)) {
    const work = await agent.publisher.preparePublish({
      source: body.source?.name ?? "",
      aliases: (body.aliases ?? []).map((a) => ({
        name: a.name,
        description: a.description ?? "",
      })),
      properties: body.properties ?? {},
      public: body.public ?? false,
      filename: body.filename || undefined,
    });
    return async(
      c,
      agent.operations.start({
        description: "Publishing instance",
        resources: { instances: [instanceUrl((body.source?.name ?? "").split("/")[0])] },
        run: async () => {
          const image = await work();
          return { fingerprint: image.fingerprint, size: image.size };
        },
      }),
    );
  }
  if (type === "image" || type === "url") {
    throw new BadRequest(
      "Copying images from a server or a URL is not supported yet: download the image and upload it",
    );
  }
  throw new BadRequest("Only image file uploads are supported yet: send the tarball as the body");
}

export function imageRoutes(agent: Agent): Route[] {
  const { images, operations } = agent;

  const list: Handler = (c) => {
    const views = applyFilter(
      images.list().map((i) => imageView(i, images)),
      c.req.query("filter"),
    );
    if (recursion(c) === 0) return sync(c, views.map((i) => imageUrl(i.fingerprint)));
    return sync(c, views);
  };

  const upload: Handler = async (c) => {
    const type = c.req.header("content-type") ?? "";
    if (type.startsWith("application/json")) return await publishOrRefuse(c, agent);
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
        resources: { images: [imageUrl(record.fingerprint)] },
        run: () => Promise.resolve({ fingerprint: record.fingerprint, size: record.size }),
      }),
    );
  };

  const listAliases: Handler = (c) => {
    const all = images.listAliases();
    if (recursion(c) === 0) return sync(c, all.map((a) => imageAliasUrl(a.name)));
    return sync(c, all.map((a) => imageAliasView(a, images.get(a.target).type)));
  };

  const createAlias: Handler = async (c) => {
    const body = await parseBody(c, ImageAliasPostSchema);
    images.createAlias(body.name, body.target, body.description);
    return sync(c, {});
  };

  const getAlias: Handler = (c) => {
    const a = images.getAlias(c.req.param("name")!);
    return sync(c, imageAliasView(a, images.get(a.target).type));
  };

  const putAlias: Handler = async (c) => {
    const body = await parseBody(c, ImageAliasPutSchema);
    images.updateAlias(c.req.param("name")!, body.target, body.description);
    return sync(c, {});
  };

  const deleteAlias: Handler = (c) => {
    images.deleteAlias(c.req.param("name")!);
    return sync(c, {});
  };

  const get: Handler = (c) => {
    const image = images.get(c.req.param("fingerprint")!);
    return sync(c, imageView(image, images), { etag: image.fingerprint });
  };

  const exportFile: Handler = async (c) => {
    const { image, size, body } = await images.export(c.req.param("fingerprint")!);
    return c.body(body, 200, {
      "Content-Type": "application/octet-stream",
      "Content-Length": String(size),
      "Content-Disposition": `attachment; filename=${image.filename}`,
    });
  };

  const remove: Handler = async (c) => {
    const image = images.get(c.req.param("fingerprint")!);
    await images.delete(image.fingerprint);
    return async(
      c,
      operations.start({
        description: "Deleting image",
        resources: { images: [imageUrl(image.fingerprint)] },
        run: () => Promise.resolve(),
      }),
    );
  };

  // The aliases come before `/1.0/images/:fp`, which would otherwise take "aliases" for a
  // fingerprint.
  return table([
    ["GET", "/1.0/images", "trusted", list],
    ["POST", "/1.0/images", "trusted", upload],
    ["GET", "/1.0/images/aliases", "trusted", listAliases],
    ["POST", "/1.0/images/aliases", "trusted", createAlias],
    ["GET", "/1.0/images/aliases/:name", "trusted", getAlias],
    ["PUT", "/1.0/images/aliases/:name", "trusted", putAlias],
    ["DELETE", "/1.0/images/aliases/:name", "trusted", deleteAlias],
    ["GET", "/1.0/images/:fingerprint", "trusted", get],
    ["GET", "/1.0/images/:fingerprint/export", "trusted", exportFile],
    ["DELETE", "/1.0/images/:fingerprint", "trusted", remove],
  ]);
}
