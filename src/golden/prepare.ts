import path from 'node:path';
import type { Config } from '../config/schema.js';
import { NotFoundError, RefusedError, UsageError } from '../errors.js';
import type { CommandStep, Plan, CommandStep as Step } from '../plan/plan.js';
import { progressParsers } from '../plan/progress.js';
import type { Disk, DiskProbe } from '../system/disks.js';
import { partitionPath } from '../system/partitions.js';
import type { Command } from '../system/command.js';
import { freshDiskSteps, mkfsExt4Argv } from '../system/disk-commands.js';
import { bindMountArgv, mountArgv, umountArgv } from '../system/mount-commands.js';
import { SYSTEM_MOUNT_POINTS, mutating } from '../system/root-copy.js';
import { type PrototypeFacts, describeDisk, roomCheck, unmountIfMounted } from './probe.js';
import { RUNTIME_TMPFS, isRuntimeTmpfsLine, runtimeTmpfsLines, systemdUnitSteps } from './units.js';

export interface GoldenInput {
  config: Config;
  disks: DiskProbe;
  facts: PrototypeFacts;
  /** Serial or WWN of the medium from the command line (else disks.golden.serial). */
  target?: string;
  uuid: string;
  now: Date;
  /** daemonUnit: zshield.service, installed and enabled beside the boot unit where systemd is the init. */
  assets: { grubScript: string; bootUnit: string; rcLocalLine: string; daemonUnit?: string };
  /** `--package FILE`: zshield's Debian package, installed into the prototype (dpkg -i) first. */
  packageFile?: string;
}

/** zshield comes from its package on the medium: the package's grub.d script and units are used. */
const packaged = (input: GoldenInput) => input.packageFile !== undefined || input.facts.packaged === true;

const SYSTEM_EXCLUDES = SYSTEM_MOUNT_POINTS;

const cmd = mutating;

/**
 * Make a golden medium from the prototype system, as the seed's "Prototype system creation" does
 * by hand: one partition holding the root and /boot, mounted read-only at boot, GRUB on the
 * medium, the zshield recovery entries (grub.d script) and the boot hook. The medium is named
 * explicitly (never guessed): it is erased.
 */
export function planGoldenMedium(input: GoldenInput): Plan<CommandStep> {
  const { config, facts } = input;
  const disk = chooseMedium(input);
  const part = partitionPath(disk.path, 1);
  const mnt = path.join(config.paths.runDir, 'golden');
  const steps: Step[] = [
    // Into the running prototype, before its root is copied: the medium carries the package.
    ...(input.packageFile
      ? [
          {
            title: 'install the zshield package into the prototype',
            command: cmd('dpkg', ['-i', input.packageFile]),
          },
        ]
      : []),
    ...writeSteps(input, disk, mnt),
    ...hookSteps(input, mnt),
  ];
  const add = (title: string, command: Command) => steps.push({ title, command });
  for (const d of ['proc', 'sys', 'dev']) add(`bind /${d}`, cmd(...bindMountArgv(`/${d}`, `${mnt}/${d}`)));
  add(
    `install GRUB on ${disk.path}`,
    cmd('chroot', [mnt, facts.grubInstall!, '--target=i386-pc', disk.path]),
  );
  add('write the GRUB menu', cmd('chroot', [mnt, facts.grubMkconfig!, '-o', facts.grubCfg]));
  for (const d of ['dev', 'sys', 'proc']) add(`unmount ${mnt}/${d}`, cmd(...umountArgv(`${mnt}/${d}`)));
  add('unmount the golden file system', cmd(...umountArgv(mnt)));
  add('flush to disk', cmd('sync', []));
  return {
    title: `Golden medium on ${disk.path}`,
    notes: [
      `medium: ${describeDisk(disk)}; EVERYTHING on it is erased`,
      `one partition ${part} (ext4, UUID ${input.uuid}) holding the root and /boot, mounted read-only`,
      `recovery entries boot ${facts.kernel ?? '(no kernel found)'} with zshield_recovery=default|latest`,
      `boot hook: ${facts.init === 'systemd' ? 'zshield-boot.service' : facts.rcLocalPath}`,
    ],
    // The copy fails half-way on a medium too small for the prototype: know it before the wipe.
    checks: [roomCheck(`the medium ${disk.path}`, facts.usedBytes, disk.sizeBytes - 2048 * 512)],
    steps,
    // A failure must not leave the medium mounted: a second run would refuse it as in use.
    always: [...['dev', 'sys', 'proc'].map((d) => unmountIfMounted(`${mnt}/${d}`)), unmountIfMounted(mnt)],
  };
}

/** The medium named by serial or WWN, refused when it is the boot disk or in use, or GRUB is missing. */
function chooseMedium(input: GoldenInput): Disk {
  const { config, facts } = input;
  const wanted = input.target ?? config.disks.golden.serial;
  if (!wanted) {
    throw new UsageError('name the golden medium: --target SERIAL or disks.golden.serial in the config');
  }
  const matches = input.disks.disks.filter((d) => d.serial === wanted || (d.wwn !== '' && d.wwn === wanted));
  if (matches.length === 0) throw new NotFoundError(`no disk with serial or WWN "${wanted}"`);
  if (matches.length > 1) throw new RefusedError(`more than one disk matches "${wanted}"`);
  const disk = matches[0]!;
  if (input.disks.bootDisks.includes(disk.name)) {
    throw new RefusedError(
      `${describeDisk(disk)} is the disk the running system booted from; it is never a target`,
    );
  }
  const inUse = disk.partitions.filter((p) => p.mount);
  if (inUse.length || disk.mounted.length) {
    throw new RefusedError(
      `${describeDisk(disk)} is in use: ${[...inUse.map((p) => `${p.path} on ${p.mount}`), ...disk.mounted].join(', ')}`,
    );
  }
  if (!facts.grubInstall || !facts.grubMkconfig) {
    throw new RefusedError(
      'the prototype has no grub-install/grub-mkconfig (nor grub2-*): the medium could not boot',
    );
  }
  return disk;
}

/** Wipe, partition, make the file system, copy the prototype, write fstab and the GRUB settings. */
function writeSteps(input: GoldenInput, disk: Disk, mnt: string): Step[] {
  const { facts } = input;
  const part = partitionPath(disk.path, 1);
  const steps: Step[] = [];
  const add = (title: string, command: Command) => steps.push({ title, command });
  const fresh = freshDiskSteps(disk, 'label: dos\nstart=2048, type=83, bootable\n');
  steps.push(...fresh.wipe, fresh.partition);
  add(
    'make the golden file system',
    cmd(...mkfsExt4Argv(part, { force: true, uuid: input.uuid, label: 'zs-golden' })),
  );
  add(`make the mount point ${mnt}`, cmd('mkdir', ['-p', mnt]));
  add('mount the golden file system', cmd(...mountArgv(part, mnt, { type: 'ext4' })));
  steps.push({
    title: 'copy the prototype root',
    command: cmd(
      'rsync',
      [
        '-aHAXx',
        '--numeric-ids',
        '--delete',
        '--info=progress2',
        ...SYSTEM_EXCLUDES.map((e) => `--exclude=${e}/*`),
        '/',
        `${mnt}/`,
      ],
      { timeoutMs: 4 * 3600_000 },
    ),
    progress: progressParsers.rsync,
  });
  add(
    'copy the prototype /boot',
    cmd('rsync', ['-aHAX', '--numeric-ids', '--exclude=/lost+found', '/boot/', `${mnt}/boot/`]),
  );
  add('make the system mount points', cmd('mkdir', ['-p', ...SYSTEM_EXCLUDES.map((d) => `${mnt}${d}`)]));
  if (input.facts.init === 'systemd') {
    add(
      'make the mount points of the run-time tmpfs',
      cmd('mkdir', ['-p', ...RUNTIME_TMPFS.map(([d]) => `${mnt}${d}`)]),
    );
  }
  add(
    'write /etc/fstab: the golden root is read-only',
    cmd('tee', [`${mnt}/etc/fstab`], { input: goldenFstab(input) }),
  );
  add(
    'write /etc/default/zshield-grub',
    cmd('tee', [`${mnt}/etc/default/zshield-grub`], {
      input: [
        `# written by zshield golden prepare on ${input.now.toISOString()}`,
        `ZSHIELD_GOLDEN_UUID=${input.uuid}`,
        `ZSHIELD_GOLDEN_KERNEL=${facts.kernel ?? ''}`,
        `ZSHIELD_GOLDEN_INITRD=${facts.initrd ?? ''}`,
        '',
      ].join('\n'),
    }),
  );
  return steps;
}

/** The recovery menu entries (grub.d script) and the boot hook (systemd unit or rc.local). */
function hookSteps(input: GoldenInput, mnt: string): Step[] {
  const { facts } = input;
  const steps: Step[] = [];
  const add = (title: string, command: Command) => steps.push({ title, command });
  // The package's grub.d script is its conffile: a copy written over it would make every upgrade ask.
  if (!packaged(input)) {
    add('make /etc/grub.d', cmd('mkdir', ['-p', `${mnt}/etc/grub.d`]));
    add(
      'install the recovery menu entries (grub.d script)',
      cmd('tee', [`${mnt}/etc/grub.d/40_zshield`], { input: input.assets.grubScript }),
    );
    add('make the grub.d script executable', cmd('chmod', ['0755', `${mnt}/etc/grub.d/40_zshield`]));
  }
  if (facts.init === 'systemd') {
    steps.push(
      ...systemdUnitSteps(mnt, {
        boot: input.assets.bootUnit,
        daemon: input.assets.daemonUnit,
        packaged: packaged(input),
      }),
    );
  } else {
    const rc = `${mnt}${facts.rcLocalPath}`;
    add(
      'install the boot hook (rc.local)',
      cmd('tee', [rc], { input: rcLocalWith(facts.rcLocal, input.assets.rcLocalLine) }),
    );
    add('make rc.local executable', cmd('chmod', ['0755', rc]));
  }
  return steps;
}

function goldenFstab(input: GoldenInput): string {
  const kept = input.facts.fstab
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'))
    .filter((l) => !['/', '/boot'].includes(l.trim().split(/\s+/)[1] ?? ''));
  return `${[
    `# Written by zshield golden prepare on ${input.now.toISOString()}: the golden root is read-only.`,
    `UUID=${input.uuid}\t/\text4\tro,errors=remount-ro\t0\t1`,
    ...(input.facts.init === 'systemd' ? runtimeTmpfsLines() : []),
    ...kept.filter((l) => input.facts.init !== 'systemd' || !isRuntimeTmpfsLine(l)),
  ].join('\n')}\n`;
}

export function rcLocalWith(existing: string | null, line: string): string {
  const base = existing ?? '#!/bin/sh\n';
  if (base.includes('zshield boot')) return base;
  const lines = base.replace(/\n+$/, '').split('\n');
  // Before a final "exit 0", which Debian's template ends with.
  const exitAt = lines.findLastIndex((l) => /^\s*exit\s+0\s*$/.test(l));
  if (exitAt >= 0) lines.splice(exitAt, 0, ...line.trimEnd().split('\n'));
  else lines.push(...line.trimEnd().split('\n'));
  return `${lines.join('\n')}\n`;
}
