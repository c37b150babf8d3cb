/**
 * The trust store: the client certificates the daemon trusts (`/1.0/certificates`). A certificate
 * is checked when added (it parses, is valid now, and an RSA key has at least 2048 bits), kept as
 * PEM under the SHA-256 of its DER, and every change is announced as a lifecycle event. Joining
 * with a token or a trust password is not supported yet.
 */
import { createHash, X509Certificate } from "node:crypto";
import { BadRequest, Conflict, InvalidState, NotFound } from "../contract/errors.ts";
import type { CertificatePatch, CertificatesPost } from "../contract/schemas.ts";
import { certificateUrl } from "../contract/urls.ts";
import type { EventBus } from "./events.ts";
import type { CertificateRecord, Store } from "./store.ts";

/** The most certificates the store takes; a request for one more is refused. */
export const MAX_CERTIFICATES = 1000;
/** The smallest RSA key accepted, in bits (as Incus). */
export const MIN_RSA_BITS = 2048;

/** A certificate checked and made ready to store. */
export interface ParsedCertificate {
  /** PEM, as the API shows it. */
  pem: string;
  /** Lowercase hex SHA-256 of the DER. */
  fingerprint: string;
  /** The subject's common name, the default name. */
  commonName: string;
}

/** A base64 text, whitespace allowed (clients wrap long lines). */
const BASE64 = /^[A-Za-z0-9+/\s]+={0,2}\s*$/;

/** A certificate sent as PEM or base64 DER, decoded but not checked. Throws BadRequest. */
function decode(text: string): X509Certificate {
  const trimmed = text.trim();
  if (trimmed === "") {
    throw new BadRequest(
      "A certificate is required: send it as base64 DER or PEM (adding the caller's own TLS certificate comes with the HTTPS listener)",
    );
  }
  try {
    if (trimmed.startsWith("-----BEGIN CERTIFICATE-----")) return new X509Certificate(trimmed);
    if (!BASE64.test(trimmed)) throw new Error("neither PEM nor base64 DER");
    const der = Uint8Array.from(atob(trimmed.replace(/\s+/g, "")), (ch) => ch.charCodeAt(0));
    return new X509Certificate(der);
  } catch (err) {
    throw new BadRequest(`Invalid certificate: ${err instanceof Error ? err.message : err}`);
  }
}

/** Lowercase hex SHA-256 of a certificate's DER. */
function fingerprintOf(cert: X509Certificate): string {
  return cert.fingerprint256.replaceAll(":", "").toLowerCase();
}

/**
 * Parses a certificate sent as PEM or base64 DER and checks it: it must parse, be valid at `now`,
 * and carry an RSA key of at least 2048 bits if RSA. Throws BadRequest saying what is wrong.
 */
export function parseCertificate(text: string, now = new Date()): ParsedCertificate {
  const cert = decode(text);
  const from = new Date(cert.validFrom);
  const to = new Date(cert.validTo);
  if (!(from <= now)) {
    throw new BadRequest(`Invalid certificate: not valid before ${cert.validFrom}`);
  }
  if (!(now <= to)) throw new BadRequest(`Invalid certificate: expired on ${cert.validTo}`);
  const key = cert.publicKey;
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (key.asymmetricKeyType === "rsa" && bits < MIN_RSA_BITS) {
    throw new BadRequest(
      `Invalid certificate: its RSA key has ${bits} bits, fewer than ${MIN_RSA_BITS}: make a new one (ECDSA P-384 or RSA 4096)`,
    );
  }
  return {
    pem: cert.toString().trim() + "\n",
    fingerprint: fingerprintOf(cert),
    commonName: /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? "",
  };
}

export class TrustStore {
  constructor(
    private readonly store: Store,
    private readonly events: EventBus,
    private readonly max = MAX_CERTIFICATES,
  ) {}

  /** Validity windows of certificates seen, by fingerprint (bounded: cleared when full). */
  #validity = new Map<string, { from: number; to: number }>();

  /**
   * The trusted certificate a TLS peer presented: an exact match of its DER in the store, valid
   * now; undefined for any other.
   */
  identify(der: Uint8Array, now = Date.now()): CertificateRecord | undefined {
    const fingerprint = createHash("sha256").update(der).digest("hex");
    const rec = this.store.findCertificates(fingerprint)[0];
    if (!rec || rec.fingerprint !== fingerprint) return undefined;
    let validity = this.#validity.get(fingerprint);
    if (!validity) {
      const cert = new X509Certificate(rec.certificate);
      validity = { from: Date.parse(cert.validFrom), to: Date.parse(cert.validTo) };
      if (this.#validity.size >= this.max) this.#validity.clear();
      this.#validity.set(fingerprint, validity);
    }
    return validity.from <= now && now <= validity.to ? rec : undefined;
  }

  list(): CertificateRecord[] {
    return this.store.listCertificates();
  }

  /** A certificate by full fingerprint or unique prefix. */
  get(fingerprint: string): CertificateRecord {
    const found = /^[0-9a-f]{1,64}$/.test(fingerprint)
      ? this.store.findCertificates(fingerprint)
      : [];
    if (found.length === 0) throw new NotFound(`Certificate "${fingerprint}" not found`);
    if (found.length > 1) {
      throw new BadRequest(`Certificate fingerprint prefix "${fingerprint}" is ambiguous`);
    }
    return found[0];
  }

  /** Trusts a certificate; answers its record. A certificate already trusted is a Conflict. */
  add(req: CertificatesPost): CertificateRecord {
    const parsed = parseCertificate(req.certificate);
    if (this.store.findCertificates(parsed.fingerprint).length > 0) {
      throw new Conflict(`Certificate ${parsed.fingerprint} is already trusted`);
    }
    if (this.store.countCertificates() >= this.max) {
      throw new InvalidState(
        `The trust store is full (${this.max} certificates): delete one before adding another`,
      );
    }
    const rec: CertificateRecord = {
      fingerprint: parsed.fingerprint,
      name: req.name || parsed.commonName,
      type: req.type,
      restricted: req.restricted,
      projects: req.projects,
      certificate: parsed.pem,
      description: req.description,
    };
    this.store.putCertificate(rec);
    this.events.lifecycle("certificate-created", certificateUrl(rec.fingerprint), {
      name: rec.name,
    });
    return rec;
  }

  /**
   * Changes a certificate's name, type, restriction, projects or description (the fields given).
   * A `certificate` field must be the one stored (clients send the object back): replacing it is
   * not supported yet.
   */
  update(fingerprint: string, changes: CertificatePatch): CertificateRecord {
    const current = this.get(fingerprint);
    const sent = changes.certificate?.trim() ?? "";
    if (sent !== "") {
      if (fingerprintOf(decode(sent)) !== current.fingerprint) {
        throw new BadRequest(
          "Replacing a trusted certificate is not supported yet: add the new one and delete the old",
        );
      }
    }
    const rec: CertificateRecord = {
      ...current,
      name: changes.name ?? current.name,
      type: changes.type ?? current.type,
      restricted: changes.restricted ?? current.restricted,
      projects: changes.projects ?? current.projects,
      description: changes.description ?? current.description,
    };
    this.store.putCertificate(rec);
    this.events.lifecycle("certificate-updated", certificateUrl(rec.fingerprint), {
      name: rec.name,
    });
    return rec;
  }

  delete(fingerprint: string): void {
    const rec = this.get(fingerprint);
    this.store.deleteCertificate(rec.fingerprint);
    this.events.lifecycle("certificate-deleted", certificateUrl(rec.fingerprint), {
      name: rec.name,
    });
  }
}
