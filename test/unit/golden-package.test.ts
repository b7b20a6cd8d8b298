import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { type GoldenInput, planGoldenMedium } from '../../src/golden/prepare.js';
import { packageInstalled } from '../../src/golden/units.js';
import type { FactoryInput } from '../../src/recovery/factory-input.js';
import { planFactoryReset } from '../../src/recovery/factory.js';
import { disk, goldenFacts, prototypeFacts } from './helpers/disks.js';
import { tempDir } from './helpers/context.js';

// Where zshield is installed from its Debian package, golden prepare and the factory reset write
// no unit file and no grub.d script of their own (they would shadow the package's on every
// upgrade): they only enable the package's units. golden prepare --package installs it first.

const proto = disk('vda', 'ZS-PROTO', 2, { mounted: ['vda1 on /'] });
const medium = disk('vdb', 'ZS-GOLDEN-CF', 2);
const system = disk('vdc', 'ZS-SYSTEM-HDD', 8);
const units = { boot: '[Unit]\nDescription=boot\n', daemon: '[Unit]\nDescription=daemon\n' };
const argv = (s: { command: { file: string; args: readonly string[] } }) =>
  [s.command.file, ...s.command.args].join(' ');

const goldenInput = (over: Partial<GoldenInput> = {}): GoldenInput => ({
  config: defaultConfig(),
  disks: { disks: [proto, medium, system], bootDisks: ['vda'] },
  facts: prototypeFacts(),
  target: 'ZS-GOLDEN-CF',
  uuid: 'u-u-i-d',
  now: new Date(0),
  assets: { grubScript: '#! /bin/sh\n', bootUnit: units.boot, daemonUnit: units.daemon, rcLocalLine: 'x\n' },
  ...over,
});
const MNT = '/run/zshield/golden';

describe('the package on the golden medium', () => {
  it('golden prepare --package installs it into the prototype first, then only enables its units', () => {
    const plan = planGoldenMedium(goldenInput({ packageFile: '/srv/zshield_0.1.0_amd64.deb' }));
    const cmds = plan.steps.map(argv);
    expect(cmds[0]).toBe('dpkg -i /srv/zshield_0.1.0_amd64.deb');
    // Before anything is written to the medium (the copy carries the package).
    expect(plan.steps[0]!.title).toBe('install the zshield package into the prototype');
    expect(cmds.filter((c) => c.startsWith('tee ') && c.includes('/etc/systemd/system/'))).toEqual([]);
    expect(cmds.some((c) => c.includes('/etc/grub.d/40_zshield'))).toBe(false);
    expect(cmds).toContain(`systemctl --root ${MNT} enable zshield-boot.service zshield.service`);
    // The medium's own settings for the package's grub.d script are still written.
    expect(cmds).toContain(`tee ${MNT}/etc/default/zshield-grub`);
  });

  it('a prototype that already has the package: the same, without dpkg', () => {
    const input = goldenInput();
    input.facts.packaged = true;
    const cmds = planGoldenMedium(input).steps.map(argv);
    expect(cmds.some((c) => c.startsWith('dpkg'))).toBe(false);
    expect(cmds.filter((c) => c.startsWith('tee ') && c.includes('/etc/systemd/system/'))).toEqual([]);
    expect(cmds).toContain(`systemctl --root ${MNT} enable zshield-boot.service zshield.service`);
    // Without the package: the units and the grub.d script are written as before.
    const own = planGoldenMedium(goldenInput()).steps.map(argv);
    expect(own).toContain(`tee ${MNT}/etc/systemd/system/zshield.service`);
    expect(own).toContain(`tee ${MNT}/etc/grub.d/40_zshield`);
  });

  it('the factory reset copies the golden root and runs no dpkg; it only enables the package units', () => {
    const input: FactoryInput = {
      config: defaultConfig(),
      disks: { disks: [medium, system], bootDisks: ['vdb'] },
      pvs: [],
      golden: goldenFacts({
        initramfsTool: 'update-initramfs',
        systemdUnits: { ...units, packaged: true },
        rootUsedBytes: null,
        bootUsedBytes: null,
      }),
      bootUuid: '0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e',
      now: new Date(0),
    };
    const mnt = '/run/zshield/target';
    const cmds = planFactoryReset(input).steps.map(argv);
    expect(cmds.some((c) => /\bdpkg\b/.test(c))).toBe(false);
    expect(cmds.filter((c) => c.includes('/etc/systemd/system/'))).toEqual([]);
    const enable = cmds.indexOf(`systemctl --root ${mnt} enable zshield-boot.service zshield.service`);
    expect(enable).toBeGreaterThan(cmds.findIndex((c) => c.startsWith('rsync -aHAXx')));
  });

  it('packageInstalled: the boot unit in /lib or /usr/lib/systemd/system of that root', () => {
    const t = tempDir();
    try {
      expect(packageInstalled(t.dir)).toBe(false);
      mkdirSync(path.join(t.dir, 'etc/systemd/system'), { recursive: true });
      writeFileSync(path.join(t.dir, 'etc/systemd/system/zshield-boot.service'), units.boot);
      expect(packageInstalled(t.dir)).toBe(false);
      mkdirSync(path.join(t.dir, 'usr/lib/systemd/system'), { recursive: true });
      writeFileSync(path.join(t.dir, 'usr/lib/systemd/system/zshield-boot.service'), units.boot);
      expect(packageInstalled(t.dir)).toBe(true);
    } finally {
      t.cleanup();
    }
  });
});
