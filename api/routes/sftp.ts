/**
 * `GET /1.0/instances/{name}/sftp` with `Upgrade: sftp`: after `101 Switching Protocols` the
 * connection carries SFTP version 3 to a helper confined in the container (what `incus file
 * push/pull/edit/mount` speak). Refusals (no such instance, a VM, too many sessions) come before
 * the 101, as error envelopes.
 */
import type { Agent } from "../../agent/agent.ts";
import { BadRequest } from "../../contract/errors.ts";
import { connectionOf } from "../../server/connection.ts";
import { type Handler, type Route, table } from "../route_table.ts";

export function sftpRoutes(agent: Agent): Route[] {
  const sftp: Handler = async (c) => {
    const upgrade = (c.req.header("upgrade") ?? "").trim().toLowerCase();
    if (upgrade !== "sftp") {
      throw new BadRequest("This endpoint needs a connection upgrade: send Upgrade: sftp");
    }
    const connection = connectionOf(c);
    if (!connection.upgradeRaw) {
      throw new BadRequest("This listener cannot hand over a connection for SFTP");
    }
    const channel = await agent.sftp.open(c.req.param("name")!);
    const { response, stream } = connection.upgradeRaw(c.req.raw, "sftp");
    void stream.then(({ readable, writable }) => {
      // Either side ending ends the session: the helper is killed, the connection closed.
      const end = () => channel.close();
      readable.pipeTo(channel.writable).catch(() => {}).finally(end);
      channel.readable.pipeTo(writable).catch(() => {}).finally(end);
    }, () => channel.close());
    return response;
  };
  return table([["GET", "/1.0/instances/:name/sftp", "trusted", sftp]]);
}
