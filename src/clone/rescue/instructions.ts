import { networkInterfaces } from 'node:os';
import { NoPeerError, NotFoundError, VerifyError } from '../../errors.js';
import type { RescueInstructions } from './names.js';

/**
 * What a box booted into the rescue asks the netboot server: its name, the disk its machine entry
 * names, the session. The disk comes from the operator's config, never from a guess here; the
 * stream itself is still accepted only when signed by a trusted key, so a forged answer can at
 * worst make the box refuse.
 */
export async function fetchInstructions(url: string, signal?: AbortSignal): Promise<RescueInstructions> {
  let res: Response;
  try {
    res = await fetch(url, { signal: signal ?? AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new NoPeerError(`cannot fetch the instructions ${url} (${(err as Error).message})`);
  }
  if (!res.ok)
    throw new NotFoundError(`${url}: HTTP ${res.status}: the server has no instructions for this box`);
  return checkInstructions(await res.json().catch(() => null), url);
}

export function checkInstructions(raw: unknown, url: string): RescueInstructions {
  const r = (raw ?? {}) as Partial<Record<keyof RescueInstructions, unknown>>;
  const str = (v: unknown) => typeof v === 'string' && v.length > 0;
  if (!str(r.name) || !str(r.mac) || !str(r.disk) || !str(r.session) || !Number.isInteger(r.portbase)) {
    throw new VerifyError(`${url}: not rescue instructions (name, mac, disk, session, portbase)`);
  }
  return r as RescueInstructions;
}

/** The network interface with this MAC address (the one the box network-booted from). */
export function interfaceWithMac(mac: string): string {
  const want = mac.toLowerCase();
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if ((addrs ?? []).some((a) => a.mac.toLowerCase() === want)) return name;
  }
  throw new NotFoundError(`no network interface with MAC ${mac} (up, with an address)`);
}
