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

/** Is this LV (with its kernel device number from lvs) the file system mounted at / right now? */
export function isRunningRoot(
  lv: { kernelMajor: number | null; kernelMinor: number | null } | undefined,
): boolean {
  const dev = deviceOf('/');
  return !!lv && !!dev && lv.kernelMajor === dev.major && lv.kernelMinor === dev.minor;
}
