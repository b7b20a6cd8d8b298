import type { Config } from '../config/schema.js';
import { isRuntimeTmpfsLine, systemdUnitSteps } from '../golden/index.js';
import type { CommandStep as Step } from '../plan/plan.js';
import { progressParsers } from '../plan/progress.js';
import {
  lvCreateArgv,
  pvCreateArgv,
  snapshotArgv,
  vgCreateArgv,
  vgDeactivateArgv,
  vgTagsArgv,
} from '../system/lvm.js';
import { TAG_REASON, TAG_TIME } from '../names/lvm-tags.js';
import type { Command } from '../system/command.js';
import { freshDiskSteps, mkfsExt4Argv } from '../system/disk-commands.js';
import { bindMountArgv, mountArgv, umountArgv } from '../system/mount-commands.js';
import { SYSTEM_MOUNT_POINTS, mutating } from '../system/root-copy.js';
import { BOOT_LABEL, BOOT_UUID_TAG } from './boot-fs.js';
import { FACTORY_TAG, TAG_BOOT } from '../names/lvm-tags.js';

import type { FactoryInput, RootFill, Target } from './factory-input.js';

/** The steps of a factory reset, stage by stage, made from its chosen and checked Target (factory.ts). */

// /boot is copied on its own (it may be a separate file system on the golden medium).
const SYSTEM_EXCLUDES = [...SYSTEM_MOUNT_POINTS, '/boot'];

const cmd = mutating;
const step = (title: string, command: Command): Step => ({ title, command });

/** 0. Leftovers of an interrupted run in this boot, and old volume groups on the target. */
export function cleanupSteps(t: Target): Step[] {
  const { disk, vgsOnTarget } = t;
  return [
    ...[...disk.partitions]
      .filter((x) => x.mount)
      .sort((a, b) => b.mount.length - a.mount.length)
      .map((p) => step(`unmount ${p.mount} (left by an interrupted run)`, cmd(...umountArgv(p.mount)))),
    ...vgsOnTarget.map((old) =>
      step(`deactivate the old volume group ${old}`, cmd(...vgDeactivateArgv(old))),
    ),
    ...freshDisk(t).wipe,
  ];
}

/**
 * The target erased and given its new table: a DOS label; the first partition at sector 2048
 * leaves room for GRUB's core image. The wipes are stage 0, the partitioning starts stage 1.
 */
function freshDisk(t: Target) {
  return freshDiskSteps(
    t.disk,
    `label: dos\nstart=2048, size=${t.bootSectors}, type=83, bootable\nstart=${2048 + t.bootSectors}, type=8e\n`,
  );
}

/** 1-3. Partitions, LVM, file systems. */
export function buildSteps(t: Target): Step[] {
  const { vg, config, input } = t;
  return [
    freshDisk(t).partition,
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
      cmd(...mkfsExt4Argv(t.bootPart, { force: true, uuid: input.bootUuid, label: BOOT_LABEL })),
    ),
    ...config.layout.volumes.map((v) =>
      step(
        `make the ${v.fs} file system on ${v.name}`,
        cmd(...mkfsExt4Argv(`/dev/${vg}/${v.name}`, { force: true, label: v.name.slice(0, 16) })),
      ),
    ),
  ];
}

/** 4. Copy the golden root and its /boot (or fill the root from elsewhere, with the /boot it captured). */
export function copySteps({ mnt, rootVol, rootDev, bootPart, config, input }: Target): Step[] {
  const excludes = [...SYSTEM_EXCLUDES, ...config.recovery.exclude].map(
    (e) => `--exclude=${e.replace(/\/+$/, '')}/*`,
  );
  const mountDirs = config.layout.volumes
    .filter((v) => v.mount && v.mount !== '/')
    .map((v) => `${mnt}${v.mount}`);
  return [
    step(`make the mount point ${mnt}`, cmd('mkdir', ['-p', mnt])),
    step(`mount ${rootVol.name}`, cmd(...mountArgv(rootDev, mnt, { type: 'ext4' }))),
    step('make /boot in the new root', cmd('mkdir', ['-p', `${mnt}/boot`])),
    step('mount the new /boot', cmd(...mountArgv(bootPart, `${mnt}/boot`, { type: 'ext4' }))),
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
export function configureSteps({ mnt, golden, input, rootDev }: Target): Step[] {
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
export function bootloaderSteps({ mnt, golden, disk, config, rootVol }: Target): Step[] {
  const steps = ['proc', 'sys', 'dev'].map((d) =>
    step(`bind /${d} into the new root`, cmd(...bindMountArgv(`/${d}`, `${mnt}/${d}`))),
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
    ...['dev', 'sys', 'proc', 'boot'].map((d) =>
      step(`unmount ${mnt}/${d}`, cmd(...umountArgv(`${mnt}/${d}`))),
    ),
    step(`unmount ${rootVol.name}`, cmd(...umountArgv(mnt))),
  );
  return steps;
}

/** 8. The first restore point, then clear the mark. */
export function firstSnapshotSteps({ config, input, vg, rootVol }: Target): Step[] {
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
