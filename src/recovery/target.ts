import type { Config } from '../config/schema.js';
import { formatBytes, resolveSize } from '../config/size.js';
import { NotFoundError, RefusedError } from '../errors.js';
import type { Disk, DiskProbe } from '../system/disks.js';
import { describeDisk } from '../golden/index.js';

export interface TargetChoice {
  disk: Disk;
  /** How it was chosen, for the plan. */
  why: string;
}

const describe = describeDisk;

/**
 * Pick the system disk to (re)build. By identity from the config (serial or WWN) or, when none is
 * configured, the one eligible disk found by probing. Never the disk the running system booted
 * from, never the golden medium, never a disk in use; refused when ambiguous or too small.
 * `override` is a serial or WWN given on the command line.
 */
export function chooseTarget(probe: DiskProbe, config: Config, override?: string): TargetChoice {
  const sys = config.disks.system;
  const minBytes = resolveSize(sys.minSize, 0);
  const wanted = override ?? sys.serial ?? sys.wwn;
  const isBoot = (d: Disk) => probe.bootDisks.includes(d.name);
  const isGolden = (d: Disk) => !!config.disks.golden.serial && d.serial === config.disks.golden.serial;

  let disk: Disk;
  let why: string;
  if (wanted) {
    const matches = probe.disks.filter((d) => d.serial === wanted || (d.wwn !== '' && d.wwn === wanted));
    if (matches.length === 0) {
      throw new NotFoundError(`no disk with serial or WWN "${wanted}"`, {
        hint: `disks seen: ${probe.disks.map(describe).join('; ') || 'none'}`,
      });
    }
    if (matches.length > 1) {
      throw new RefusedError(`more than one disk matches "${wanted}": ${matches.map(describe).join(', ')}`);
    }
    disk = matches[0]!;
    why = `named by ${override ? 'the command line' : 'the config'} (${wanted})`;
    if (isBoot(disk)) {
      throw new RefusedError(
        `${describe(disk)} is the disk the running system booted from; it is never a target`,
      );
    }
    if (isGolden(disk))
      throw new RefusedError(`${describe(disk)} is the golden medium; it is never a target`);
  } else {
    const candidates = probe.disks.filter((d) => !isBoot(d) && !isGolden(d) && !d.removable && !d.readOnly);
    const bigEnough = candidates.filter((d) => d.sizeBytes >= minBytes);
    if (bigEnough.length === 0) {
      const small = candidates.length ? `; too small: ${candidates.map(describe).join(', ')}` : '';
      throw new RefusedError(
        `no eligible system disk found (at least ${formatBytes(minBytes)}, not the boot disk${small})`,
        {
          hint: 'connect the system disk, or name it with disks.system.serial in the config',
        },
      );
    }
    if (bigEnough.length > 1) {
      throw new RefusedError(`two or more candidate system disks: ${bigEnough.map(describe).join(', ')}`, {
        hint: 'name the system disk with disks.system.serial (or --target SERIAL); nothing was written',
      });
    }
    disk = bigEnough[0]!;
    why = 'the only eligible disk found';
  }
  if (disk.sizeBytes < minBytes) {
    throw new RefusedError(`${describe(disk)} is too small: at least ${formatBytes(minBytes)} is needed`);
  }
  if (disk.readOnly) throw new RefusedError(`${describe(disk)} is read-only`);
  return { disk, why };
}

export { describeDisk };
