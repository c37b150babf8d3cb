/** `/1.0/certificates*`: the trust store (list, add, show, update and delete certificates). */
import type { Agent } from "../../agent/agent.ts";
import {
  CertificatePatchSchema,
  CertificatePutSchema,
  CertificatesPostSchema,
} from "../../contract/schemas.ts";
import { certificateUrl } from "../../contract/urls.ts";
import { parseBody, recursion } from "../body.ts";
import { sync } from "../envelope.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { certificateView } from "../views.ts";

export function certificateRoutes(agent: Agent): Route[] {
  const { trust } = agent;

  const list: Handler = (c) => {
    const all = trust.list();
    if (recursion(c) === 0) return sync(c, all.map((r) => certificateUrl(r.fingerprint)));
    return sync(c, all.map(certificateView));
  };

  // Incus answers 201 with the new certificate's URL and no metadata.
  const add: Handler = async (c) => {
    const rec = trust.add(await parseBody(c, CertificatesPostSchema));
    c.header("Location", certificateUrl(rec.fingerprint));
    return sync(c, null, { status: 201 });
  };

  const get: Handler = (c) => sync(c, certificateView(trust.get(c.req.param("fingerprint")!)));

  const put: Handler = async (c) => {
    const body = await parseBody(c, CertificatePutSchema, { requireBody: true });
    trust.update(c.req.param("fingerprint")!, body);
    return sync(c, {});
  };

  const patch: Handler = async (c) => {
    trust.update(c.req.param("fingerprint")!, await parseBody(c, CertificatePatchSchema));
    return sync(c, {});
  };

  const remove: Handler = (c) => {
    trust.delete(c.req.param("fingerprint")!);
    return sync(c, {});
  };

  return table([
    ["GET", "/1.0/certificates", "trusted", list],
    ["POST", "/1.0/certificates", "trusted", add],
    ["GET", "/1.0/certificates/:fingerprint", "trusted", get],
    ["PUT", "/1.0/certificates/:fingerprint", "trusted", put],
    ["PATCH", "/1.0/certificates/:fingerprint", "trusted", patch],
    ["DELETE", "/1.0/certificates/:fingerprint", "trusted", remove],
  ]);
}
