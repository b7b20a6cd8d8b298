import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { planGoldenMedium } from '../../src/golden/prepare.js';
import type { FactoryInput } from '../../src/recovery/factory-input.js';
import { planFactoryReset } from '../../src/recovery/factory.js';
import { isRuntimeTmpfsLine, runtimeTmpfsLines } from '../../src/golden/units.js';
import { disk, goldenFacts, prototypeFacts } from './helpers/disks.js';

// Where systemd is the init, golden prepare and the factory reset install and enable both units
// (the boot hook and the daemon). The units themselves are proven in the QEMU bench
// (test/appliance/systemd.test.ts); here: the plans, and the unit files' settings that matter.

const proto = disk('vda', 'ZS-PROTO', 2, { mounted: ['vda1 on /'] });
const medium = disk('vdb', 'ZS-GOLDEN-CF', 2);
const system = disk('vdc', 'ZS-SYSTEM-HDD', 8);
const units = { boot: '[Unit]\nDescription=boot\n', daemon: '[Unit]\nDescription=daemon\n' };
const argv = (s: { command: { file: string; args: readonly string[] } }) =>
  [s.command.file, ...s.command.args].join(' ');

describe('systemd units in the plans', () => {
  it('golden prepare installs both units on the medium and enables them with systemctl --root', () => {
    const plan = planGoldenMedium({
      config: defaultConfig(),
      disks: { disks: [proto, medium, system], bootDisks: ['vda'] },
      facts: prototypeFacts(),
      target: 'ZS-GOLDEN-CF',
      uuid: 'u-u-i-d',
      now: new Date(0),
      assets: {
        grubScript: '#! /bin/sh\n',
        bootUnit: units.boot,
        daemonUnit: units.daemon,
        rcLocalLine: 'x\n',
      },
    });
    const mnt = '/run/zshield/golden';
    const tee = (name: string) =>
      plan.steps.find(
        (s) => s.command.file === 'tee' && s.command.args[0] === `${mnt}/etc/systemd/system/${name}`,
      );
    expect(tee('zshield-boot.service')?.command.input).toBe(units.boot);
    expect(tee('zshield.service')?.command.input).toBe(units.daemon);
    const enable = plan.steps.findIndex((s) => s.command.file === 'systemctl');
    expect(argv(plan.steps[enable]!)).toBe(
      `systemctl --root ${mnt} enable zshield-boot.service zshield.service`,
    );
    // Before GRUB and the unmount: the units are in place when the medium is finished.
    expect(enable).toBeLessThan(plan.steps.findIndex((s) => s.title.startsWith('install GRUB')));
    expect(plan.steps.some((s) => s.command.args.some((a) => a.endsWith('rc.local')))).toBe(false);
    const fstab = plan.steps.find(
      (s) => s.command.file === 'tee' && s.command.args[0] === `${mnt}/etc/fstab`,
    );
    expect(String(fstab?.command.input)).toContain('tmpfs\t/etc/lvm/archive\ttmpfs\tmode=0700\t0\t0');
  });

  it('the factory reset installs and enables both units in the new root, only where systemd is the init', () => {
    const input: FactoryInput = {
      config: defaultConfig(),
      disks: { disks: [medium, system], bootDisks: ['vdb'] },
      pvs: [],
      golden: goldenFacts({
        initramfsTool: 'update-initramfs',
        systemdUnits: units,
        rootUsedBytes: null,
        bootUsedBytes: null,
      }),
      bootUuid: '0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e',
      now: new Date(0),
    };
    const plan = planFactoryReset(input);
    const mnt = '/run/zshield/target';
    const cmds = plan.steps.map(argv);
    const enable = cmds.indexOf(`systemctl --root ${mnt} enable zshield-boot.service zshield.service`);
    expect(enable).toBeGreaterThan(cmds.findIndex((c) => c.startsWith('rsync -aHAXx')));
    expect(enable).toBeLessThan(cmds.findIndex((c) => c.includes('update-initramfs')));
    expect(
      plan.steps.find((s) => s.command.args[0] === `${mnt}/etc/systemd/system/zshield.service`)?.command
        .input,
    ).toBe(units.daemon);
    const { systemdUnits: _, ...rcLocal } = input.golden;
    expect(
      planFactoryReset({ ...input, golden: rcLocal }).steps.some((s) => s.command.file === 'systemctl'),
    ).toBe(false);
  });
});

/** [Section] Key=value lines of a unit file; a key given twice keeps both values. */
function unit(file: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  let section = '';
  for (const line of fs.readFileSync(new URL(`../../rc/${file}`, import.meta.url), 'utf8').split('\n')) {
    const sec = /^\[(\w+)\]$/.exec(line);
    if (sec) section = sec[1]!;
    const kv = /^(\w+)=(.*)$/.exec(line);
    if (!kv) continue;
    const key = `${section}.${kv[1]}`;
    out[key] = [...(out[key] ?? []), kv[2]!];
  }
  return out;
}

describe('rc/ units', () => {
  const boot = unit('zshield-boot.service');
  const daemon = unit('zshield.service');

  it('zshield-boot: no --daemon, on the console, before the daemon and the gettys, after udev and LVM', () => {
    expect(boot['Service.ExecStart']).toEqual(['/usr/sbin/zshield boot']);
    expect(boot['Service.StandardInput']).toEqual(['tty-force']);
    expect(boot['Service.TTYPath']).toEqual(['/dev/console']);
    expect(boot['Service.StandardOutput']).toEqual(['journal+console']);
    expect(boot['Unit.Before']?.join(' ').split(' ')).toEqual(
      expect.arrayContaining(['getty-pre.target', 'zshield.service']),
    );
    expect(boot['Unit.After']?.join(' ').split(' ')).toEqual(
      expect.arrayContaining(['systemd-udev-settle.service', 'local-fs.target', 'lvm2-activation.service']),
    );
    expect(boot['Unit.Wants']?.join(' ').split(' ')).toContain('systemd-udev-settle.service');
  });

  it('zshield.service: after the boot hook, stop waits for a backup, reload is SIGHUP, skipped on a read-only root', () => {
    expect(daemon['Service.ExecStart']).toEqual(['/usr/sbin/zshield daemon']);
    expect(daemon['Service.ExecReload']).toEqual(['/bin/kill -HUP $MAINPID']);
    expect(daemon['Service.KillMode']).toEqual(['mixed']);
    expect(Number(daemon['Service.TimeoutStopSec']?.[0])).toBeGreaterThanOrEqual(600);
    expect(daemon['Unit.ConditionPathIsReadWrite']).toEqual(['/']);
    expect(daemon['Unit.After']?.join(' ').split(' ')).toEqual(
      expect.arrayContaining(['zshield-boot.service', 'blk-availability.service']),
    );
    // NODE_OPTIONS never leaks in: the boot hook clears it, the daemon sets it to its heap limits.
    expect(boot['Service.Environment']).toContain('NODE_OPTIONS=');
    expect(daemon['Service.Environment']).toEqual([
      '"NODE_OPTIONS=--max-semi-space-size=1 --max-old-space-size=128 --v8-pool-size=1"',
    ]);
    for (const u of [boot, daemon]) expect(u['Install.WantedBy']).toEqual(['multi-user.target']);
  });
});

describe('the read-only golden root under systemd', () => {
  it('gets a tmpfs where programs write; the factory reset leaves those lines off the system disk', () => {
    const lines = runtimeTmpfsLines();
    expect(lines).toContain('tmpfs\t/etc/lvm/archive\ttmpfs\tmode=0700\t0\t0');
    expect(lines.every(isRuntimeTmpfsLine)).toBe(true);
    // An operator's own tmpfs line is kept.
    expect(isRuntimeTmpfsLine('tmpfs /tmp tmpfs defaults 0 0')).toBe(false);
  });
});
