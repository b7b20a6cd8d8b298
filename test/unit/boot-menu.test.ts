// The boot menu's restore point: the pure text from the probed VG, the choice of the system disk's
// /boot, and refreshBootMenu writing the env block that GRUB's load_env reads (checked with the
// host's grub-editenv).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type BlockRow,
  MENU_FILE,
  NONE_AVAILABLE,
  bootMenuEnv,
  chooseSystemBoot,
  formatMenuTime,
  parseLsblk,
  restorePointText,
  withBlkid,
} from '../../src/restore-point/boot-menu.js';
import { refreshBootMenu } from '../../src/restore-point/boot-menu-refresh.js';
import { runBackup } from '../../src/restore-point/backup.js';
import { DRY_RUN_DONE } from '../../src/plan/plan.js';
import { deviceOf } from '../../src/system/mounts.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { namesOf } from '../../src/names/snapshots.js';
import { type VgState, parseLvs, parseVgs } from '../../src/system/lvm.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { EXTENT, GiB, type LvRow, epoch, lvsJson, vgsJson } from './helpers/lvm-json.js';

const names = namesOf({ lvm: { vg: 'vgroup', rootLv: 'lv-root', snapshot: 'snap0' } });
const nov29 = new Date(2026, 10, 29, 3, 0); // local time
const nov30 = new Date(2026, 10, 30, 3, 0);

const root: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 3 * GiB };
const snap = (name: string, at: Date, reason: string, attr = 'swi-a-s---'): LvRow => ({
  name,
  attr,
  size: GiB,
  origin: 'lv-root',
  snapPercent: '1.00',
  tags: [`zshield_reason=${reason}`, `zshield_time=${epoch(at)}`, 'zshield_boot=captured'],
});
function vg(lvs: LvRow[], tags: string[] = []): VgState {
  return {
    vg: parseVgs(
      vgsJson([{ name: 'vgroup', extentBytes: EXTENT, extentCount: 7679, freeExtents: 100, tags }]),
    )[0]!,
    lvs: parseLvs(lvsJson('vgroup', lvs)),
  };
}
const text = (lvs: LvRow[], tags: string[] = []) => restorePointText(vg(lvs, tags), names);

describe('the restore point in the boot menu (pure)', () => {
  it('names the valid snap0 by its local time and reason', () => {
    expect(formatMenuTime(nov29)).toBe('2026-11-29 03:00');
    expect(text([root, snap('snap0', nov29, 'daily')])).toBe('2026-11-29 03:00, daily');
    expect(bootMenuEnv(vg([root, snap('snap0', nov30, 'pre-upgrade')]), names)).toEqual({
      zshield_restore_point: '2026-11-30 03:00, pre-upgrade',
    });
  });

  it('reads "none available" where a restore would refuse: no VG, no lv-root, no snap0, invalid, merging, restore, factory reset or off-box restore under way', () => {
    expect(restorePointText(null, names)).toBe(NONE_AVAILABLE);
    expect(text([snap('snap0', nov29, 'daily')])).toBe(NONE_AVAILABLE);
    expect(text([root])).toBe(NONE_AVAILABLE);
    expect(text([root, snap('snap0', nov29, 'daily', 'swi-I-s---')])).toBe(NONE_AVAILABLE);
    expect(text([{ ...root, attr: 'Owi-aos---' }, snap('snap0', nov29, 'daily', 'Swi-a-s---')])).toBe(
      NONE_AVAILABLE,
    );
    expect(text([root, snap('snap0', nov29, 'daily')], ['zshield_restoring'])).toBe(NONE_AVAILABLE);
    expect(text([root, snap('snap0', nov29, 'daily')], ['zshield_factory_reset'])).toBe(NONE_AVAILABLE);
    expect(text([root, snap('snap0', nov29, 'daily')], ['zshield_offbox_restore'])).toBe(NONE_AVAILABLE);
    // A snap0 that is not a snapshot of lv-root is nothing a restore merges.
    expect(text([root, { name: 'snap0', attr: '-wi-a-----', size: GiB }])).toBe(NONE_AVAILABLE);
  });

  it('shows a cut rotation as its repair leaves it: a complete snap0-next is the restore point, and says the rotation was cut', () => {
    // Cut after snap0-next was made, before the old snap0 was removed: the repair keeps the newer.
    expect(
      text([root, snap('snap0', nov29, 'daily'), snap('snap0-next', nov30, 'daily')], ['zshield_rotating']),
    ).toBe('2026-11-30 03:00, daily, rotation cut short');
    // Cut after the old snap0 was removed, before the rename.
    expect(text([root, snap('snap0-next', nov30, 'manual')], ['zshield_rotating'])).toBe(
      '2026-11-30 03:00, manual, rotation cut short',
    );
    // An invalid snap0-next is discarded by the repair: the old snap0 stays the restore point.
    expect(
      text(
        [root, snap('snap0', nov29, 'daily'), snap('snap0-next', nov30, 'daily', 'swi-I-s---')],
        ['zshield_rotating'],
      ),
    ).toBe('2026-11-29 03:00, daily, rotation cut short');
    // Drop-first rotation cut before the new snapshot existed: nothing to restore.
    expect(text([root], ['zshield_rotating'])).toBe(`${NONE_AVAILABLE}, rotation cut short`);
  });

  it('keeps a title plain: a reason tag with other characters is masked; missing labels are said', () => {
    const odd = {
      ...snap('snap0', nov29, 'daily'),
      tags: ['zshield_reason=a"b$c', `zshield_time=${epoch(nov29)}`],
    };
    expect(text([root, odd])).toBe('2026-11-29 03:00, a?b?c');
    const bare = { ...snap('snap0', nov29, 'daily'), tags: [], time: epoch(nov30) };
    expect(text([root, bare])).toBe('2026-11-30 03:00, reason unknown'); // LVM's creation time
  });
});

describe('the system disk’s /boot', () => {
  // lsblk -J -l -p -o NAME,PKNAME,UUID,FSTYPE,LABEL,MOUNTPOINT, as util-linux 2.38 prints it.
  const lsblk = JSON.stringify({
    blockdevices: [
      { name: '/dev/vda', pkname: null, uuid: null, fstype: null, label: null, mountpoint: null },
      {
        name: '/dev/vda1',
        pkname: '/dev/vda',
        uuid: 'gold-uuid',
        fstype: 'ext4',
        label: 'zs-golden',
        mountpoint: '/',
      },
      { name: '/dev/vdb', pkname: null, uuid: null, fstype: null, label: null, mountpoint: null },
      {
        name: '/dev/vdb1',
        pkname: '/dev/vdb',
        uuid: 'sys-boot',
        fstype: 'ext4',
        label: 'zs-boot',
        mountpoint: null,
      },
      {
        name: '/dev/vdb2',
        pkname: '/dev/vdb',
        uuid: 'pv-uuid',
        fstype: 'LVM2_member',
        label: null,
        mountpoint: null,
      },
      { name: '/dev/vdc', pkname: null, uuid: null, fstype: null, label: null, mountpoint: null },
      {
        name: '/dev/vdc1',
        pkname: '/dev/vdc',
        uuid: 'other-boot',
        fstype: 'ext4',
        label: 'zs-boot',
        mountpoint: null,
      },
      {
        name: '/dev/vdc2',
        pkname: '/dev/vdc',
        uuid: 'other-pv',
        fstype: 'LVM2_member',
        label: null,
        mountpoint: null,
      },
    ],
  });
  const rows = parseLsblk(lsblk);

  it('is a file system on the disk of the VG’s PVs, by recorded UUID, else by the factory reset’s label; never on another disk', () => {
    expect(chooseSystemBoot(rows, ['/dev/vdb2'], { uuid: 'sys-boot', bootDir: '/boot' })?.name).toBe(
      '/dev/vdb1',
    );
    expect(chooseSystemBoot(rows, ['/dev/vdb2'], { uuid: null, bootDir: '/boot' })?.name).toBe('/dev/vdb1');
    // The UUID of another disk's /boot is not taken from there.
    expect(chooseSystemBoot(rows, ['/dev/vdb2'], { uuid: 'other-boot', bootDir: '/boot' })?.name).toBe(
      '/dev/vdb1',
    );
    expect(chooseSystemBoot(rows, ['/dev/vdc2'], { uuid: null, bootDir: '/boot' })?.name).toBe('/dev/vdc1');
    // No PV known (no VG): nothing.
    expect(chooseSystemBoot(rows, [], { uuid: 'sys-boot', bootDir: '/boot' })).toBeNull();
  });

  it('takes UUID, type and label from blkid where lsblk had none (no udev database)', () => {
    const bare = rows.map((r) => ({ ...r, uuid: null, fstype: null, label: null }));
    // blkid -c /dev/null -o export, as util-linux 2.38 prints it in the bench guest.
    const blkid = [
      'DEVNAME=/dev/vdb2\nUUID=adhCYw-NcPl-OkOM-Knik-J882-wf9a-iiJpQF\nTYPE=LVM2_member\nPARTUUID=620a000a-02',
      'DEVNAME=/dev/vdb1\nLABEL=zs-boot\nUUID=sys-boot\nBLOCK_SIZE=4096\nTYPE=ext4\nPARTUUID=620a000a-01',
      'DEVNAME=/dev/vda1\nLABEL=zs-golden\nUUID=gold-uuid\nBLOCK_SIZE=4096\nTYPE=ext4\nPARTUUID=aa84c1a6-01',
      '',
    ].join('\n\n');
    const filled = withBlkid(bare, blkid);
    expect(filled.find((r) => r.name === '/dev/vdb1')).toMatchObject({
      uuid: 'sys-boot',
      fstype: 'ext4',
      label: 'zs-boot',
    });
    expect(filled.find((r) => r.name === '/dev/vda1')).toMatchObject({ uuid: 'gold-uuid', mountpoint: '/' });
    expect(filled.find((r) => r.name === '/dev/vdc1')).toMatchObject({ uuid: null, fstype: null });
    expect(chooseSystemBoot(filled, ['/dev/vdb2'], { uuid: 'sys-boot', bootDir: '/boot' })?.name).toBe(
      '/dev/vdb1',
    );
  });

  it('without the label, the file system mounted at /boot on that disk; none when the disk has no such file system', () => {
    const hand: BlockRow[] = rows.map((r) =>
      r.name === '/dev/vdb1' ? { ...r, label: null, mountpoint: '/boot' } : r,
    );
    expect(chooseSystemBoot(hand, ['/dev/vdb2'], { uuid: null, bootDir: '/boot' })?.name).toBe('/dev/vdb1');
    const seed = rows.filter((r) => r.name !== '/dev/vdb1'); // the seed's layout: only the PV
    expect(chooseSystemBoot(seed, ['/dev/vdb2'], { uuid: null, bootDir: '/boot' })).toBeNull();
  });
});

describe('refreshBootMenu', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  function setup(lvs: LvRow[]) {
    const t = tempDir();
    cleanup = t.cleanup;
    const runner = new RecordingRunner()
      .on('vgs', {
        stdout: vgsJson([{ name: 'vgroup', extentBytes: EXTENT, extentCount: 7679, freeExtents: 100 }]),
      })
      .on('lvs', { stdout: lvsJson('vgroup', lvs) });
    const ctx = testContext({ runner, dir: t.dir, clock: new FakeClock(nov30) });
    const bootDir = path.join(t.dir, 'sysboot');
    mkdirSync(bootDir);
    return { ctx, runner, bootDir, file: path.join(bootDir, MENU_FILE) };
  }
  const list = (file: string) => execFileSync('grub-editenv', [file, 'list'], { encoding: 'utf8' });

  it('writes the restore point into the /boot it is given, as a block grub-editenv lists; probes only LVM', async () => {
    const { ctx, runner, bootDir, file } = setup([root, snap('snap0', nov29, 'daily')]);
    await refreshBootMenu(ctx, { bootDir });
    expect(list(file)).toBe('zshield_restore_point=2026-11-29 03:00, daily\n');
    expect(runner.calls.map((c) => c.argv[0])).toEqual(['vgs', 'lvs']);
    expect(ctx.log.lines).toContain(
      `info: boot menu: "Recover to latest backup (2026-11-29 03:00, daily)" (${file})`,
    );
  });

  it('never fails its caller: a /boot that cannot be written is a warning, and the old block stays', async () => {
    const { ctx, bootDir, file } = setup([root]);
    await refreshBootMenu(ctx, { bootDir });
    expect(list(file)).toBe('zshield_restore_point=none available\n');
    // A file where the folder should be: the write fails.
    const blocked = path.join(bootDir, 'blocked');
    writeFileSync(blocked, 'x');
    await expect(refreshBootMenu(ctx, { bootDir: blocked })).resolves.toBeUndefined();
    expect(ctx.log.lines.at(-1)).toMatch(/^warn: the boot menu was not updated: /);
    expect(list(file)).toBe('zshield_restore_point=none available\n');
  });

  it('a dry run shows the refresh as a plan (where it writes), ends with the one "nothing was changed" line, and writes nothing', async () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const runner = new RecordingRunner(true);
    const ctx = testContext({ runner, dir: t.dir, clock: new FakeClock(nov30), dryRun: true });
    await refreshBootMenu(ctx, { bootDir: t.dir });
    const file = path.join(t.dir, MENU_FILE);
    expect(ctx.printed).toHaveLength(2);
    expect(ctx.printed[0]).toBe(
      [
        "Refresh the boot menu's restore point (vgroup)",
        '  note: the menu entry reads the restore point of vgroup as it is when the file is written',
        `  1. write the restore point into the boot menu's file ${file}`,
        `     (zshield writes ${file})`,
      ].join('\n'),
    );
    expect(ctx.printed[1]).toBe(DRY_RUN_DONE);
    // The VG is read when the write runs: a dry run reads nothing and tries no change.
    expect(runner.calls).toEqual([]);
    expect(existsSync(file)).toBe(false);
  });

  it('the daemon’s ticks (onlyIfChanged) write once per change of the text, from the state they probed', async () => {
    const { ctx, runner, bootDir, file } = setup([root, snap('snap0', nov29, 'daily')]);
    const before = vg([root, snap('snap0', nov29, 'daily')]);
    await refreshBootMenu(ctx, { bootDir, state: before, onlyIfChanged: true });
    await refreshBootMenu(ctx, { bootDir, state: before, onlyIfChanged: true });
    expect(ctx.log.lines.filter((l) => l.startsWith('info: boot menu:'))).toHaveLength(1);
    // The kernel invalidated snap0 (it overflowed): the next tick says so.
    await refreshBootMenu(ctx, {
      bootDir,
      state: vg([root, snap('snap0', nov29, 'daily', 'swi-I-s---')]),
      onlyIfChanged: true,
    });
    expect(list(file)).toBe('zshield_restore_point=none available\n');
    expect(runner.calls).toEqual([]); // the state came from the tick
  });
});

// A separate /boot, as the running system disk has: a folder on another file system than / (a
// tmpfs at /dev/shm), so the refresh finds it as config.boot.dir without being told.
const SEPARATE = '/dev/shm';
const separateBoot = (() => {
  const a = deviceOf(SEPARATE);
  const b = deviceOf('/');
  return !!a && !!b && (a.major !== b.major || a.minor !== b.minor);
})();

describe.skipIf(!separateBoot)('the refresh as a plan nested in the backup', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  function setup(dryRun: boolean) {
    const t = tempDir();
    const boot = mkdtempSync(path.join(SEPARATE, 'zshield-unit-boot-'));
    cleanup = () => {
      t.cleanup();
      rmSync(boot, { recursive: true, force: true });
    };
    const lvm = new FakeLvm({ lvs: [root, snap('snap0', nov29, 'daily')] });
    lvm.createTime = epoch(nov30);
    const runner = lvm.install(new RecordingRunner(dryRun));
    const ctx = testContext({
      runner,
      dir: t.dir,
      clock: new FakeClock(nov30),
      dryRun,
      edit: (c) => {
        c.boot.dir = boot;
      },
    });
    return { ctx, runner, lvm, file: path.join(boot, MENU_FILE) };
  }

  it('a real backup writes the restore point the rotation made (the VG read after it); its plan is in the log', async () => {
    const { ctx, file } = setup(false);
    await runBackup(ctx, { reason: 'manual', waitMs: 0 });
    expect(execFileSync('grub-editenv', [file, 'list'], { encoding: 'utf8' })).toBe(
      `zshield_restore_point=${formatMenuTime(nov30)}, manual\n`,
    );
    expect(ctx.log.lines).toContain("info: Refresh the boot menu's restore point (vgroup)");
    expect(ctx.log.lines).toContainEqual(
      expect.stringMatching(/^info: \[1\/1\] write the restore point into the boot menu's file /),
    );
  });

  it('a dry run of the backup shows the rotation, then the refresh\'s plan, then one "nothing was changed" line; nothing is written', async () => {
    const { ctx, runner, file } = setup(true);
    expect(await runBackup(ctx, { reason: 'manual', waitMs: 0 })).toBeNull();
    expect(ctx.printed).toHaveLength(3);
    expect(ctx.printed[0]).toMatch(/^Back up vgroup\/lv-root to snap0 \(reason: manual\)\n/);
    expect(ctx.printed[1]).toMatch(/^Refresh the boot menu's restore point \(vgroup\)\n/);
    expect(ctx.printed[1]).toContain(`(zshield writes ${file})`);
    expect(ctx.printed[2]).toBe(DRY_RUN_DONE);
    expect(runner.calls.every((c) => !c.mutates && !c.skipped)).toBe(true);
    expect(existsSync(file)).toBe(false);
  });

  it('--json: the dry run keeps stdout to the one document, the refresh is not a second one', async () => {
    const { ctx, file } = setup(true);
    await runBackup(ctx, { reason: 'manual', waitMs: 0, json: true });
    expect(ctx.printed).toHaveLength(1);
    expect(JSON.parse(ctx.printed[0]!)).toMatchObject({
      title: 'Back up vgroup/lv-root to snap0 (reason: manual)',
    });
    expect(ctx.log.lines).toContain(`info: ${DRY_RUN_DONE}`);
    expect(existsSync(file)).toBe(false);
  });
});

describe('grub/40_zshield (the menu code grub-mkconfig writes)', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  it('reads the restore point with load_env, whitelisted, from the paired UUID; GRUB’s own checker accepts it', () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const settings = path.join(t.dir, 'zshield-grub');
    writeFileSync(
      settings,
      'ZSHIELD_GOLDEN_UUID=0f0f0f0f-1111-4222-8333-444455556666\nZSHIELD_GOLDEN_KERNEL=/boot/vmlinuz-6.1\nZSHIELD_GOLDEN_INITRD=/boot/initrd.img-6.1\n',
    );
    const script = path.resolve(__dirname, '../../grub/40_zshield');
    const cfg = execFileSync('sh', [script], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ZSHIELD_GRUB_DEFAULTS: settings,
        pkgdatadir: '/usr/share/grub',
        GRUB_CMDLINE_LINUX: 'console=ttyS0',
      },
    });
    const file = path.join(t.dir, 'grub.cfg');
    writeFileSync(file, cfg);
    execFileSync('grub-script-check', [file]); // throws on a syntax error
    const v = (name: string) => `\${${name}}`; // a GRUB variable reference, as written in grub.cfg
    expect(cfg).toContain('set zshield_restore_point="unknown"');
    // Only the named variables are taken from either file (never root, prefix, ...).
    expect(cfg).toContain(
      `load_env -f "${v('prefix')}/zshield-system.env" zshield_menu_uuid zshield_menu_path`,
    );
    expect(cfg).toContain(`search --no-floppy --fs-uuid --set=zshield_menu_dev "${v('zshield_menu_uuid')}"`);
    expect(cfg).toContain(
      `load_env -f "(${v('zshield_menu_dev')})${v('zshield_menu_path')}" zshield_restore_point`,
    );
    expect(cfg).toMatch(
      /^menuentry 'Recover to latest backup'" \(\$\{zshield_restore_point\}\)" --class recovery --id zshield-latest \{$/m,
    );
    expect(cfg).toMatch(/^menuentry 'Recover to factory default' --class recovery --id zshield-factory \{$/m);
    expect(cfg).toContain(
      'linux\t/boot/vmlinuz-6.1 root=UUID=0f0f0f0f-1111-4222-8333-444455556666 ro console=ttyS0 zshield_recovery=latest',
    );
  });
});
