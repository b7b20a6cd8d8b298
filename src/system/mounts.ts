import { statSync } from 'node:fs';

export interface DeviceNumber {
  major: number;
  minor: number;
}

/**
 * The device a path's file system lives on, decoded from st_dev with the kernel's encoding
 * (major in bits 8–19 and 32+, minor in bits 0–7 and 20+). No command needed.
 */
export function deviceOf(p: string): DeviceNumber | null {
  try {
    const dev = statSync(p, { bigint: true }).dev;
    const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
    const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
    return { major, minor };
  } catch {
    return null;
  }
}
