import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { planGoldenMedium } from '../../src/golden/prepare.js';
import { targetFlush } from '../../src/golden/write-target.js';
import { unmountIfMounted } from '../../src/golden/probe.js';
import { identitySteps } from '../../src/image/create-copy.js';
import type { CreateActions, CreateInput, SourceInfo } from '../../src/image/create-input.js';
import type { Step } from '../../src/plan/plan.js';
import type { FactoryInput } from '../../src/recovery/factory-input.js';
import { planFactoryReset } from '../../src/recovery/factory.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, testContext } from './helpers/context.js';
import { disk, goldenFacts, prototypeFacts } from './helpers/disks.js';

// Issue 22: the mount, umount, wipefs, sfdisk and mkfs command lines of the plans, pinned whole
// (argv, mutates, timeout, stdin, okCodes, runsAfterAbort, title, order) before their argv moved to
// src/system/mount-commands.ts and disk-commands.ts. These paths run for real only in the
// appliance lanes: here each step must stay byte for byte what it was.

const TOOLS = new Set(['mount', 'umount', 'wipefs', 'sfdisk', 'mkfs.ext4', 'blockdev']);

/** The tool steps of a plan with their position, every field but functions. */
const pinned = (steps: readonly Step[]) =>
  steps.flatMap((s, i) => {
    if (!('command' in s) || !TOOLS.has(s.command.file)) return [];
    const { onLine: _, ...command } = s.command;
    return [{ i, title: s.title, when: s.when?.text, ...command }];
  });

const used = disk('vdb', 'ZS-SYSTEM-HDD', 8, {
  partitions: [
    { name: 'vdb1', path: '/dev/vdb1', fsType: 'ext4', mount: '/run/zshield/target/boot', label: 'zs-boot' },
    { name: 'vdb2', path: '/dev/vdb2', fsType: 'LVM2_member', mount: '', label: '' },
  ],
});
const golden = disk('vda', 'ZS-GOLDEN-CF', 2, {
  partitions: [{ name: 'vda1', path: '/dev/vda1', fsType: 'ext4', mount: '/', label: 'zs-golden' }],
  mounted: ['vda1 on /'],
});

describe('the disk and mount steps of the plans, pinned', () => {
  it('factory reset over an interrupted run', () => {
    const input: FactoryInput = {
      config: defaultConfig(),
      disks: { disks: [golden, used], bootDisks: ['vda'] },
      pvs: [{ pvName: '/dev/vdb2', vgName: 'vgroup' }],
      golden: goldenFacts(),
      bootUuid: '0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e',
      now: new Date(0),
    };
    const plan = planFactoryReset(input);
    expect(pinned(plan.steps)).toMatchInlineSnapshot(`
      [
        {
          "args": [
            "/run/zshield/target/boot",
          ],
          "file": "umount",
          "i": 0,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/target/boot (left by an interrupted run)",
          "when": undefined,
        },
        {
          "args": [
            "-a",
            "-q",
            "/dev/vdb1",
          ],
          "file": "wipefs",
          "i": 2,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "wipe signatures on /dev/vdb1",
          "when": undefined,
        },
        {
          "args": [
            "-a",
            "-q",
            "/dev/vdb2",
          ],
          "file": "wipefs",
          "i": 3,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "wipe signatures on /dev/vdb2",
          "when": undefined,
        },
        {
          "args": [
            "-a",
            "-q",
            "/dev/vdb",
          ],
          "file": "wipefs",
          "i": 4,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "wipe the partition table of /dev/vdb",
          "when": undefined,
        },
        {
          "args": [
            "--wipe",
            "always",
            "--wipe-partitions",
            "always",
            "-q",
            "/dev/vdb",
          ],
          "file": "sfdisk",
          "i": 5,
          "input": "label: dos
      start=2048, size=1048576, type=83, bootable
      start=1050624, type=8e
      ",
          "mutates": true,
          "timeoutMs": 600000,
          "title": "partition /dev/vdb",
          "when": undefined,
        },
        {
          "args": [
            "-q",
            "-F",
            "-U",
            "0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e",
            "-L",
            "zs-boot",
            "/dev/vdb1",
          ],
          "file": "mkfs.ext4",
          "i": 11,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "make the /boot file system",
          "when": undefined,
        },
        {
          "args": [
            "-q",
            "-F",
            "-L",
            "lv-root",
            "/dev/vgroup/lv-root",
          ],
          "file": "mkfs.ext4",
          "i": 12,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "make the ext4 file system on lv-root",
          "when": undefined,
        },
        {
          "args": [
            "-q",
            "-F",
            "-L",
            "lv-data",
            "/dev/vgroup/lv-data",
          ],
          "file": "mkfs.ext4",
          "i": 13,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "make the ext4 file system on lv-data",
          "when": undefined,
        },
        {
          "args": [
            "-q",
            "-F",
            "-L",
            "lv-audit",
            "/dev/vgroup/lv-audit",
          ],
          "file": "mkfs.ext4",
          "i": 14,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "make the ext4 file system on lv-audit",
          "when": undefined,
        },
        {
          "args": [
            "-t",
            "ext4",
            "/dev/vgroup/lv-root",
            "/run/zshield/target",
          ],
          "file": "mount",
          "i": 16,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "mount lv-root",
          "when": undefined,
        },
        {
          "args": [
            "-t",
            "ext4",
            "/dev/vdb1",
            "/run/zshield/target/boot",
          ],
          "file": "mount",
          "i": 18,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "mount the new /boot",
          "when": undefined,
        },
        {
          "args": [
            "--bind",
            "/proc",
            "/run/zshield/target/proc",
          ],
          "file": "mount",
          "i": 24,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "bind /proc into the new root",
          "when": undefined,
        },
        {
          "args": [
            "--bind",
            "/sys",
            "/run/zshield/target/sys",
          ],
          "file": "mount",
          "i": 25,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "bind /sys into the new root",
          "when": undefined,
        },
        {
          "args": [
            "--bind",
            "/dev",
            "/run/zshield/target/dev",
          ],
          "file": "mount",
          "i": 26,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "bind /dev into the new root",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/target/dev",
          ],
          "file": "umount",
          "i": 31,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/target/dev",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/target/sys",
          ],
          "file": "umount",
          "i": 32,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/target/sys",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/target/proc",
          ],
          "file": "umount",
          "i": 33,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/target/proc",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/target/boot",
          ],
          "file": "umount",
          "i": 34,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/target/boot",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/target",
          ],
          "file": "umount",
          "i": 35,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount lv-root",
          "when": undefined,
        },
      ]
    `);
    expect(pinned(plan.always ?? [])).toMatchInlineSnapshot(`[]`);
  });

  it('golden medium over an old one', () => {
    const proto = disk('vda', 'ZS-PROTO', 2, { mounted: ['vda1 on /'] });
    const medium = disk('vdb', 'ZS-GOLDEN-CF', 2, {
      partitions: [
        { name: 'vdb1', path: '/dev/vdb1', fsType: 'ext4', mount: '', label: 'zs-golden' },
        { name: 'vdb2', path: '/dev/vdb2', fsType: 'ext4', mount: '', label: '' },
      ],
    });
    const plan = planGoldenMedium({
      config: defaultConfig(),
      disks: { disks: [proto, medium], bootDisks: ['vda'] },
      facts: prototypeFacts(),
      target: 'ZS-GOLDEN-CF',
      uuid: 'u-u-i-d',
      now: new Date(0),
      assets: { grubScript: '#! /bin/sh\n', bootUnit: '[Unit]\n', rcLocalLine: 'x\n' },
    });
    expect(pinned(plan.steps)).toMatchInlineSnapshot(`
      [
        {
          "args": [
            "-a",
            "-q",
            "/dev/vdb1",
          ],
          "file": "wipefs",
          "i": 0,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "wipe signatures on /dev/vdb1",
          "when": undefined,
        },
        {
          "args": [
            "-a",
            "-q",
            "/dev/vdb2",
          ],
          "file": "wipefs",
          "i": 1,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "wipe signatures on /dev/vdb2",
          "when": undefined,
        },
        {
          "args": [
            "-a",
            "-q",
            "/dev/vdb",
          ],
          "file": "wipefs",
          "i": 2,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "wipe the partition table of /dev/vdb",
          "when": undefined,
        },
        {
          "args": [
            "--wipe",
            "always",
            "--wipe-partitions",
            "always",
            "-q",
            "/dev/vdb",
          ],
          "file": "sfdisk",
          "i": 3,
          "input": "label: dos
      start=2048, type=83, bootable
      ",
          "mutates": true,
          "timeoutMs": 600000,
          "title": "partition /dev/vdb",
          "when": undefined,
        },
        {
          "args": [
            "-q",
            "-F",
            "-U",
            "u-u-i-d",
            "-L",
            "zs-golden",
            "/dev/vdb1",
          ],
          "file": "mkfs.ext4",
          "i": 4,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "make the golden file system",
          "when": undefined,
        },
        {
          "args": [
            "-t",
            "ext4",
            "/dev/vdb1",
            "/run/zshield/golden",
          ],
          "file": "mount",
          "i": 6,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "mount the golden file system",
          "when": undefined,
        },
        {
          "args": [
            "--bind",
            "/proc",
            "/run/zshield/golden/proc",
          ],
          "file": "mount",
          "i": 19,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "bind /proc",
          "when": undefined,
        },
        {
          "args": [
            "--bind",
            "/sys",
            "/run/zshield/golden/sys",
          ],
          "file": "mount",
          "i": 20,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "bind /sys",
          "when": undefined,
        },
        {
          "args": [
            "--bind",
            "/dev",
            "/run/zshield/golden/dev",
          ],
          "file": "mount",
          "i": 21,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "bind /dev",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/golden/dev",
          ],
          "file": "umount",
          "i": 24,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/golden/dev",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/golden/sys",
          ],
          "file": "umount",
          "i": 25,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/golden/sys",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/golden/proc",
          ],
          "file": "umount",
          "i": 26,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/golden/proc",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/golden",
          ],
          "file": "umount",
          "i": 27,
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount the golden file system",
          "when": undefined,
        },
      ]
    `);
    expect(pinned(plan.always ?? [])).toMatchInlineSnapshot(`
      [
        {
          "args": [
            "/run/zshield/golden/dev",
          ],
          "file": "umount",
          "i": 0,
          "mutates": true,
          "runsAfterAbort": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/golden/dev if a failure left it mounted",
          "when": "if /run/zshield/golden/dev is still mounted",
        },
        {
          "args": [
            "/run/zshield/golden/sys",
          ],
          "file": "umount",
          "i": 1,
          "mutates": true,
          "runsAfterAbort": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/golden/sys if a failure left it mounted",
          "when": "if /run/zshield/golden/sys is still mounted",
        },
        {
          "args": [
            "/run/zshield/golden/proc",
          ],
          "file": "umount",
          "i": 2,
          "mutates": true,
          "runsAfterAbort": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/golden/proc if a failure left it mounted",
          "when": "if /run/zshield/golden/proc is still mounted",
        },
        {
          "args": [
            "/run/zshield/golden",
          ],
          "file": "umount",
          "i": 3,
          "mutates": true,
          "runsAfterAbort": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/golden if a failure left it mounted",
          "when": "if /run/zshield/golden is still mounted",
        },
      ]
    `);
  });

  it("the image job's identity mount and the golden always-unmount", () => {
    const input = { config: defaultConfig(), fs: { type: 'ext4' } } as unknown as CreateInput;
    const source = { snapshot: 'zs-image-tmp', device: '/dev/vgroup/zs-image-tmp' } as SourceInfo;
    const actions = {} as CreateActions;
    const withIdentity = identitySteps(input, source, { hostname: 'box2', ip: null } as never, actions);
    expect(pinned([...withIdentity.steps, withIdentity.unmountIfStill])).toMatchInlineSnapshot(`
      [
        {
          "args": [
            "-t",
            "ext4",
            "-o",
            "nodev,nosuid,noexec",
            "/dev/vgroup/zs-image-tmp",
            "/run/zshield/image-identity",
          ],
          "file": "mount",
          "i": 1,
          "mutates": true,
          "title": "mount zs-image-tmp (the job's own snapshot) to give the image another identity",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/image-identity",
          ],
          "file": "umount",
          "i": 3,
          "mutates": true,
          "runsAfterAbort": true,
          "title": "unmount zs-image-tmp",
          "when": undefined,
        },
        {
          "args": [
            "/run/zshield/image-identity",
          ],
          "file": "umount",
          "i": 4,
          "mutates": true,
          "okCodes": [
            0,
            32,
          ],
          "runsAfterAbort": true,
          "title": "unmount /run/zshield/image-identity if it is still mounted (a failure or a job that died left it)",
          "when": undefined,
        },
      ]
    `);
    expect(pinned([unmountIfMounted('/run/zshield/golden/dev')])).toMatchInlineSnapshot(`
      [
        {
          "args": [
            "/run/zshield/golden/dev",
          ],
          "file": "umount",
          "i": 0,
          "mutates": true,
          "runsAfterAbort": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/golden/dev if a failure left it mounted",
          "when": "if /run/zshield/golden/dev is still mounted",
        },
      ]
    `);
  });
});

describe('targetFlush (the golden image write and the clone receive share it)', () => {
  it('runs blockdev --flushbufs on a block device, as a change; nothing for a file', async () => {
    const runner = new RecordingRunner();
    const ctx = testContext({ runner, dir: '/tmp/zshield-unit-flush', clock: new FakeClock(new Date(0)) });
    const block = { path: '/dev/sdz', sizeBytes: 1, isBlock: true, describe: '/dev/sdz' };
    await targetFlush(ctx, block)!();
    expect(runner.calls.map((c) => [c.argv, c.mutates])).toEqual([
      [['blockdev', '--flushbufs', '/dev/sdz'], true],
    ]);
    expect(targetFlush(ctx, { ...block, isBlock: false })).toBeUndefined();
  });
});
