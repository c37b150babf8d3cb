/**
 * The daemon's server certificate, as Incus makes its own: self-signed ECDSA P-384, valid ten
 * years, CN `user@host`, SANs the host's DNS name, 127.0.0.1 and ::1 (clients set ServerName to
 * the first DNS SAN). Made once with the `openssl` CLI into `server.crt` and `server.key` (0600)
 * and reused across restarts; a pair that is missing, unparsable or mismatched is made again.
 */
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { join } from "node:path";

export interface ServerCert {
  /** The certificate as PEM. */
  certificate: string;
  /** Lowercase hex sha256 of the certificate's DER. */
  fingerprint: string;
}

/** Runs a command to its end, throwing when it fails (the agent's runner, or `runCommand`). */
export interface CommandRunner {
  run(argv: string[], opts: { env: Record<string, string> }): Promise<unknown>;
}

/** A CommandRunner on `Deno.Command` alone, for servers without the agent's runner (the hub). */
export const runCommand: CommandRunner = {
  async run(argv, opts) {
    const out = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      env: opts.env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`${argv[0]} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
    }
  },
};

export const CERT_FILE = "server.crt";
export const KEY_FILE = "server.key";
const TEMP_PREFIX = ".server-cert-";
const VALID_DAYS = 3650;

/** A DNS name: dot-separated labels of letters, digits and inner hyphens, at most 253 long. */
export function isDnsName(name: string): boolean {
  const label = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
  return name.length > 0 && name.length <= 253 && name.split(".").every((l) => label.test(l));
}

/** The name that goes into the certificate: the host's own when it is a DNS name. */
export function certHostname(hostname: string): string {
  return isDnsName(hostname) ? hostname : "localhost";
}

function certUser(user: string): string {
  return /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(user) ? user : "root";
}

/** The sha256 fingerprint of a PEM certificate's DER (throws on an unparsable certificate). */
export function fingerprintOf(pem: string): string {
  return createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
}

/** The pair in `dir` when both files parse and the key is the certificate's; else undefined. */
async function readPair(dir: string): Promise<ServerCert | undefined> {
  try {
    const certificate = await Deno.readTextFile(join(dir, CERT_FILE));
    const key = createPrivateKey(await Deno.readTextFile(join(dir, KEY_FILE)));
    const cert = new X509Certificate(certificate);
    if (!cert.checkPrivateKey(key)) return undefined;
    return { certificate, fingerprint: fingerprintOf(certificate) };
  } catch {
    return undefined;
  }
}

/** The argv that makes a self-signed P-384 pair into `keyOut` and `certOut`. */
export function opensslArgv(
  host: string,
  user: string,
  keyOut: string,
  certOut: string,
): string[] {
  return [
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:secp384r1",
    "-sha384",
    "-nodes",
    "-days",
    String(VALID_DAYS),
    "-subj",
    `/O=outpost/CN=${user}@${host}`,
    "-addext",
    `subjectAltName=DNS:${host},IP:127.0.0.1,IP:::1`,
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-addext",
    "keyUsage=digitalSignature,keyEncipherment",
    "-addext",
    "extendedKeyUsage=serverAuth",
    "-keyout",
    keyOut,
    "-out",
    certOut,
  ];
}

/**
 * Reuses the pair in `dir`, or makes one: openssl writes into a private temp dir beside it, the
 * key is set to 0600, and each file is renamed into place (key first). A kill -9 at any point
 * leaves a temp dir (removed at the next call) or a pair that fails the check and is made again.
 */
export async function ensureServerCert(
  runner: CommandRunner,
  dir: string,
  host: { hostname: string; user: string },
): Promise<ServerCert> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory && e.name.startsWith(TEMP_PREFIX)) {
      await Deno.remove(join(dir, e.name), { recursive: true });
    }
  }
  const existing = await readPair(dir);
  if (existing) return existing;
  const tmp = await Deno.makeTempDir({ dir, prefix: TEMP_PREFIX });
  try {
    const key = join(tmp, KEY_FILE);
    const cert = join(tmp, CERT_FILE);
    await runner.run(
      opensslArgv(certHostname(host.hostname), certUser(host.user), key, cert),
      { env: { OPENSSL_CONF: "/dev/null" } },
    );
    await Deno.chmod(key, 0o600);
    await Deno.chmod(cert, 0o644);
    await Deno.rename(key, join(dir, KEY_FILE));
    await Deno.rename(cert, join(dir, CERT_FILE));
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  const made = await readPair(dir);
  if (!made) throw new Error(`The server certificate made in ${dir} does not parse: remove it`);
  return made;
}
