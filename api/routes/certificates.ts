/** `/1.0/certificates*`: the trust store (list, add, show, update and delete certificates). */
import type { Agent } from "../../agent/agent.ts";
import {
  CertificatePatchSchema,
  CertificatePutSchema,
  CertificatesPostSchema,
} from "../../contract/schemas.ts";
import { certificateUrl } from "../../contract/urls.ts";
import { parseBody, recursion } from "../../server/body.ts";
import { async, sync } from "../../server/envelope.ts";
import { identityOf, isTrustedClient, refusal } from "../access.ts";
import { connectionOf } from "../../server/connection.ts";
import { BadRequest, Forbidden } from "../../contract/errors.ts";
import { encodeBase64 } from "../../contract/bytes.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { certificateView } from "../views.ts";

export function certificateRoutes(agent: Agent): Route[] {
  const { trust } = agent;

  const list: Handler = (c) => {
    const all = trust.list();
    if (recursion(c) === 0) return sync(c, all.map((r) => certificateUrl(r.fingerprint)));
    return sync(c, all.map(certificateView));
  };

  /**
   * Adds a certificate, issues a token (`token: true`, an operation), or redeems one: the only
   * thing an untrusted caller may do here. Incus answers an added certificate with 201, its URL
   * and no metadata.
   */
  const add: Handler = async (c) => {
    const body = await parseBody(c, CertificatesPostSchema);
    const id = identityOf(agent, c);
    const caller = connectionOf(c).caller;
    const peer = caller.via === "https" && caller.certificate
      ? encodeBase64(caller.certificate)
      : undefined;
    const sent = body.trust_token || body.password;
    let rec;
    if (!isTrustedClient(id)) {
      if (!sent) throw new Forbidden("not authorized");
      if (!peer) {
        throw new Forbidden("A trust token is redeemed over HTTPS with a client certificate");
      }
      rec = agent.tokens.redeem(sent, peer);
    } else {
      const why = refusal(agent, id, { access: "admin", method: "POST" });
      if (why) throw new Forbidden(why);
      if (body.token) return async(c, agent.tokens.issue(body));
      const certificate = body.certificate || peer;
      if (!certificate) {
        throw new BadRequest(
          "A certificate is required: send it as base64 DER or PEM (over HTTPS, the client's own is taken when none is sent)",
        );
      }
      rec = trust.add({ ...body, certificate });
    }
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
    ["GET", "/1.0/certificates", "admin", list],
    // Untrusted callers may redeem a trust token here, and nothing else (see `add`).
    ["POST", "/1.0/certificates", "untrusted", add],
    ["GET", "/1.0/certificates/:fingerprint", "admin", get],
    ["PUT", "/1.0/certificates/:fingerprint", "admin", put],
    ["PATCH", "/1.0/certificates/:fingerprint", "admin", patch],
    ["DELETE", "/1.0/certificates/:fingerprint", "admin", remove],
  ]);
}
