import { isIPv4 } from 'node:net';
import { RefusedError, UsageError } from '../errors.js';

/**
 * Another network identity for an image (a standby copy is brought up beside the
 * original, so it must not answer to the original's name or address). The image job writes it into
 * its own temporary snapshot before the copy, never into snap0 (the restore point) or lv-root.
 *
 * The edits are pure functions of the files' text, so the plan can be checked without a system.
 */
export interface Identity {
  hostname: string;
  /** IPv4 address, optionally with a prefix length (`10.0.0.8/24`); null keeps the addresses. */
  ip: string | null;
}

const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Check --hostname / --ip as given on the command line (UsageError, exit 2). */
export function parseIdentity(hostname: unknown, ip: unknown): Identity | null {
  if (hostname === undefined && ip === undefined) return null;
  if (typeof hostname !== 'string' || hostname === '') {
    throw new UsageError(
      '--ip needs --hostname too: an image brought up beside the original needs its own name',
    );
  }
  if (hostname.length > 253 || !hostname.split('.').every((l) => LABEL.test(l))) {
    throw new UsageError(
      `--hostname ${JSON.stringify(hostname)} is not a host name (letters, digits and inner hyphens, dot-separated labels of up to 63)`,
    );
  }
  if (ip === undefined) return { hostname, ip: null };
  const m = typeof ip === 'string' ? /^([0-9.]+)(?:\/(\d{1,2}))?$/.exec(ip) : null;
  if (!m || !isIPv4(m[1]!) || (m[2] !== undefined && Number(m[2]) > 32)) {
    throw new UsageError(`--ip ${JSON.stringify(ip)} is not an IPv4 address (a.b.c.d or a.b.c.d/prefix)`);
  }
  return { hostname, ip: ip as string };
}

/** The first name in /etc/hostname (the rest of the file is ignored, as hostname(1) does). */
export function readHostname(text: string): string | null {
  for (const line of text.split('\n')) {
    const t = line.replace(/#.*/, '').trim();
    if (t) return t.split(/\s+/)[0]!;
  }
  return null;
}

/**
 * /etc/hosts with the old name (and its short form) replaced by the new one wherever it is a whole
 * name on an address line; comments and other names kept. When no line named the host, Debian's
 * `127.0.1.1 <name>` line is added so the name resolves. With an IP, a line for the old static
 * address gets the new one.
 */
export function rewriteHosts(
  text: string,
  old: { hostname: string | null; address: string | null },
  id: Identity,
): string {
  const newShort = id.hostname.split('.')[0]!;
  const oldShort = old.hostname?.split('.')[0] ?? null;
  const newAddr = id.ip?.split('/')[0] ?? null;
  let named = false;
  const lines = text.split('\n').map((line) => {
    const hash = line.indexOf('#');
    const body = hash >= 0 ? line.slice(0, hash) : line;
    const comment = hash >= 0 ? line.slice(hash) : '';
    const fields = body.trim().split(/\s+/).filter(Boolean);
    if (fields.length < 2) return line;
    const [addr, ...names] = fields;
    const rename = (n: string) =>
      old.hostname && n === old.hostname ? id.hostname : oldShort && n === oldShort ? newShort : n;
    const outNames = names.map(rename);
    const outAddr = newAddr && old.address && addr === old.address ? newAddr : addr!;
    const changed = outAddr !== addr || outNames.some((n, i) => n !== names[i]);
    if (outNames.includes(id.hostname) || outNames.includes(newShort)) named = true;
    if (!changed) return line;
    return `${outAddr}\t${outNames.join(' ')}${comment ? ` ${comment}` : ''}`;
  });
  if (!named) {
    const names = newShort === id.hostname ? id.hostname : `${id.hostname} ${newShort}`;
    if (lines.length && lines.at(-1) === '') lines.pop();
    lines.push(`127.0.1.1\t${names}`, '');
  }
  return lines.join('\n');
}

/**
 * /etc/network/interfaces (ifupdown) with the address of its one `inet static` stanza replaced.
 * Refused (nothing written) when there is none, or more than one: which interface the standby's
 * address belongs to is not zshield's guess to make. A prefix given with the address replaces the
 * stanza's netmask line. Returns the old address too (for /etc/hosts).
 */
export function rewriteInterfaces(text: string, ip: string): { text: string; oldAddress: string } {
  const lines = text.split('\n');
  const statics: number[] = [];
  lines.forEach((l, i) => {
    if (/^\s*iface\s+\S+\s+inet\s+static\b/.test(l)) statics.push(i);
  });
  if (statics.length !== 1) {
    throw new RefusedError(
      statics.length === 0
        ? 'the image has no static IPv4 address in /etc/network/interfaces to change (no "iface ... inet static")'
        : `the image's /etc/network/interfaces has ${statics.length} static IPv4 stanzas: which one gets --ip is ambiguous`,
      { hint: 'make the image without --ip and set the address on the standby itself' },
    );
  }
  const start = statics[0]!;
  let end = lines.length;
  for (let i = start + 1; i < lines.length; i++) {
    if (/^\s*(iface|auto|allow-\S+|mapping|source|source-directory)\b/.test(lines[i]!)) {
      end = i;
      break;
    }
  }
  const [addr, prefix] = ip.split('/');
  let oldAddress: string | null = null;
  const out: string[] = [];
  for (const [i, line] of lines.entries()) {
    if (i > start && i < end) {
      const m = /^(\s*)address\s+(\S+)/.exec(line);
      if (m) {
        oldAddress = m[2]!.split('/')[0]!;
        const keepPrefix = prefix === undefined && m[2]!.includes('/') ? `/${m[2]!.split('/')[1]}` : '';
        out.push(`${m[1]}address ${prefix === undefined ? addr : ip}${keepPrefix}`);
        continue;
      }
      if (prefix !== undefined && /^\s*netmask\s/.test(line)) continue;
    }
    out.push(line);
  }
  if (oldAddress === null) {
    throw new RefusedError(
      `the static stanza of the image's /etc/network/interfaces (line ${start + 1}) has no address line`,
    );
  }
  return { text: out.join('\n'), oldAddress };
}
