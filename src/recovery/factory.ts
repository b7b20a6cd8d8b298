import path from 'node:path';
import { formatBytes, resolveSize } from '../config/size.js';
import { RefusedError } from '../errors.js';
import { roomCheck } from '../golden/index.js';
import type { Disk, DiskProbe } from '../system/disks.js';
import { partitionPath } from '../system/partitions.js';
import type { PvInfo } from '../system/pvs.js';
import { mountPointCheck } from './checks.js';
import { chooseTarget, describeDisk } from './target.js';

import type { FactoryInput, FactoryPlan, RootFill, Target } from './factory-input.js';
import {
  bootloaderSteps,
  buildSteps,
  cleanupSteps,
  configureSteps,
  copySteps,
  firstSnapshotSteps,
} from './factory-steps.js';

const MiB = 1024 * 1024;

/**
 * Plan a factory reset of the system disk: a pure function of the probe. The target is wiped,
 * partitioned (1 MiB gap for GRUB's core image, /boot, one LVM partition), the VG and LVs made,
 * the golden root copied into lv-root, fstab and GRUB set up for root on LVM, and the first snap0
 * taken. Every step starts from scratch, so a run cut short by a power failure is simply run again.
 */
export function planFactoryReset(input: FactoryInput): FactoryPlan {
  const t = chooseAndCheck(input);
  const steps = [
    ...cleanupSteps(t),
    ...buildSteps(t),
    ...copySteps(t),
    ...configureSteps(t),
    ...bootloaderSteps(t),
    ...firstSnapshotSteps(t),
  ];
  const { config, golden, disk, rootVol } = t;
  const notes = [
    `target: ${describeDisk(disk)}, ${t.why}`,
    `EVERYTHING on ${disk.path} is erased: ${disk.partitions.length ? disk.partitions.map((p) => `${p.path}${p.fsType ? ` (${p.fsType})` : ''}`).join(', ') : 'no partitions found'}`,
    `partitions: ${t.bootPart} /boot ext4 ${formatBytes(t.bootSectors * 512)}; ${t.lvmPart} LVM, the rest`,
    `volume group ${t.vg}: ${config.layout.volumes.map((v) => `${v.name} ${v.size.kind === 'percent' ? `${v.size.percent}% of the VG` : formatBytes(v.size.bytes)}${v.mount ? ` on ${v.mount}` : ''}`).join(', ')}`,
    `then: ${input.root ? input.root.what : 'the golden root'} is copied into ${config.lvm.rootLv}, GRUB installed on ${disk.path}, and the first ${config.lvm.snapshot} taken`,
  ];
  if (!golden.initramfsTool) {
    notes.push('no initramfs tool in the golden root: its initramfs is used as is (it must activate LVM)');
  }
  const rootBytes =
    rootVol.size.kind === 'percent' ? (t.lvmBytes * rootVol.size.percent) / 100 : rootVol.size.bytes;
  const checks = [
    mountPointCheck(config.paths.runDir),
    roomCheck(
      `the new ${rootVol.name} (${formatBytes(rootBytes)})`,
      input.root?.bytes ?? golden.rootUsedBytes,
      rootBytes,
    ),
    roomCheck(
      `the new /boot (${formatBytes(t.bootSectors * 512)})`,
      golden.bootUsedBytes,
      t.bootSectors * 512,
    ),
  ];
  const title = input.root
    ? `Restore of ${disk.path} from ${input.root.what}`
    : `Factory reset of ${disk.path}`;
  return { title, notes, checks, steps, bootDevice: t.bootPart };
}

/** `/dev/vdc1 (VG uuid ..., disk /dev/vdc (1.0 GiB, serial X))`: the other VG's PV, for the refusal. */
function pvWhere(probe: DiskProbe, p: PvInfo): string {
  const d = probe.disks.find((x) => x.path === p.pvName || x.partitions.some((q) => q.path === p.pvName));
  const facts = [p.vgUuid && `VG uuid ${p.vgUuid}`, d && `disk ${describeDisk(d)}`].filter(Boolean);
  return `${p.pvName}${facts.length ? ` (${facts.join(', ')})` : ''}`;
}

/**
 * A restore onto a replacement disk erases only a blank disk, or one the operator named, or one
 * holding only a restore of its own kind cut short: its PVs are the VG's, which still carries the
 * restore's mark (its other partition is the /boot that restore made).
 */
function refuseUnnamedNonBlank(
  input: FactoryInput,
  root: RootFill,
  disk: Disk,
  partNames: Set<string>,
): void {
  const { config } = input;
  const named = !!(input.targetOverride ?? config.disks.system.serial ?? config.disks.system.wwn);
  const pvsHere = input.pvs.filter((p) => partNames.has(p.pvName));
  const itsOwn =
    pvsHere.length > 0 && pvsHere.every((p) => p.vgName === config.lvm.vg && p.vgTags?.includes(root.mark));
  if (named || itsOwn || !disk.partitions.length) return;
  throw new RefusedError(`${describeDisk(disk)} is not blank and was not named as the target`, {
    hint: 'name it (--target SERIAL, or disks.system.serial) if it is to be erased; nothing was written',
  });
}

/** Choose the target and refuse what must never be erased or cannot work, before any step exists. */
function chooseAndCheck(input: FactoryInput): Target {
  const { config, golden } = input;
  const { disk, why } = chooseTarget(input.disks, config, input.targetOverride);
  const vg = config.lvm.vg;
  const partNames = new Set([disk.path, ...disk.partitions.map((p) => p.path)]);
  if (input.root) refuseUnnamedNonBlank(input, input.root, disk, partNames);
  const mnt = path.join(config.paths.runDir, 'target');
  if (!golden.grubInstall || !golden.grubMkconfig) {
    throw new RefusedError(
      'the golden root has no grub-install/grub-mkconfig (nor grub2-*): the new disk could not boot',
    );
  }
  // The same VG name on another disk would make /dev/vgroup ambiguous: refuse rather than guess.
  // input.pvs must be every PV (unscoped): the scoped runner would hide exactly this VG.
  const elsewhere = input.pvs.filter((p) => p.vgName === vg && !partNames.has(p.pvName));
  if (elsewhere.length) {
    const where = elsewhere.map((p) => pvWhere(input.disks, p)).join(', ');
    throw new RefusedError(
      `a volume group named ${vg} already exists on ${where}, not on the target: two VGs of that name would collide at boot`,
      { hint: `detach that disk, or rename its VG (vgrename <its uuid> <new name>); nothing was written` },
    );
  }
  const foreignMounts = disk.partitions.filter((p) => p.mount && !p.mount.startsWith(mnt));
  if (foreignMounts.length) {
    throw new RefusedError(
      `${describeDisk(disk)} is in use: ${foreignMounts.map((p) => `${p.path} on ${p.mount}`).join(', ')}`,
    );
  }
  const vgsOnTarget = [
    ...new Set(input.pvs.filter((p) => partNames.has(p.pvName) && p.vgName).map((p) => p.vgName)),
  ];
  for (const other of vgsOnTarget) {
    const spans = input.pvs.filter((p) => p.vgName === other && !partNames.has(p.pvName));
    if (spans.length) {
      throw new RefusedError(
        `volume group ${other} spans the target and ${spans.map((p) => p.pvName).join(', ')}`,
      );
    }
  }
  const bootBytes = resolveSize(config.layout.bootSize, 0);
  const bootSectors = Math.ceil(bootBytes / MiB) * 2048;
  const absolute = config.layout.volumes.reduce(
    (n, v) => n + (v.size.kind === 'bytes' ? Math.ceil(v.size.bytes / (4 * MiB)) * 4 * MiB : 0),
    0,
  );
  const lvmBytes = disk.sizeBytes - MiB - bootSectors * 512;
  if (absolute > lvmBytes * 0.95 || lvmBytes < 64 * MiB) {
    throw new RefusedError(
      `${describeDisk(disk)} is too small for the layout: /boot ${formatBytes(bootBytes)} and ${formatBytes(absolute)} of fixed-size volumes`,
    );
  }
  const rootVol = config.layout.volumes.find((v) => v.name === config.lvm.rootLv)!;
  return {
    input,
    config,
    golden,
    disk,
    why,
    vg,
    mnt,
    bootPart: partitionPath(disk.path, 1),
    lvmPart: partitionPath(disk.path, 2),
    rootVol,
    rootDev: `/dev/${vg}/${rootVol.name}`,
    bootSectors,
    lvmBytes,
    vgsOnTarget,
  };
}
