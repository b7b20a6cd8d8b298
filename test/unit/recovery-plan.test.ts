import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { defaultConfig } from '../../src/config/schema.js';
import { NotFoundError, RefusedError, UsageError } from '../../src/errors.js';
import { planGoldenMedium, rcLocalWith } from '../../src/golden/prepare.js';
import { describeStep, formatPlan } from '../../src/plan/plan.js';
import { recoveryRequest } from '../../src/recovery/cmdline.js';
import type { FactoryInput } from '../../src/recovery/factory-input.js';
import { defaultGrubFor } from '../../src/recovery/factory-steps.js';
import { planFactoryReset } from '../../src/recovery/factory.js';
import { checkRestorable, planMerge, restoreLabelOf } from '../../src/recovery/latest-merge.js';
import { chooseTarget } from '../../src/recovery/target.js';
import type { Disk, DiskProbe } from '../../src/system/disks.js';
import type { LvInfo, VgState } from '../../src/system/lvm.js';
import { partitionPath } from '../../src/system/partitions.js';
import { disk, goldenFacts, prototypeFacts } from './helpers/disks.js';
import { GiB } from './helpers/lvm-json.js';
import { RESTORE_TAG, FACTORY_TAG } from '../../src/names/lvm-tags.js';

const golden = disk('vda', 'ZS-GOLDEN-CF', 2, {
  partitions: [{ name: 'vda1', path: '/dev/vda1', fsType: 'ext4', mount: '/', label: 'zs-golden' }],
  mounted: ['vda1 on /'],
});
const system = disk('vdb', 'ZS-SYSTEM-HDD', 8);
const probe = (disks: Disk[], bootDisks = ['vda']): DiskProbe => ({ disks, bootDisks });

const DEFAULT_GRUB = 'GRUB_TIMEOUT=3\nGRUB_DISABLE_LINUX_UUID=false\n';
const facts = goldenFacts({
  fstab: 'UUID=1111 / ext4 ro 0 1\ntmpfs /tmp tmpfs defaults 0 0\n',
  defaultGrub: DEFAULT_GRUB,
  goldenUuid: 'aaaa-bbbb',
});

const factoryInput = (over: Partial<FactoryInput> = {}): FactoryInput => ({
  config: defaultConfig(),
  disks: probe([golden, system]),
  pvs: [],
  golden: facts,
  bootUuid: '0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e',
  now: new Date('2026-11-21T10:00:00Z'),
  ...over,
});

describe('kernel command line', () => {
  it('reads zshield_recovery and refuses unknown values', () => {
    expect(recoveryRequest('BOOT_IMAGE=/vmlinuz root=UUID=x ro quiet')).toBe('none');
    expect(recoveryRequest('root=/dev/vda1 ro zshield_recovery=default')).toBe('default');
    expect(recoveryRequest('zshield_recovery="latest" console=ttyS0')).toBe('latest');
    expect(recoveryRequest('zshield_recovery=default zshield_recovery=latest')).toBe('latest');
    expect(() => recoveryRequest('ro zshield_recovery=everything')).toThrow(UsageError);
    expect(() => recoveryRequest('ro zshield_recovery')).toThrow(/unknown zshield_recovery value ""/);
    expect(recoveryRequest('xzshield_recovery=default')).toBe('none');
  });
});

describe('choosing the system disk', () => {
  const config = defaultConfig();
  it('takes the only eligible disk, never the boot disk', () => {
    expect(chooseTarget(probe([golden, system]), config).disk.name).toBe('vdb');
  });
  it('refuses two candidates, naming both', () => {
    const other = disk('vdc', 'SPARE', 8);
    expect(() => chooseTarget(probe([golden, system, other]), config)).toThrow(
      /two or more candidate system disks: \/dev\/vdb .*ZS-SYSTEM-HDD.*, \/dev\/vdc/,
    );
  });
  it('refuses when no disk is eligible, and when the only one is too small', () => {
    expect(() => chooseTarget(probe([golden]), config)).toThrow(/no eligible system disk found/);
    expect(() => chooseTarget(probe([golden, disk('vdb', 'SMALL', 1)]), config)).toThrow(
      /too small: \/dev\/vdb/,
    );
  });
  it('picks by serial from the config or the command line, and refuses the boot disk named as target', () => {
    const c = defaultConfig();
    c.disks.system.serial = 'ZS-SYSTEM-HDD';
    const other = disk('vdc', 'SPARE', 8);
    expect(chooseTarget(probe([golden, system, other]), c).disk.name).toBe('vdb');
    expect(chooseTarget(probe([golden, system, other]), c, 'SPARE').disk.name).toBe('vdc');
    expect(() => chooseTarget(probe([golden, system]), c, 'ZS-GOLDEN-CF')).toThrow(RefusedError);
    expect(() => chooseTarget(probe([golden, system]), c, 'ZS-GOLDEN-CF')).toThrow(
      /booted from; it is never a target/,
    );
    expect(() => chooseTarget(probe([golden, system]), c, 'NOPE')).toThrow(NotFoundError);
  });
  it('never picks the configured golden medium even when it is not the boot disk', () => {
    const c = defaultConfig();
    c.disks.golden.serial = 'ZS-GOLDEN-CF';
    const cf = { ...golden, partitions: [], mounted: [] };
    expect(chooseTarget(probe([cf, system], []), c).disk.name).toBe('vdb');
  });
});

describe('factory reset plan', () => {
  it('wipes, partitions, builds LVM, copies, installs GRUB and takes the first snap0, in that order', () => {
    const plan = planFactoryReset(factoryInput());
    const argv = plan.steps.map((s) => [s.command.file, ...s.command.args].join(' '));
    const at = (re: RegExp) => argv.findIndex((a) => re.test(a));
    const order = [
      /^wipefs -a -q \/dev\/vdb$/,
      /^sfdisk .* \/dev\/vdb$/,
      /^pvcreate -ff -y \/dev\/vdb2$/,
      new RegExp(
        `^vgcreate -y --addtag ${FACTORY_TAG} --addtag zshield_boot_uuid=0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e vgroup /dev/vdb2$`,
      ),
      /^lvcreate .* -n lv-root -l 45%VG vgroup$/,
      /^mkfs.ext4 -q -F -U 0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e -L zs-boot \/dev\/vdb1$/,
      /^mount -t ext4 \/dev\/vgroup\/lv-root \/run\/zshield\/target$/,
      /^rsync -aHAXx --numeric-ids --delete --info=progress2 .*--exclude=\/proc\/\* .* \/ \/run\/zshield\/target\/$/,
      /^tee \/run\/zshield\/target\/etc\/fstab$/,
      /^chroot \/run\/zshield\/target grub-install --target=i386-pc \/dev\/vdb$/,
      /^chroot \/run\/zshield\/target grub-mkconfig -o \/boot\/grub\/grub.cfg$/,
      /^umount \/run\/zshield\/target$/,
      /^lvcreate --snapshot -n snap0 -l 20%ORIGIN --addtag zshield_reason=factory .* vgroup\/lv-root$/,
      new RegExp(`^vgchange --deltag ${FACTORY_TAG} vgroup$`),
    ];
    const idx = order.map(at);
    expect(
      idx.every((i) => i >= 0),
      JSON.stringify(argv, null, 1),
    ).toBe(true);
    expect([...idx].sort((a, b) => a - b)).toEqual(idx);
    expect(plan.steps.every((s) => s.command.mutates)).toBe(true);
    const sfdisk = plan.steps.find((s) => s.command.file === 'sfdisk')!;
    expect(sfdisk.command.input).toBe(
      'label: dos\nstart=2048, size=1048576, type=83, bootable\nstart=1050624, type=8e\n',
    );
  });

  it('writes an fstab that mounts the root by LV path and keeps foreign lines', () => {
    const plan = planFactoryReset(factoryInput());
    const fstab = String(plan.steps.find((s) => s.command.args[0]?.endsWith('/etc/fstab'))!.command.input);
    expect(fstab).toMatch(/^\/dev\/vgroup\/lv-root\t\/\text4/m);
    expect(fstab).toMatch(/^UUID=0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e\t\/boot\t/m);
    expect(fstab).toMatch(/^\/dev\/vgroup\/lv-data\t\/data\t/m);
    expect(fstab).toMatch(/^tmpfs \/tmp tmpfs/m);
    expect(fstab).not.toMatch(/UUID=1111/);
    expect(defaultGrubFor(DEFAULT_GRUB)).toBe(
      'GRUB_TIMEOUT=3\n# zshield: root by LV path (a snapshot has the same file system UUID)\nGRUB_DISABLE_LINUX_UUID=true\n',
    );
  });

  it('regenerates the initramfs where the distribution has a tool, and says so where not', () => {
    const withTool = planFactoryReset(
      factoryInput({ golden: { ...facts, initramfsTool: 'update-initramfs' } }),
    );
    expect(withTool.steps.some((s) => s.command.args.join(' ').includes('update-initramfs -u -k all'))).toBe(
      true,
    );
    const dracut = planFactoryReset(
      factoryInput({
        golden: {
          ...facts,
          initramfsTool: 'dracut',
          grubInstall: 'grub2-install',
          grubMkconfig: 'grub2-mkconfig',
          grubCfg: '/boot/grub2/grub.cfg',
        },
      }),
    );
    const text = formatPlan(dracut);
    expect(text).toContain('chroot /run/zshield/target dracut -f --regenerate-all');
    expect(text).toContain('chroot /run/zshield/target grub2-install --target=i386-pc /dev/vdb');
    expect(text).toContain('chroot /run/zshield/target grub2-mkconfig -o /boot/grub2/grub.cfg');
    expect(formatPlan(planFactoryReset(factoryInput()))).toContain('no initramfs tool in the golden root');
  });

  it('starts over cleanly after an interrupted run: old VG deactivated, old partitions wiped, leftovers unmounted', () => {
    const used = disk('vdb', 'ZS-SYSTEM-HDD', 8, {
      partitions: [
        {
          name: 'vdb1',
          path: '/dev/vdb1',
          fsType: 'ext4',
          mount: '/run/zshield/target/boot',
          label: 'zs-boot',
        },
        { name: 'vdb2', path: '/dev/vdb2', fsType: 'LVM2_member', mount: '', label: '' },
      ],
    });
    const plan = planFactoryReset(
      factoryInput({ disks: probe([golden, used]), pvs: [{ pvName: '/dev/vdb2', vgName: 'vgroup' }] }),
    );
    const argv = plan.steps.map((s) => [s.command.file, ...s.command.args].join(' '));
    expect(argv.slice(0, 5)).toEqual([
      'umount /run/zshield/target/boot',
      'vgchange -an vgroup',
      'wipefs -a -q /dev/vdb1',
      'wipefs -a -q /dev/vdb2',
      'wipefs -a -q /dev/vdb',
    ]);
  });

  it('refuses a target in use by the running system, a VG name clash elsewhere, a missing GRUB', () => {
    const mounted = disk('vdb', 'ZS-SYSTEM-HDD', 8, {
      partitions: [{ name: 'vdb1', path: '/dev/vdb1', fsType: 'ext4', mount: '/data', label: '' }],
    });
    expect(() => planFactoryReset(factoryInput({ disks: probe([golden, mounted]) }))).toThrow(
      /is in use: \/dev\/vdb1 on \/data/,
    );
    expect(() =>
      planFactoryReset(factoryInput({ pvs: [{ pvName: '/dev/vdc1', vgName: 'vgroup' }] })),
    ).toThrow(/a volume group named vgroup already exists on \/dev\/vdc1/);
    expect(() => planFactoryReset(factoryInput({ golden: { ...facts, grubInstall: null } }))).toThrow(
      /no grub-install/,
    );
  });

  it('refuses a disk too small for fixed-size volumes', () => {
    const { config } = parseConfigText(
      JSON.stringify({ layout: { volumes: [{ name: 'lv-root', size: '100G', mount: '/' }] } }),
      'test.conf',
    );
    expect(() => planFactoryReset(factoryInput({ config }))).toThrow(/too small for the layout/);
  });

  it('names partitions of NVMe-style disks with a p', () => {
    expect(partitionPath('/dev/nvme0n1', 2)).toBe('/dev/nvme0n1p2');
    expect(partitionPath('/dev/sda', 1)).toBe('/dev/sda1');
  });
});

const lv = (over: Partial<LvInfo>): LvInfo => ({
  name: 'lv-root',
  vg: 'vgroup',
  path: '/dev/vgroup/lv-root',
  attr: 'owi-a-s---',
  sizeBytes: GiB,
  kind: 'origin',
  origin: null,
  merging: false,
  invalid: false,
  active: true,
  snapPercent: null,
  tags: [],
  created: null,
  kernelMajor: 254,
  kernelMinor: 0,
  ...over,
});
const snap0 = lv({
  name: 'snap0',
  attr: 'swi-a-s---',
  kind: 'snapshot',
  origin: 'lv-root',
  snapPercent: 3,
  tags: ['zshield_reason=daily', 'zshield_time=1763780400', 'zshield_boot=captured'],
});
const vgState = (lvs: LvInfo[]): VgState => ({
  vg: {
    name: 'vgroup',
    sizeBytes: 8 * GiB,
    freeBytes: 2 * GiB,
    extentBytes: 4 * 1024 ** 2,
    freeExtents: 512,
    tags: [],
  },
  lvs,
});

describe('restore latest', () => {
  const config = defaultConfig();
  it('refuses with what to do instead: no VG, no snap0, invalid, merge pending', () => {
    expect(() => checkRestorable(null, config)).toThrow(
      /no volume group vgroup: there is no backup to restore/,
    );
    expect(() => checkRestorable(vgState([lv({})]), config)).toThrow(
      /there is no backup to restore: vgroup\/snap0 does not exist/,
    );
    expect(() =>
      checkRestorable(vgState([lv({}), { ...snap0, invalid: true, attr: 'swi-I-s---' }]), config),
    ).toThrow(/is invalid \(it overflowed\)/);
    expect(() =>
      checkRestorable(
        vgState([lv({ merging: true, attr: 'Owi-a-s---' }), { ...snap0, merging: true }]),
        config,
      ),
    ).toThrow(/already pending/);
  });

  it('checks snap0 read-only, marks the VG with what is restored, then merges with progress every second', () => {
    const state = vgState([lv({}), snap0]);
    const s = checkRestorable(state, config);
    const merge = planMerge({ config, state, snapshot: s, originOpen: false }, '/run/zshield');
    expect(merge.steps.map((x) => describeStep(x))).toEqual([
      '$ mkdir -p /run/zshield/restore/snap0',
      '$ mount -o ro,noload /dev/vgroup/snap0 /run/zshield/restore/snap0',
      '$ umount /run/zshield/restore/snap0',
      `$ vgchange --addtag ${RESTORE_TAG} --addtag zshield_restore_of=1763780400.daily.captured vgroup`,
      '$ lvconvert --merge -i 1 vgroup/snap0',
    ]);
    expect(merge.notes[0]).toBe(
      'restore point: vgroup/snap0, taken 2025-11-22T03:00:00.000Z (reason: daily)',
    );
    const open = planMerge({ config, state, snapshot: s, originOpen: true }, '/run/zshield');
    expect(open.notes.join('\n')).toContain('the kernel starts the merge when it is next activated');
    expect(restoreLabelOf(['x', 'zshield_restore_of=1763780400.daily.none'])).toEqual({
      time: new Date(1763780400 * 1000),
      reason: 'daily',
      captured: false,
    });
  });

  it('activates an inactive VG as a step of the plan (a change, never a probe)', () => {
    const inactive = vgState([
      lv({ attr: 'owi---s---', active: false }),
      { ...snap0, attr: 'swi---s---', active: false },
    ]);
    const merge = planMerge({ config, state: inactive, snapshot: snap0, originOpen: false }, '/run/zshield');
    expect(merge.steps[0]).toMatchObject({
      command: { file: 'vgchange', args: ['-ay', 'vgroup'], mutates: true },
    });
    expect(merge.notes.join('\n')).toContain('vgroup is not active: the plan activates it first');
  });
});

describe('golden medium', () => {
  const assets = {
    grubScript: '#! /bin/sh\n',
    bootUnit: '[Unit]\n',
    rcLocalLine: 'zshield boot --daemon &\n',
  };
  const prototype = prototypeFacts({
    init: 'rc.local',
    rcLocal: '#!/bin/sh\necho hello\nexit 0\n',
    usedBytes: 700 * 1024 ** 2,
  });
  const medium = disk('vda', 'ZS-GOLDEN-CF', 2);
  const base = {
    config: defaultConfig(),
    disks: probe([medium, system], []),
    facts: prototype,
    uuid: 'u-u-i-d',
    now: new Date(0),
    assets,
  };

  it('must be named; is never the boot disk', () => {
    expect(() => planGoldenMedium(base)).toThrow(UsageError);
    expect(() =>
      planGoldenMedium({ ...base, target: 'ZS-GOLDEN-CF', disks: probe([medium], ['vda']) }),
    ).toThrow(/booted from/);
  });

  it('makes a read-only root with the recovery entries and the boot hook', () => {
    const plan = planGoldenMedium({ ...base, target: 'ZS-GOLDEN-CF' });
    const byFile = (suffix: string) =>
      plan.steps.find((s) => s.command.file === 'tee' && s.command.args[0]!.endsWith(suffix));
    expect(String(byFile('/etc/fstab')?.command.input)).toMatch(
      /^UUID=u-u-i-d\t\/\text4\tro,errors=remount-ro/m,
    );
    expect(String(byFile('/etc/default/zshield-grub')?.command.input)).toContain(
      'ZSHIELD_GOLDEN_UUID=u-u-i-d',
    );
    expect(byFile('/etc/grub.d/40_zshield')?.command.input).toBe(assets.grubScript);
    expect(String(byFile('/etc/rc.local')?.command.input)).toBe(
      '#!/bin/sh\necho hello\nzshield boot --daemon &\nexit 0\n',
    );
    expect(formatPlan(plan)).toContain('chroot /run/zshield/golden grub-install --target=i386-pc /dev/vda');
  });

  it('adds the rc.local line once', () => {
    const once = rcLocalWith(null, '/usr/sbin/zshield boot &\n');
    expect(once).toBe('#!/bin/sh\n/usr/sbin/zshield boot &\n');
    expect(rcLocalWith(once, '/usr/sbin/zshield boot &\n')).toBe(once);
  });
});
