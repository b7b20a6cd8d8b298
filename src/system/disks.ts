import { readFileSync, readdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import type si from 'systeminformation';
import { InternalError, MissingToolError } from '../errors.js';
import { deviceOf } from './mounts.js';
import type { Runner } from './runner.js';

/** A whole disk as zshield sees it: identified by what it is, never by its (unstable) name. */
export interface Disk {
  /** Kernel name today (sda, vdb): for commands only, never for identity. */
  name: string;
  path: string;
  sizeBytes: number;
  serial: string;
  wwn: string;
  model: string;
  removable: boolean;
  readOnly: boolean;
  /** Partitions and what they hold. */
  partitions: { name: string; path: string; fsType: string; mount: string; label: string }[];
  /** Any partition (or the disk) mounted, or holding a PV of an active VG. */
  mounted: string[];
}

export interface DiskProbe {
  disks: Disk[];
  /** Names of the disks the running root file system lives on (through partitions, dm, LVM). */
  bootDisks: string[];
}

/** What systeminformation runs for blockDevices() on Linux (its own exec; read-only). */
const SI_LSBLK = [
  'lsblk',
  '-bPo',
  'NAME,TYPE,SIZE,FSTYPE,MOUNTPOINT,UUID,ROTA,RO,RM,TRAN,SERIAL,LABEL,MODEL,OWNER',
];

type SiDevice = Awaited<ReturnType<typeof si.blockDevices>>[number];

/**
 * Enumerate disks with systeminformation (it runs lsblk). An empty answer means lsblk is missing
 * or failed, not that the machine has no disks: treat it as an error. Serial and WWN are completed
 * from sysfs, where virtio and some RAID controllers put them when no udev database exists.
 */
export async function probeDisks(runner: Pick<Runner, 'noteExternal'>, sysRoot = '/sys'): Promise<DiskProbe> {
  runner.noteExternal(SI_LSBLK, 'systeminformation.blockDevices');
  // Loaded when a command probes disks, not at every start (its 18,000 lines cost every command).
  const { default: systemInformation } = await import('systeminformation');
  const devices = await systemInformation.blockDevices();
  if (!devices || devices.length === 0) {
    throw new MissingToolError('lsblk', {
      hint: 'the disk probe returned nothing: install util-linux (lsblk)',
    });
  }
  return { disks: disksFromDevices(devices, sysRoot), bootDisks: runningRootDisks(sysRoot) };
}

export function disksFromDevices(devices: SiDevice[], sysRoot = '/sys'): Disk[] {
  const disks = devices.filter((d) => d.type === 'disk' && !/^(loop|ram|zram|sr|fd)/.test(d.name));
  return disks.map((d) => {
    const parts = devices.filter((p) => p.type === 'part' && p.name.startsWith(d.name) && p.name !== d.name);
    const sys = path.join(sysRoot, 'block', d.name);
    const serial = (
      d.serial ||
      readSys(path.join(sys, 'serial')) ||
      readSys(path.join(sys, 'device/serial'))
    ).trim();
    const wwn = readSys(path.join(sys, 'device/wwid')) || readSys(path.join(sys, 'wwid'));
    const holders = holdersOf(
      sys,
      parts.map((p) => p.name),
      sysRoot,
    );
    const mounted = [
      ...[d, ...parts].filter((x) => x.mount).map((x) => `${x.name} on ${x.mount}`),
      ...holders.map((h) => `${h} (device-mapper)`),
    ];
    return {
      name: d.name,
      path: `/dev/${d.name}`,
      sizeBytes: Number(d.size),
      serial,
      wwn: wwn.trim(),
      model: (d.model ?? '').trim(),
      removable: !!d.removable,
      readOnly: readSys(path.join(sys, 'ro')) === '1',
      partitions: parts.map((p) => ({
        name: p.name,
        path: `/dev/${p.name}`,
        fsType: p.fsType ?? '',
        mount: p.mount ?? '',
        label: p.label ?? '',
      })),
      mounted,
    };
  });
}

/** Device-mapper devices (active LVs) built on the disk or its partitions: the disk is in use. */
function holdersOf(sysDisk: string, partNames: string[], sysRoot: string): string[] {
  const dirs = [path.join(sysDisk, 'holders'), ...partNames.map((p) => path.join(sysDisk, p, 'holders'))];
  const out: string[] = [];
  for (const dir of dirs) {
    for (const h of listDir(dir)) {
      out.push(readSys(path.join(sysRoot, 'block', h, 'dm/name')) || h);
    }
  }
  return out;
}

/**
 * The disks under the running root: from the root's device number through sysfs, following
 * partitions to their disk and device-mapper devices (LVM) to their slaves. Empty when the root is
 * not on a block device (an initramfs or tmpfs root).
 */
export function runningRootDisks(sysRoot = '/sys', rootPath = '/'): string[] {
  const dev = deviceOf(rootPath);
  if (!dev || dev.major === 0) return [];
  let start: string;
  try {
    start = realpathSync(path.join(sysRoot, 'dev/block', `${dev.major}:${dev.minor}`));
  } catch {
    return [];
  }
  const disks = new Set<string>();
  const visit = (sysPath: string, depth: number) => {
    if (depth > 8) throw new InternalError(`device stack too deep at ${sysPath}`);
    const slaves = listDir(path.join(sysPath, 'slaves'));
    if (slaves.length) {
      for (const s of slaves) visit(realpathSync(path.join(sysPath, 'slaves', s)), depth + 1);
      return;
    }
    // A partition's sysfs folder sits inside its disk's folder and has a `partition` file.
    const isPart = readSys(path.join(sysPath, 'partition')) !== '';
    disks.add(path.basename(isPart ? path.dirname(sysPath) : sysPath));
  };
  visit(start, 0);
  return [...disks];
}

function readSys(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
