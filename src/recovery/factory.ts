import path from 'node:path';
import type { Config } from '../config/schema.js';
import { formatBytes, resolveSize } from '../config/size.js';
import { RefusedError } from '../errors.js';
import type { Plan, Step } from '../plan.js';
import { TAG_REASON, TAG_TIME } from '../system/lvm.js';
import type { DiskProbe } from '../system/disks.js';
import { partitionPath } from '../system/partitions.js';
import type { PvInfo } from '../system/pvs.js';
import type { Command } from '../system/runner.js';
import { SYSTEM_MOUNT_POINTS, mutating } from '../system/root-copy.js';
import { isRuntimeTmpfsLine, systemdUnitSteps } from '../system/units.js';
import { TAG_BOOT } from '../snapshot/rotation.js';
import { chooseTarget, describeDisk } from './target.js';

/** Set on the new VG from its creation to the end of the reset: a boot that finds it resumes the reset. */
export const FACTORY_TAG = 'zshield_factory_reset';

/** What the golden root (the running system, source of the copy) offers. */
export interface GoldenFacts {
  grubInstall: string | null;
  grubMkconfig: string | null;
  /** grub.cfg path inside the root: /boot/grub/grub.cfg (Debian) or /boot/grub2/grub.cfg (CentOS). */
  grubCfg: string;
  initramfsTool: 'update-initramfs' | 'dracut' | null;
  /** The golden root's /etc/fstab, whose foreign lines are kept. */
  fstab: string;
  /** The golden root's /etc/default/grub, or null. */
  defaultGrub: string | null;
  /** File system UUID of the golden root, for the system disk's recovery menu entries. */
  goldenUuid: string | null;
  /** Where systemd is the init: the units the new root gets installed and enabled (both). */
  systemdUnits?: { boot: string; daemon: string };
}

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
}

// /boot is copied on its own (it may be a separate file system on the golden medium).
const SYSTEM_EXCLUDES = [...SYSTEM_MOUNT_POINTS, '/boot'];

const cmd = mutating;

/**
 * Plan a factory reset of the system disk: a pure function of the probe. The target is wiped,
 * partitioned (1 MiB gap for GRUB's core image, /boot, one LVM partition), the VG and LVs made,
 * the golden root copied into lv-root, fstab and GRUB set up for root on LVM, and the first snap0
 * taken. Every step starts from scratch, so a run cut short by a power failure is simply run again.
 */
export function planFactoryReset(input: FactoryInput): Plan {
  const { config, golden } = input;
  const { disk, why } = chooseTarget(input.disks, config, input.targetOverride);
  const vg = config.lvm.vg;
  const mnt = path.join(config.paths.runDir, 'target');
  const bootPart = partitionPath(disk.path, 1);
  const lvmPart = partitionPath(disk.path, 2);

  if (!golden.grubInstall || !golden.grubMkconfig) {
    throw new RefusedError(
      'the golden root has no grub-install/grub-mkconfig (nor grub2-*): the new disk could not boot',
    );
  }
  // The same VG name on another disk would make /dev/vgroup ambiguous: refuse rather than guess.
  const partNames = new Set([disk.path, ...disk.partitions.map((p) => p.path)]);
  const elsewhere = input.pvs.filter((p) => p.vgName === vg && !partNames.has(p.pvName));
  if (elsewhere.length) {
    throw new RefusedError(
      `a volume group named ${vg} already exists on ${elsewhere.map((p) => p.pvName).join(', ')}, not on the target`,
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
  const MiB = 1024 * 1024;
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
  const steps: Step[] = [];
  const add = (title: string, command: Command) => steps.push({ title, command });
  const notes = [
    `target: ${describeDisk(disk)}, ${why}`,
    `EVERYTHING on ${disk.path} is erased: ${disk.partitions.length ? disk.partitions.map((p) => `${p.path}${p.fsType ? ` (${p.fsType})` : ''}`).join(', ') : 'no partitions found'}`,
    `partitions: ${bootPart} /boot ext4 ${formatBytes(bootSectors * 512)}; ${lvmPart} LVM, the rest`,
    `volume group ${vg}: ${config.layout.volumes.map((v) => `${v.name} ${v.size.kind === 'percent' ? `${v.size.percent}% of the VG` : formatBytes(v.size.bytes)}${v.mount ? ` on ${v.mount}` : ''}`).join(', ')}`,
    `then: the golden root is copied into ${config.lvm.rootLv}, GRUB installed on ${disk.path}, and the first ${config.lvm.snapshot} taken`,
  ];
  if (!golden.initramfsTool) {
    notes.push('no initramfs tool in the golden root: its initramfs is used as is (it must activate LVM)');
  }

  // 0. Leftovers of an interrupted run in this boot, and old volume groups on the target.
  for (const p of [...disk.partitions]
    .filter((x) => x.mount)
    .sort((a, b) => b.mount.length - a.mount.length)) {
    add(`unmount ${p.mount} (left by an interrupted run)`, cmd('umount', [p.mount]));
  }
  for (const old of vgsOnTarget) add(`deactivate the old volume group ${old}`, cmd('vgchange', ['-an', old]));
  for (const p of disk.partitions) add(`wipe signatures on ${p.path}`, cmd('wipefs', ['-a', '-q', p.path]));
  add(`wipe the partition table of ${disk.path}`, cmd('wipefs', ['-a', '-q', disk.path]));

  // 1. Partitions. DOS label; the first partition at sector 2048 leaves room for GRUB's core image.
  add(
    `partition ${disk.path}`,
    cmd('sfdisk', ['--wipe', 'always', '--wipe-partitions', 'always', '-q', disk.path], {
      input: `label: dos\nstart=2048, size=${bootSectors}, type=83, bootable\nstart=${2048 + bootSectors}, type=8e\n`,
    }),
  );
  // 2. LVM. The VG carries the factory-reset mark from its first moment.
  add(`make ${lvmPart} a physical volume`, cmd('pvcreate', ['-ff', '-y', lvmPart]));
  add(`create volume group ${vg}`, cmd('vgcreate', ['-y', '--addtag', FACTORY_TAG, vg, lvmPart]));
  for (const v of config.layout.volumes) {
    const size = v.size.kind === 'percent' ? ['-l', `${v.size.percent}%VG`] : ['-L', `${v.size.bytes}b`];
    add(`create ${v.name}`, cmd('lvcreate', ['-y', '-W', 'y', '-Z', 'y', '-n', v.name, ...size, vg]));
  }
  // 3. File systems. /boot gets a UUID chosen now, so fstab can name it.
  add(
    'make the /boot file system',
    cmd('mkfs.ext4', ['-q', '-F', '-U', input.bootUuid, '-L', 'zs-boot', bootPart]),
  );
  for (const v of config.layout.volumes) {
    add(
      `make the ${v.fs} file system on ${v.name}`,
      cmd('mkfs.ext4', ['-q', '-F', '-L', v.name.slice(0, 16), `/dev/${vg}/${v.name}`]),
    );
  }
  // 4. Copy the golden root.
  const rootDev = `/dev/${vg}/${rootVol.name}`;
  add(`make the mount point ${mnt}`, cmd('mkdir', ['-p', mnt]));
  add(`mount ${rootVol.name}`, cmd('mount', ['-t', 'ext4', rootDev, mnt]));
  add('make /boot in the new root', cmd('mkdir', ['-p', `${mnt}/boot`]));
  add('mount the new /boot', cmd('mount', ['-t', 'ext4', bootPart, `${mnt}/boot`]));
  const excludes = [...SYSTEM_EXCLUDES, ...config.recovery.exclude].flatMap((e) => [
    `--exclude=${e.replace(/\/+$/, '')}/*`,
  ]);
  add(
    'copy the golden root into the new root',
    cmd('rsync', ['-aHAXx', '--numeric-ids', '--delete', '--info=progress2', ...excludes, '/', `${mnt}/`], {
      timeoutMs: 4 * 3600_000,
    }),
  );
  add(
    'copy the golden /boot',
    cmd('rsync', ['-aHAX', '--numeric-ids', '--delete', '--exclude=/lost+found', '/boot/', `${mnt}/boot/`]),
  );
  const mountDirs = config.layout.volumes
    .filter((v) => v.mount && v.mount !== '/')
    .map((v) => `${mnt}${v.mount}`);
  add(
    'make the system mount points',
    cmd('mkdir', [
      '-p',
      ...SYSTEM_EXCLUDES.filter((d) => d !== '/boot').map((d) => `${mnt}${d}`),
      ...mountDirs,
    ]),
  );
  // 5. Configuration of the new root.
  add('write the new /etc/fstab', writeFile(`${mnt}/etc/fstab`, fstabFor(input, rootDev)));
  if (golden.defaultGrub !== null) {
    add(
      'set GRUB to name the root by its LV path',
      writeFile(`${mnt}/etc/default/grub`, defaultGrubFor(golden.defaultGrub)),
    );
  }
  if (golden.goldenUuid) {
    add(
      'point the recovery menu entries at the golden medium',
      writeFile(
        `${mnt}/etc/default/zshield-grub`,
        `# written by zshield factory reset\nZSHIELD_GOLDEN_UUID=${golden.goldenUuid}\n`,
      ),
    );
  }
  // The boot hook and the daemon, as this binary ships them, enabled in the new root.
  if (golden.systemdUnits) steps.push(...systemdUnitSteps(mnt, golden.systemdUnits));
  // 6. Boot loader, from inside the new root.
  for (const d of ['proc', 'sys', 'dev'])
    add(`bind /${d} into the new root`, cmd('mount', ['--bind', `/${d}`, `${mnt}/${d}`]));
  if (golden.initramfsTool === 'update-initramfs') {
    add(
      'regenerate the initramfs (root on LVM)',
      cmd('chroot', [mnt, 'update-initramfs', '-u', '-k', 'all']),
    );
  } else if (golden.initramfsTool === 'dracut') {
    add('regenerate the initramfs (root on LVM)', cmd('chroot', [mnt, 'dracut', '-f', '--regenerate-all']));
  }
  add(
    `install GRUB on ${disk.path}`,
    cmd('chroot', [mnt, golden.grubInstall, '--target=i386-pc', disk.path]),
  );
  add('write the GRUB menu', cmd('chroot', [mnt, golden.grubMkconfig, '-o', golden.grubCfg]));
  // 7. Keep this /boot inside lv-root, so a later restore can put it back.
  const capture = `${mnt}${config.paths.stateDir}/boot`;
  add('make the /boot capture folder', cmd('mkdir', ['-p', capture]));
  add(
    'capture /boot inside the new root',
    cmd('rsync', ['-a', '--delete', '--numeric-ids', `${mnt}/boot/`, `${capture}/`]),
  );
  for (const d of ['dev', 'sys', 'proc', 'boot']) add(`unmount ${mnt}/${d}`, cmd('umount', [`${mnt}/${d}`]));
  add(`unmount ${rootVol.name}`, cmd('umount', [mnt]));
  // 8. The first restore point, then clear the mark.
  const snapSize =
    config.snapshot.size.kind === 'percent'
      ? ['-l', `${config.snapshot.size.percent}%ORIGIN`]
      : ['-L', `${config.snapshot.size.bytes}b`];
  const tags = [
    `${TAG_REASON}factory`,
    `${TAG_TIME}${Math.floor(input.now.getTime() / 1000)}`,
    `${TAG_BOOT}captured`,
  ];
  add(
    `take the first ${config.lvm.snapshot}`,
    cmd('lvcreate', [
      '--snapshot',
      '-n',
      config.lvm.snapshot,
      ...snapSize,
      ...tags.flatMap((t) => ['--addtag', t]),
      `${vg}/${rootVol.name}`,
    ]),
  );
  add('clear the factory-reset mark', cmd('vgchange', ['--deltag', FACTORY_TAG, vg]));
  add('flush to disk', cmd('sync', []));
  return { title: `Factory reset of ${disk.path}`, notes, steps };
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
