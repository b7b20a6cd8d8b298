import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { DryRunError, RefusedError } from '../../src/errors.js';
import type { Plan } from '../../src/plan/plan.js';
import { runPlan } from '../../src/plan/run.js';
import { planFactoryReset } from '../../src/recovery/factory.js';
import { realFactoryProbes } from '../../src/recovery/reset.js';
import { gatherStatus, formatStatus } from '../../src/status/status.js';
import type { Disk, DiskProbe } from '../../src/system/disks.js';
import type { Command } from '../../src/system/command.js';
import { LvmScopedRunner, type ScopeOptions, decideScope, withDevices } from '../../src/system/lvm-scope.js';
import { lvsCommand, probeVg, vgsCommand } from '../../src/system/lvm.js';
import { parsePvs, probePvs } from '../../src/system/pvs.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { GiB } from './helpers/lvm-json.js';

// Captured in the bench guest (lvm2 2.03.16): `pvs --reportformat json -o pv_name,vg_name,vg_uuid,vg_tags`
// with the seed layout on the system disk (vdb1) and another box's disk (vdc1) with its own VG
// vgroup; vda is the golden medium (no PV).
const TWO = readFileSync(path.join(import.meta.dirname, 'fixtures/pvs-two-vgroup.json'), 'utf8');
const [SYS, FOREIGN] = parsePvs(TWO).filter((p) => p.vgName === 'vgroup');
const ONE = JSON.stringify({ report: [{ pv: [JSON.parse(TWO).report[0].pv[0]] }] });

function disk(name: string, serial: string, parts: string[] = []): Disk {
  return {
    name,
    path: `/dev/${name}`,
    sizeBytes: 4 * GiB,
    serial,
    wwn: '',
    model: 'QEMU',
    removable: false,
    readOnly: false,
    partitions: parts.map((p) => ({ name: p, path: `/dev/${p}`, fsType: '', mount: '', label: '' })),
    mounted: [],
  };
}
const DISKS = [
  disk('vda', 'ZS-GOLDEN-CF'),
  disk('vdb', 'ZS-SYSTEM-HDD', ['vdb1']),
  disk('vdc', 'ZS-FOREIGN-HDD', ['vdc1']),
];
const probe = (bootDisks: string[] = []): DiskProbe => ({ disks: DISKS, bootDisks });

/** pvs as LVM answers it: with --devices, only the PVs on those devices. */
function pvsReply(json: string) {
  return (argv: readonly string[]) => {
    const at = argv.indexOf('--devices');
    if (at < 0) return { stdout: json };
    const only = new Set(argv[at + 1]?.split(','));
    const report = JSON.parse(json) as { report: { pv: { pv_name: string }[] }[] };
    const pv = report.report[0]!.pv.filter((p) => only.has(p.pv_name));
    return { stdout: JSON.stringify({ report: [{ pv }] }) };
  };
}

function scoped(pvsJson: string, opts: Partial<ScopeOptions> = {}, inner = new RecordingRunner()) {
  inner.on('pvs', pvsReply(pvsJson));
  const runner = new LvmScopedRunner(inner, {
    vg: 'vgroup',
    systemIds: ['ZS-SYSTEM-HDD'],
    disks: async () => probe(),
    generation: () => 'same disks',
    ...opts,
  });
  return { runner, inner };
}

describe('the captured pvs report', () => {
  it('holds two VGs named vgroup, told apart by their uuids, on the system and the foreign disk', () => {
    expect(SYS?.pvName).toBe('/dev/vdb1');
    expect(FOREIGN?.pvName).toBe('/dev/vdc1');
    expect(SYS?.vgUuid).toMatch(/^\w{6}(-\w{4}){5}-\w{6}$/);
    expect(FOREIGN?.vgUuid).toMatch(/^\w{6}(-\w{4}){5}-\w{6}$/);
    expect(SYS?.vgUuid).not.toBe(FOREIGN?.vgUuid);
  });
});

describe('LVM commands restricted to the system disk', () => {
  it("adds --devices with the system PVs to every LVM tool (after lvm's subcommand), nothing else", async () => {
    const { runner, inner } = scoped(TWO);
    await runner.run(vgsCommand('vgroup'));
    await runner.run({
      file: 'lvm',
      args: ['lvpoll', '--polloperation', 'merge', 'vgroup/lv-root'],
      mutates: true,
    });
    await runner.run({ file: 'blkid', args: ['/dev/vdb1'], mutates: false });
    await runner.pipeline({
      stages: [
        { file: 'lvs', args: ['vgroup'], mutates: false },
        { file: 'cat', args: [], mutates: false },
      ],
      mutates: false,
    });
    expect(inner.transcript()).toEqual([
      // The one probe that decides, unrestricted; then every LVM command sees vdb1 only.
      '$ pvs --reportformat json -o pv_name,vg_name,vg_uuid,vg_tags',
      `$ vgs --devices /dev/vdb1 ${vgsCommand('vgroup').args.join(' ')}`,
      '$ lvm lvpoll --devices /dev/vdb1 --polloperation merge vgroup/lv-root',
      '$ blkid /dev/vdb1',
      '$ lvs --devices /dev/vdb1 vgroup | cat',
    ]);
  });

  it('the deciding pvs may run after SIGTERM (an interrupted job still removes its temporary snapshot)', async () => {
    class Capturing extends RecordingRunner {
      readonly seen: Command[] = [];
      override async run(cmd: Command) {
        this.seen.push(cmd);
        return super.run(cmd);
      }
    }
    const inner = new Capturing();
    const { runner } = scoped(TWO, {}, inner);
    await runner.run({
      file: 'lvremove',
      args: ['--yes', 'vgroup/snap0-image'],
      mutates: true,
      runsAfterAbort: true,
    });
    expect(inner.seen[0]).toMatchObject({ file: 'pvs', runsAfterAbort: true });
  });

  it('with one VG of the name: every command exactly as before (the probe is its only addition)', async () => {
    const { runner, inner } = scoped(ONE, { disks: () => Promise.reject(new Error('no disk probe needed')) });
    await probeVg(runner, 'vgroup').catch(() => {});
    await runner.run(withDevices(lvsCommand('vgroup'), null));
    const plain = new RecordingRunner();
    await plain.run(vgsCommand('vgroup'));
    expect(inner.transcript().slice(1, 2)).toEqual(plain.transcript());
    expect(inner.transcript().filter((l) => l.includes('--devices'))).toEqual([]);
    expect(inner.transcript().filter((l) => l.startsWith('$ pvs'))).toHaveLength(1);
  });

  it('decides once per run and again only when the set of disks changes', async () => {
    let disks = 'vda,vdb';
    const { runner, inner } = scoped(ONE, { generation: () => disks });
    await runner.run(vgsCommand('vgroup'));
    await runner.run(vgsCommand('vgroup'));
    expect(inner.transcript().filter((l) => l.startsWith('$ pvs'))).toHaveLength(1);
    // A disk attached while the daemon runs: the next LVM command decides again and is restricted.
    disks = 'vda,vdb,vdc';
    inner.on('pvs', pvsReply(TWO));
    await runner.run(vgsCommand('vgroup'));
    expect(inner.transcript().at(-1)).toMatch(/^\$ vgs --devices \/dev\/vdb1 /);
  });

  it('a dry run decides too (pvs reads only), so the preview is what the run would do', async () => {
    const { runner, inner } = scoped(TWO, {}, new RecordingRunner(true));
    await expect(
      runner.run({ file: 'lvremove', args: ['--yes', 'vgroup/snap0'], mutates: true }),
    ).rejects.toThrow(DryRunError);
    expect(inner.transcript()).toEqual([
      '$ pvs --reportformat json -o pv_name,vg_name,vg_uuid,vg_tags',
      '! lvremove --devices /dev/vdb1 --yes vgroup/snap0',
    ]);
  });
});

describe("which VG is the system's", () => {
  const pvs = parsePvs(TWO);
  const tagged = (uuid: string | undefined) =>
    pvs.map((p) => (p.vgUuid === uuid ? { ...p, vgTags: ['zshield_boot_uuid=0d6f7b39'] } : p));

  it("first the disk the config names, over the running root and zshield's tags", () => {
    const s = decideScope({
      vg: 'vgroup',
      systemIds: ['ZS-FOREIGN-HDD'],
      pvs: tagged(SYS?.vgUuid),
      disks: probe(['vdb']),
    });
    expect(s.devices).toEqual(['/dev/vdc1']);
    expect(s.chosenBy).toContain('the config names (ZS-FOREIGN-HDD)');
    expect(s.others.map((o) => o.uuid)).toEqual([SYS?.vgUuid]);
  });

  it('a WWN names it as well as a serial', () => {
    const disks: DiskProbe = {
      disks: DISKS.map((d) => (d.name === 'vdb' ? { ...d, wwn: 'naa.5000c500a1b2c3d4' } : d)),
      bootDisks: [],
    };
    expect(decideScope({ vg: 'vgroup', systemIds: ['naa.5000c500a1b2c3d4'], pvs, disks }).devices).toEqual([
      '/dev/vdb1',
    ]);
  });

  it('then the VG under the running root, over the tags', () => {
    const s = decideScope({
      vg: 'vgroup',
      systemIds: [],
      pvs: tagged(FOREIGN?.vgUuid),
      disks: probe(['vdb']),
    });
    expect(s.devices).toEqual(['/dev/vdb1']);
    expect(s.chosenBy).toBe('it holds the running root file system');
  });

  it("zshield's tags are no proof (the other box's disk may be a zshield disk too): refused, the config must name the disk", () => {
    expect(() =>
      decideScope({ vg: 'vgroup', systemIds: [], pvs: tagged(SYS?.vgUuid), disks: probe(['vda']) }),
    ).toThrow(/cannot tell which is this system's \(name the system disk in the config/);
  });

  it('refuses when it cannot be told without doubt, naming both VGs and their disks', () => {
    const both = pvs.map((p) => ({ ...p, vgTags: ['zshield_boot_uuid=x'] }));
    for (const input of [
      { systemIds: [], pvs, disks: probe(['vda']) },
      { systemIds: [], pvs: both, disks: probe([]) },
      // The configured disk is not attached: the other VG is not taken instead.
      { systemIds: ['ZS-ELSEWHERE'], pvs, disks: probe(['vdb']) },
    ]) {
      let err: unknown;
      try {
        decideScope({ vg: 'vgroup', ...input });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RefusedError);
      expect((err as RefusedError).exitCode).toBe(6);
      const msg = (err as Error).message;
      expect(msg).toMatch(/^2 volume groups are named vgroup: /);
      expect(msg).toContain(`vgroup (uuid ${SYS?.vgUuid}) on /dev/vdb (serial ZS-SYSTEM-HDD)`);
      expect(msg).toContain(`vgroup (uuid ${FOREIGN?.vgUuid}) on /dev/vdc (serial ZS-FOREIGN-HDD)`);
      expect(msg).not.toContain('\n');
      expect((err as RefusedError).hint).toContain('disks.system.serial');
    }
  });

  it('the refusal reaches the first LVM command, before it runs', async () => {
    const { runner, inner } = scoped(TWO, { systemIds: [] });
    await expect(runner.run(vgsCommand('vgroup'))).rejects.toThrow(/cannot tell which is this system's/);
    expect(inner.transcript()).toEqual(['$ pvs --reportformat json -o pv_name,vg_name,vg_uuid,vg_tags']);
  });
});

describe('what the operator sees', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  it('the plan says LVM commands are restricted and to which devices; the steps run with --devices', async () => {
    const { runner, inner } = scoped(TWO);
    const ctx = testContext({ runner, dir, clock: new FakeClock(new Date(0)) });
    const plan: Plan = {
      title: 'Backup',
      notes: [],
      steps: [
        {
          title: 'drop the old snapshot',
          command: { file: 'lvremove', args: ['--yes', 'vgroup/snap0'], mutates: true },
        },
      ],
    };
    await runPlan(ctx, plan, { confirm: 'none' });
    expect(ctx.printed.join('\n')).toContain(
      `note: LVM commands see only /dev/vdb1 (--devices): vgroup there is the system's (on the system disk the config names (ZS-SYSTEM-HDD)); vgroup (uuid ${FOREIGN?.vgUuid}) on /dev/vdc (serial ZS-FOREIGN-HDD) is another disk's and is never touched`,
    );
    expect(ctx.printed.join('\n')).toContain('$ lvremove --yes vgroup/snap0');
    expect(inner.transcript().at(-1)).toBe('$ lvremove --devices /dev/vdb1 --yes vgroup/snap0');

    const json = testContext({ runner, dir, clock: new FakeClock(new Date(0)) });
    await runPlan(json, plan, { confirm: 'none', show: 'json' });
    expect(JSON.parse(json.printed[0]!).lvmScope.devices).toEqual(['/dev/vdb1']);
  });

  it('a plan without LVM commands says nothing of it; with one VG of the name neither', async () => {
    const { runner } = scoped(TWO);
    const ctx = testContext({ runner, dir, clock: new FakeClock(new Date(0)) });
    await runPlan(
      ctx,
      {
        title: 'Copy',
        notes: [],
        steps: [{ title: 'x', command: { file: 'true', args: [], mutates: true } }],
      },
      { confirm: 'none' },
    );
    const one = testContext({ runner: scoped(ONE).runner, dir, clock: new FakeClock(new Date(0)) });
    await runPlan(
      one,
      {
        title: 'Backup',
        notes: [],
        steps: [{ title: 'x', command: { file: 'lvremove', args: [], mutates: true } }],
      },
      { confirm: 'none', show: 'json' },
    );
    expect(ctx.printed.join('\n')).not.toContain('--devices');
    expect(JSON.parse(one.printed[0]!)).not.toHaveProperty('lvmScope');
  });

  it('status notes the other VG (disk, uuid) and reports the system VG', async () => {
    const inner = new FakeLvm({ lvs: [{ name: 'lv-root', attr: '-wi-a-----', size: GiB }] }).install(
      new RecordingRunner(),
    );
    const { runner } = scoped(TWO, {}, inner);
    const ctx = testContext({ runner, dir, clock: new FakeClock(new Date(0)) });
    const report = await gatherStatus(ctx);
    expect(report.vg?.name).toBe('vgroup');
    expect(report.foreignVgs).toEqual([
      { name: 'vgroup', uuid: FOREIGN?.vgUuid, disks: ['/dev/vdc (serial ZS-FOREIGN-HDD)'] },
    ]);
    expect(formatStatus(report)).toContain(
      `other disk:    /dev/vdc (serial ZS-FOREIGN-HDD) holds another volume group named vgroup (uuid ${FOREIGN?.vgUuid}): not this system's, never touched`,
    );
    expect(
      inner
        .transcript()
        .filter((l) => /^\$ (vgs|lvs) /.test(l))
        .every((l) => l.includes('--devices /dev/vdb1')),
    ).toBe(true);
  });

  it("the factory reset's target check sees every PV and names the same-named VG on another disk", async () => {
    const { runner, inner } = scoped(TWO);
    const ctx = testContext({ runner, dir, clock: new FakeClock(new Date(0)) });
    const all = await realFactoryProbes.pvs(ctx);
    expect(all.map((p) => p.pvName)).toEqual(parsePvs(TWO).map((p) => p.pvName));
    expect(inner.transcript().every((l) => !l.includes('--devices'))).toBe(true);
    // Through the scope, only the system's PVs are seen: what the restore and /boot lookups want.
    expect((await probePvs(runner)).map((p) => p.pvName)).toEqual(['/dev/vdb1']);

    const config = defaultConfig();
    config.disks.system.serial = 'ZS-SYSTEM-HDD';
    expect(() =>
      planFactoryReset({
        config,
        disks: { disks: DISKS, bootDisks: ['vda'] },
        pvs: all,
        golden: {
          grubInstall: 'grub-install',
          grubMkconfig: 'grub-mkconfig',
          grubCfg: '/boot/grub/grub.cfg',
          initramfsTool: null,
          fstab: '',
          defaultGrub: '',
          goldenUuid: 'x',
          rootUsedBytes: 1,
          bootUsedBytes: 1,
        },
        bootUuid: 'u',
        now: new Date(0),
      }),
    ).toThrow(
      `a volume group named vgroup already exists on /dev/vdc1 (VG uuid ${FOREIGN?.vgUuid}, disk /dev/vdc (4.0 GiB, serial ZS-FOREIGN-HDD, QEMU)), not on the target: two VGs of that name would collide at boot`,
    );
  });
});
