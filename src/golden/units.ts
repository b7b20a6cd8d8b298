import { existsSync } from 'node:fs';
import type { CommandStep as Step } from '../plan/plan.js';
import { mutating as cmd } from '../system/root-copy.js';

/** Where the Debian package (build/package.sh) puts the units; /usr/lib where /lib is merged. */
const PACKAGE_UNIT_DIRS = ['/lib/systemd/system', '/usr/lib/systemd/system'];

/**
 * Is zshield installed from its package in this root (its boot unit in a package unit folder)?
 * Then the units are the package's: a copy in /etc/systemd/system would shadow them on every
 * upgrade. The factory reset copies the golden root, package included, and runs no dpkg.
 */
export function packageInstalled(root = '/'): boolean {
  return PACKAGE_UNIT_DIRS.some((d) => existsSync(`${root === '/' ? '' : root}${d}/zshield-boot.service`));
}

/**
 * Install zshield-boot.service (and zshield.service, when given) into a root's /etc/systemd/system
 * and enable them there as `systemctl enable` would on the running system (`--root`: offline, from
 * the units' [Install] sections). Shared by golden prepare and the factory reset. Where the package
 * is installed (`packaged`), no unit file is written: the package's are only enabled.
 */
export function systemdUnitSteps(
  root: string,
  units: { boot: string; daemon?: string | undefined; packaged?: boolean | undefined },
): Step[] {
  const dir = `${root}/etc/systemd/system`;
  const named: [string, string][] = [['zshield-boot.service', units.boot]];
  if (units.daemon !== undefined) named.push(['zshield.service', units.daemon]);
  const enable: Step = {
    title: `enable ${named.map(([n]) => n).join(' and ')}${units.packaged ? " (the package's units)" : ''}`,
    command: cmd('systemctl', ['--root', root, 'enable', ...named.map(([n]) => n)]),
  };
  if (units.packaged) return [enable];
  return [
    { title: 'make the systemd unit folder', command: cmd('mkdir', ['-p', dir]) },
    ...named.map(([name, text]) => ({
      title: `install ${name}`,
      command: cmd('tee', [`${dir}/${name}`], { input: text }),
    })),
    enable,
  ];
}

/**
 * Where programs write at run time on the read-only golden root: LVM archives and backs up the
 * metadata of every change (lvcreate fails with status 5 when /etc/lvm/archive cannot be
 * written), temporary files, zshield's state. A tmpfs on each, from the medium's fstab. Under
 * rc.local the bench's rcS mounts its own; under systemd nothing else would. The factory reset
 * drops these lines from the copied fstab: on the system disk they would lose LVM's metadata
 * backups and zshield's state at every boot.
 */
export const RUNTIME_TMPFS: [string, string][] = [
  ['/etc/lvm/archive', 'mode=0700'],
  ['/etc/lvm/backup', 'mode=0700'],
  ['/tmp', 'mode=1777,nosuid,nodev'],
  ['/var/tmp', 'mode=1777,nosuid,nodev'],
  ['/var/lib/zshield', 'mode=0700'],
];

/** The golden medium's fstab lines for RUNTIME_TMPFS. */
export function runtimeTmpfsLines(): string[] {
  return RUNTIME_TMPFS.map(([dir, opts]) => `tmpfs\t${dir}\ttmpfs\t${opts}\t0\t0`);
}

/** Is this fstab line one of runtimeTmpfsLines() (an operator's own tmpfs line differs, and is kept)? */
export function isRuntimeTmpfsLine(line: string): boolean {
  const [spec, dir, type, opts] = line.trim().split(/\s+/);
  return spec === 'tmpfs' && type === 'tmpfs' && RUNTIME_TMPFS.some(([d, o]) => d === dir && o === opts);
}
