import { readFileSync, statSync } from 'node:fs';

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

/** One mount of the mount table: where, and its options (the mount's, then the file system's). */
export interface MountEntry {
  mountPoint: string;
  options: string[];
}

/**
 * The mount table, read in node from /proc/self/mountinfo (no tool, no change): the one reader.
 * Mount points come with space, tab, newline and backslash as octal escapes; they are decoded.
 * An unreadable table is an empty one.
 */
export function readMountTable(mountinfo = '/proc/self/mountinfo'): MountEntry[] {
  let text: string;
  try {
    text = readFileSync(mountinfo, 'utf8');
  } catch {
    return [];
  }
  const decode = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      // Fields: id, parent, major:minor, root, mount point, mount options, optional fields, "-",
      // type, source, super options. A file system read-only in either options is read-only here
      // (as /proc/mounts merges them).
      const f = l.split(' ');
      const sep = f.indexOf('-', 6);
      const superOptions = sep >= 0 ? (f[sep + 3] ?? '') : '';
      return {
        mountPoint: decode(f[4] ?? ''),
        options: [...(f[5] ?? '').split(','), ...superOptions.split(',')].filter(Boolean),
      };
    });
}

/** Is `dir` a mount point now? */
export function isMountPoint(dir: string, mountinfo?: string): boolean {
  return readMountTable(mountinfo).some((m) => m.mountPoint === dir);
}

/** Is the file system at `dir` mounted read-only (its last mount there: the one in use)? */
export function mountedReadOnly(dir: string, mountinfo?: string): boolean {
  return (
    readMountTable(mountinfo)
      .filter((m) => m.mountPoint === dir)
      .at(-1)
      ?.options.includes('ro') ?? false
  );
}
