/**
 * `/fleet/v1/metrics`: every online host's `/1.0/metrics` in one Prometheus text, each sample
 * labelled with its `host`. The text format wants a family's lines together, so the hosts'
 * texts are regrouped by family (HELP and TYPE once, then every host's samples).
 */

interface Family {
  help?: string;
  type?: string;
  samples: string[];
}

/** `host="..."` with the label value escaped as the text format wants. */
function hostLabel(host: string): string {
  return `host="${host.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`;
}

/** A sample line with the host label put first. */
export function withHost(line: string, host: string): string | undefined {
  const m =
    /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^]*?\})?(\s+(?:[-+]?[0-9.eE+-]+|[-+]?Inf|NaN)(?:\s+-?\d+)?)\s*$/
      .exec(line);
  if (!m) return undefined;
  const [, name, labels, rest] = m;
  const inner = labels ? labels.slice(1, -1).trim() : "";
  // A host's own `host` label would clash: it is dropped for the hub's.
  if (/(^|,)\s*host\s*=/.test(inner)) return undefined;
  return `${name}{${hostLabel(host)}${inner ? `,${inner}` : ""}}${rest}`;
}

/** Merges the hosts' metric texts into one. */
export function mergeMetrics(texts: { host: string; text: string }[]): string {
  const families = new Map<string, Family>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, f = { samples: [] });
    return f;
  };
  for (const { host, text } of texts) {
    let current = "";
    for (const line of text.split("\n")) {
      const meta = /^#\s+(HELP|TYPE)\s+([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(.*)$/.exec(line);
      if (meta) {
        current = meta[2];
        const f = family(current);
        if (meta[1] === "HELP") f.help ??= line;
        else f.type ??= line;
        continue;
      }
      if (line.trim() === "" || line.startsWith("#")) continue;
      const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? "";
      const sample = withHost(line, host);
      if (!sample) continue;
      family(current && name.startsWith(current) ? current : name).samples.push(sample);
    }
  }
  const out: string[] = [];
  for (const f of families.values()) {
    if (f.samples.length === 0) continue;
    if (f.help) out.push(f.help);
    if (f.type) out.push(f.type);
    out.push(...f.samples);
  }
  return out.length ? `${out.join("\n")}\n` : "";
}
