import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { RefusedError } from '../errors.js';
import type { Check } from '../plan/plan.js';
import type { Runner } from '../system/runner.js';

/**
 * The file system UUID of the system disk's /boot, put on the VG by the factory reset that made
 * it. VG metadata is outside lv-root and outside /boot, so neither a rollback nor a damaged /boot
 * loses it; /boot is then found by what it is, never by its partition number (the seed's own
 * layout has the PV as partition 1 and no /boot at all).
 */
export const BOOT_UUID_TAG = 'zshield_boot_uuid=';
/** The label a factory reset gives /boot: how a VG made before the tag existed finds its /boot. */
export const BOOT_LABEL = 'zs-boot';

export type BootFs =
  | { kind: 'separate'; device: string; uuid: string; type: string; how: string }
  /** No /boot of its own: /boot is a folder of lv-root and is rolled back with it. */
  | { kind: 'none'; why: string }
  /** A /boot was recorded but cannot be used now: every flow that needs it refuses before writing. */
  | { kind: 'lost'; why: string };

export interface BlkidEntry {
  device: string;
  uuid: string;
  type: string;
  label: string;
}

/** `blkid -o export` output: blocks of KEY=value lines, one block per device. */
export function parseBlkid(text: string): BlkidEntry[] {
  return text
    .split(/\n\s*\n/)
    .map((block) => {
      const kv = new Map(
        block
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l.includes('='))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
      );
      return {
        device: kv.get('DEVNAME') ?? '',
        uuid: kv.get('UUID') ?? '',
        type: kv.get('TYPE') ?? '',
        label: kv.get('LABEL') ?? '',
      };
    })
    .filter((e) => e.device);
}

/** The whole disk a partition belongs to, from sysfs (vdb2 -> vdb); null when sysfs does not say. */
export function diskOfDevice(device: string, sysRoot = '/sys'): string | null {
  const name = path.basename(device);
  const dir = path.join(sysRoot, 'class', 'block', name);
  try {
    if (!existsSync(path.join(dir, 'partition'))) return name;
    return path.basename(path.dirname(realpathSync(dir)));
  } catch {
    return null;
  }
}

/** File system types the running kernel can mount (ext2/3 are served by the ext4 driver). */
function kernelMounts(type: string, procFilesystems: string): boolean {
  let text: string;
  try {
    text = readFileSync(procFilesystems, 'utf8');
  } catch {
    return true; // unknown: the mount itself will tell
  }
  const known = new Set(text.split('\n').map((l) => l.trim().split(/\s+/).at(-1)));
  return known.has(type) || (/^ext[234]$/.test(type) && known.has('ext4'));
}

export interface FindBootInput {
  runner: Runner;
  vgTags: readonly string[];
  /** The VG's physical volumes (only asked for when /boot is looked for by its label). */
  pvDevices: () => Promise<string[]>;
  sysRoot?: string;
  procFilesystems?: string;
}

/**
 * Find the system disk's /boot by what it is: the UUID the factory reset recorded on the VG; for
 * a VG made before that, an ext file system labelled zs-boot on the VG's own disk. Read-only:
 * `blkid` probes the devices without its cache (a stale cache would name a wiped partition).
 */
export async function findBoot(input: FindBootInput): Promise<BootFs> {
  const out = await input.runner.run({
    file: 'blkid',
    args: ['-c', '/dev/null', '-o', 'export'],
    mutates: false,
    okCodes: [0, 2], // 2: no file system found at all
  });
  const all = parseBlkid(out.stdout);
  const recorded = input.vgTags.find((t) => t.startsWith(BOOT_UUID_TAG))?.slice(BOOT_UUID_TAG.length);
  const sysRoot = input.sysRoot ?? '/sys';
  const pvDisks = async () =>
    new Set((await input.pvDevices()).map((d) => diskOfDevice(d, sysRoot)).filter((d) => d !== null));
  let found: BlkidEntry[];
  let how: string;
  if (recorded) {
    found = all.filter((e) => e.uuid === recorded);
    how = `UUID ${recorded}, recorded at factory reset`;
    if (found.length === 0) {
      return {
        kind: 'lost',
        why: `the system's /boot (file system UUID ${recorded}, recorded at factory reset) is on no disk: it was reformatted or its superblock is damaged`,
      };
    }
  } else {
    const disks = await pvDisks();
    found = all.filter(
      (e) =>
        e.label === BOOT_LABEL &&
        /^ext[234]$/.test(e.type) &&
        (disks.size === 0 || disks.has(diskOfDevice(e.device, sysRoot) ?? '')),
    );
    how = `label ${BOOT_LABEL} on the volume group's disk`;
    if (found.length === 0) {
      return {
        kind: 'none',
        why: `no /boot file system was recorded for this volume group and none labelled ${BOOT_LABEL} is on its disk: /boot is inside the root and is restored with it`,
      };
    }
  }
  if (found.length > 1) {
    const disks = await pvDisks();
    const near = found.filter((e) => disks.has(diskOfDevice(e.device, sysRoot) ?? ''));
    if (near.length !== 1) {
      return {
        kind: 'lost',
        why: `more than one file system matches the system's /boot (${how}): ${found.map((e) => e.device).join(', ')}`,
      };
    }
    found = near;
  }
  const boot = found[0]!;
  if (!kernelMounts(boot.type, input.procFilesystems ?? '/proc/filesystems')) {
    return {
      kind: 'lost',
      why: `the system's /boot ${boot.device} is ${boot.type}, which this kernel cannot mount`,
    };
  }
  return { kind: 'separate', device: boot.device, uuid: boot.uuid, type: boot.type, how };
}

export function describeBoot(b: BootFs): string {
  if (b.kind === 'separate') return `/boot: ${b.device} (${b.type}, ${b.how})`;
  return b.kind === 'none' ? `no separate /boot: ${b.why}` : `/boot: ${b.why}`;
}

/** A plan's check: /boot was found (or there is none), before anything irreversible. */
export function bootCheck(b: BootFs): Check {
  return {
    title:
      b.kind === 'none'
        ? 'there is no separate /boot (nothing to mount or put back)'
        : "the system's /boot is found by its file system and the kernel can mount it",
    run: () => {
      if (b.kind === 'lost') {
        throw new RefusedError(b.why, {
          hint: 'repair or recreate /boot (its UUID is in the VG tag zshield_boot_uuid=), or use "Recover to factory default"; nothing was changed',
        });
      }
    },
  };
}
