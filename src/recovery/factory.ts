import path from 'node:path';
import type { Config } from '../config/schema.js';
import { formatBytes, resolveSize } from '../config/size.js';
import { RefusedError } from '../errors.js';
import { type GoldenFacts, isRuntimeTmpfsLine, roomCheck, systemdUnitSteps } from '../golden/index.js';
import type { CommandStep, Plan, CommandStep as Step } from '../plan/plan.js';
import { progressParsers } from '../plan/progress.js';
import {
  TAG_REASON,
  TAG_TIME,
  lvCreateArgv,
  pvCreateArgv,
  snapshotArgv,
  vgCreateArgv,
  vgDeactivateArgv,
  vgTagsArgv,
} from '../system/lvm.js';
import type { Disk, DiskProbe } from '../system/disks.js';
import { partitionPath } from '../system/partitions.js';
import type { PvInfo } from '../system/pvs.js';
import type { Command } from '../system/runner.js';
import { SYSTEM_MOUNT_POINTS, mutating } from '../system/root-copy.js';
import { BOOT_LABEL, BOOT_UUID_TAG } from './boot-fs.js';
import { mountPointCheck } from './checks.js';
import { chooseTarget, describeDisk } from './target.js';
import { FACTORY_TAG, TAG_BOOT } from '../names/lvm-tags.js';

export interface FactoryInput {
  config: Config;
  disks: DiskProbe;
  pvs: PvInfo[];
  golden: GoldenFacts;
  /** Fresh UUID for the new /boot file system (fstab names it before mkfs runs). */
  bootUuid: string;
  now: Date;
  /** Serial or WWN from the command line, overriding the config. */
  targetOverride?: string;
  /** The new root's files from elsewhere than the golden root (a disaster restore); see RootFill. */
  root?: RootFill;
}

/**
 * Another source for the new root than the golden root: the same layout, boot loader and first
 * snap0, but the root's files from, e.g., a fingerprint of the history (offbox.ts). Its
 * /boot is the one captured inside that root (<stateDir>/boot), so the kernel matches its modules.
 */
export interface RootFill {
  /** Where the files come from, for the plan ("fingerprint 3f... from target site"). */
  what: string;
  /** Commands that fill the new root mounted at `mnt` (with its new /boot mounted at mnt/boot). */
  steps: (mnt: string) => Step[];
  /** The VG's mark while the restore runs (instead of FACTORY_TAG: a cut restore is not resumed as a factory reset). */
  mark: string;
  /** Reason tag of the first snap0. */
  reason: string;
  /** What the files take (checked against the new root volume before anything is written). */
  bytes: number;
}

// /boot is copied on its own (it may be a separate file system on the golden medium).
const SYSTEM_EXCLUDES = [...SYSTEM_MOUNT_POINTS, '/boot'];

const cmd = mutating;

export interface FactoryPlan extends Plan<CommandStep> {
  /** The /boot partition this plan makes (the disk was just partitioned by it). */
  bootDevice: string;
}

/** What the steps of a factory reset are made from (chosen and checked first). */
interface Target {
  input: FactoryInput;
  config: Config;
  golden: GoldenFacts;
  disk: Disk;
  /** How the target was chosen, for the plan. */
  why: string;
  vg: string;
  /** Where the new root is mounted while it is filled. */
  mnt: string;
  bootPart: string;
  lvmPart: string;
  rootVol: Config['layout']['volumes'][number];
  rootDev: string;
  bootSectors: number;
  lvmBytes: number;
  /** Volume groups found on the target (deactivated before the wipe). */
  vgsOnTarget: string[];
}

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

const MiB = 1024 * 1024;
const step = (title: string, command: Command): Step => ({ title, command });

/** 0. Leftovers of an interrupted run in this boot, and old volume groups on the target. */
function cleanupSteps({ disk, vgsOnTarget }: Target): Step[] {
  return [
    ...[...disk.partitions]
      .filter((x) => x.mount)
      .sort((a, b) => b.mount.length - a.mount.length)
      .map((p) => step(`unmount ${p.mount} (left by an interrupted run)`, cmd('umount', [p.mount]))),
    ...vgsOnTarget.map((old) =>
      step(`deactivate the old volume group ${old}`, cmd(...vgDeactivateArgv(old))),
    ),
    ...disk.partitions.map((p) => step(`wipe signatures on ${p.path}`, cmd('wipefs', ['-a', '-q', p.path]))),
    step(`wipe the partition table of ${disk.path}`, cmd('wipefs', ['-a', '-q', disk.path])),
  ];
}

/** 1-3. Partitions, LVM, file systems. */
function buildSteps(t: Target): Step[] {
  const { disk, vg, config, input } = t;
  return [
    // DOS label; the first partition at sector 2048 leaves room for GRUB's core image.
    step(
      `partition ${disk.path}`,
      cmd('sfdisk', ['--wipe', 'always', '--wipe-partitions', 'always', '-q', disk.path], {
        input: `label: dos\nstart=2048, size=${t.bootSectors}, type=83, bootable\nstart=${2048 + t.bootSectors}, type=8e\n`,
      }),
    ),
    step(`make ${t.lvmPart} a physical volume`, cmd(...pvCreateArgv(t.lvmPart))),
    // The VG carries the factory-reset mark from its first moment, and the UUID of /boot (chosen
    // now), by which a restore finds /boot without guessing a partition number.
    step(
      `create volume group ${vg}`,
      cmd(
        ...vgCreateArgv(vg, t.lvmPart, [
          input.root?.mark ?? FACTORY_TAG,
          `${BOOT_UUID_TAG}${input.bootUuid}`,
        ]),
      ),
    ),
    ...config.layout.volumes.map((v) => step(`create ${v.name}`, cmd(...lvCreateArgv(vg, v.name, v.size)))),
    // /boot gets a UUID chosen now, so fstab (and the VG tag) can name it.
    step(
      'make the /boot file system',
      cmd('mkfs.ext4', ['-q', '-F', '-U', input.bootUuid, '-L', BOOT_LABEL, t.bootPart]),
    ),
    ...config.layout.volumes.map((v) =>
      step(
        `make the ${v.fs} file system on ${v.name}`,
        cmd('mkfs.ext4', ['-q', '-F', '-L', v.name.slice(0, 16), `/dev/${vg}/${v.name}`]),
      ),
    ),
  ];
}

/** 4. Copy the golden root and its /boot (or fill the root from elsewhere, with the /boot it captured). */
function copySteps({ mnt, rootVol, rootDev, bootPart, config, input }: Target): Step[] {
  const excludes = [...SYSTEM_EXCLUDES, ...config.recovery.exclude].map(
    (e) => `--exclude=${e.replace(/\/+$/, '')}/*`,
  );
  const mountDirs = config.layout.volumes
    .filter((v) => v.mount && v.mount !== '/')
    .map((v) => `${mnt}${v.mount}`);
  return [
    step(`make the mount point ${mnt}`, cmd('mkdir', ['-p', mnt])),
    step(`mount ${rootVol.name}`, cmd('mount', ['-t', 'ext4', rootDev, mnt])),
    step('make /boot in the new root', cmd('mkdir', ['-p', `${mnt}/boot`])),
    step('mount the new /boot', cmd('mount', ['-t', 'ext4', bootPart, `${mnt}/boot`])),
    ...(input.root ? fillSteps(input.root, mnt, config) : goldenCopySteps(mnt, excludes)),
    step(
      'make the system mount points',
      cmd('mkdir', [
        '-p',
        ...SYSTEM_EXCLUDES.filter((d) => d !== '/boot').map((d) => `${mnt}${d}`),
        ...mountDirs,
      ]),
    ),
  ];
}

function goldenCopySteps(mnt: string, excludes: string[]): Step[] {
  return [
    {
      title: 'copy the golden root into the new root',
      command: cmd(
        'rsync',
        ['-aHAXx', '--numeric-ids', '--delete', '--info=progress2', ...excludes, '/', `${mnt}/`],
        { timeoutMs: 4 * 3600_000 },
      ),
      progress: progressParsers.rsync,
    },
    step(
      'copy the golden /boot',
      cmd('rsync', ['-aHAX', '--numeric-ids', '--delete', '--exclude=/lost+found', '/boot/', `${mnt}/boot/`]),
    ),
  ];
}

function fillSteps(root: RootFill, mnt: string, config: Config): Step[] {
  const captured = `${mnt}${config.paths.stateDir}/boot/`;
  return [
    ...root.steps(mnt),
    step(
      'put back the /boot captured in that root',
      cmd('rsync', ['-aHAX', '--numeric-ids', '--delete', '--exclude=/lost+found', captured, `${mnt}/boot/`]),
    ),
  ];
}

/** 5. Configuration of the new root. */
function configureSteps({ mnt, golden, input, rootDev }: Target): Step[] {
  const steps = [step('write the new /etc/fstab', writeFile(`${mnt}/etc/fstab`, fstabFor(input, rootDev)))];
  if (golden.defaultGrub !== null) {
    steps.push(
      step(
        'set GRUB to name the root by its LV path',
        writeFile(`${mnt}/etc/default/grub`, defaultGrubFor(golden.defaultGrub)),
      ),
    );
  }
  if (golden.goldenUuid) {
    steps.push(
      step(
        'point the recovery menu entries at the golden medium',
        writeFile(
          `${mnt}/etc/default/zshield-grub`,
          `# written by zshield factory reset\nZSHIELD_GOLDEN_UUID=${golden.goldenUuid}\n`,
        ),
      ),
    );
  }
  // The boot hook and the daemon, as this binary ships them, enabled in the new root.
  if (golden.systemdUnits) steps.push(...systemdUnitSteps(mnt, golden.systemdUnits));
  return steps;
}

/** 6. Boot loader, from inside the new root; then /boot captured inside it and everything unmounted. */
function bootloaderSteps({ mnt, golden, disk, config, rootVol }: Target): Step[] {
  const steps = ['proc', 'sys', 'dev'].map((d) =>
    step(`bind /${d} into the new root`, cmd('mount', ['--bind', `/${d}`, `${mnt}/${d}`])),
  );
  if (golden.initramfsTool === 'update-initramfs') {
    steps.push(
      step(
        'regenerate the initramfs (root on LVM)',
        cmd('chroot', [mnt, 'update-initramfs', '-u', '-k', 'all']),
      ),
    );
  } else if (golden.initramfsTool === 'dracut') {
    steps.push(
      step(
        'regenerate the initramfs (root on LVM)',
        cmd('chroot', [mnt, 'dracut', '-f', '--regenerate-all']),
      ),
    );
  }
  // Keep this /boot inside lv-root, so a later restore can put it back.
  const capture = `${mnt}${config.paths.stateDir}/boot`;
  steps.push(
    step(
      `install GRUB on ${disk.path}`,
      cmd('chroot', [mnt, golden.grubInstall!, '--target=i386-pc', disk.path]),
    ),
    step('write the GRUB menu', cmd('chroot', [mnt, golden.grubMkconfig!, '-o', golden.grubCfg])),
    step('make the /boot capture folder', cmd('mkdir', ['-p', capture])),
    step(
      'capture /boot inside the new root',
      cmd('rsync', ['-a', '--delete', '--numeric-ids', `${mnt}/boot/`, `${capture}/`]),
    ),
    ...['dev', 'sys', 'proc', 'boot'].map((d) => step(`unmount ${mnt}/${d}`, cmd('umount', [`${mnt}/${d}`]))),
    step(`unmount ${rootVol.name}`, cmd('umount', [mnt])),
  );
  return steps;
}

/** 8. The first restore point, then clear the mark. */
function firstSnapshotSteps({ config, input, vg, rootVol }: Target): Step[] {
  const tags = [
    `${TAG_REASON}${input.root?.reason ?? 'factory'}`,
    `${TAG_TIME}${Math.floor(input.now.getTime() / 1000)}`,
    `${TAG_BOOT}captured`,
  ];
  return [
    step(
      `take the first ${config.lvm.snapshot}`,
      cmd(
        ...snapshotArgv({
          vg,
          origin: rootVol.name,
          name: config.lvm.snapshot,
          size: config.snapshot.size,
          tags,
        }),
      ),
    ),
    step(
      `clear the ${input.root ? 'restore' : 'factory-reset'} mark`,
      cmd(...vgTagsArgv(vg, { del: [input.root?.mark ?? FACTORY_TAG] })),
    ),
    step('flush to disk', cmd('sync', [])),
  ];
}

/** Write a file without a shell: tee reads the content from stdin. */
function writeFile(file: string, content: string): Command {
  return cmd('tee', [file], { input: content });
}

export function fstabFor(input: FactoryInput, rootDev: string): string {
  const { config } = input;
  const ours = new Set([
    '/',
    '/boot',
    ...config.layout.volumes.map((v) => v.mount).filter((m): m is string => !!m),
  ]);
  const kept = input.golden.fstab
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'))
    .filter((l) => !ours.has(l.trim().split(/\s+/)[1] ?? ''))
    .filter((l) => !isRuntimeTmpfsLine(l));
  const lines = [
    `# Written by zshield factory reset on ${input.now.toISOString()}.`,
    '# The root is mounted by its LV path, not by file system UUID: a snapshot carries the same UUID.',
    `${rootDev}\t/\text4\tdefaults\t0\t1`,
    `UUID=${input.bootUuid}\t/boot\text4\tdefaults\t0\t2`,
    ...config.layout.volumes
      .filter((v) => v.mount && v.mount !== '/')
      .map((v) => `/dev/${config.lvm.vg}/${v.name}\t${v.mount}\t${v.fs}\tdefaults\t0\t2`),
    ...kept,
  ];
  return `${lines.join('\n')}\n`;
}

/** GRUB_DISABLE_LINUX_UUID=true: the kernel gets root=/dev/mapper/<vg>-<lv>, never a UUID a snapshot shares. */
export function defaultGrubFor(text: string): string {
  const kept = text.split('\n').filter((l) => !/^\s*GRUB_DISABLE_LINUX_UUID=/.test(l));
  while (kept.length && kept.at(-1) === '') kept.pop();
  return `${[...kept, '# zshield: root by LV path (a snapshot has the same file system UUID)', 'GRUB_DISABLE_LINUX_UUID=true'].join('\n')}\n`;
}
