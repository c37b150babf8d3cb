/**
 * Client certificates for trust store tests, made with the `openssl` CLI: self-signed ECDSA P-384
 * (as the clients make theirs), RSA 1024 (too weak, refused) or already expired (`-days -1`).
 */
import { createHash } from "node:crypto";
import { join } from "node:path";

export type CertKind = "ec" | "rsa1024" | "expired";

export interface TestCert {
  /** PEM, as the API shows it. */
  pem: string;
  /** Base64 of the DER, as `lxc config trust add` sends it. */
  base64: string;
  /** Lowercase hex SHA-256 of the DER. */
  fingerprint: string;
  /** The PEM file. */
  path: string;
}

async function openssl(args: string[]): Promise<Uint8Array> {
  const out = await new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return out.stdout;
}

/** Makes one certificate with common name `cn` in `dir`. */
export async function makeCert(dir: string, cn: string, kind: CertKind = "ec"): Promise<TestCert> {
  const key = join(dir, `${cn}.key`);
  const path = join(dir, `${cn}.crt`);
  const newkey = kind === "rsa1024"
    ? ["-newkey", "rsa:1024"]
    : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"];
  if (kind === "expired") {
    const csr = join(dir, `${cn}.csr`);
    await openssl([
      "req",
      "-new",
      ...newkey,
      "-nodes",
      "-keyout",
      key,
      "-out",
      csr,
      "-subj",
      `/CN=${cn}`,
    ]);
    await openssl(["x509", "-req", "-in", csr, "-signkey", key, "-days", "-1", "-out", path]);
  } else {
    await openssl([
      "req",
      "-x509",
      ...newkey,
      "-nodes",
      "-keyout",
      key,
      "-out",
      path,
      "-days",
      "30",
      "-subj",
      `/CN=${cn}`,
    ]);
  }
  const der = await openssl(["x509", "-in", path, "-outform", "DER"]);
  return {
    pem: await Deno.readTextFile(path),
    base64: btoa(String.fromCharCode(...der)),
    fingerprint: createHash("sha256").update(der).digest("hex"),
    path,
  };
}
