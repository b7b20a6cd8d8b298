import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Appliance } from '../bench/appliance.js';
import {
  bootAppliance,
  firstErrLine,
  DAY_S,
  SHIM_DIR,
  SHIM_PATH,
  freshWorkDir,
  holdTool,
  releaseTool,
  untilEntered,
  guestDay,
  isoOf,
  lv,
  lvs,
  makeSeedLayout,
  setGuestClock,
  writeConfig,
  tag,
} from './lib.js';

// Backups, rotation, the lock, crash repair, snapshot health and the daemon, driven through the real
// single binary against real LVM in the virtual appliance. One boot; each case makes what it needs
// (a snap0 to rotate, a clock moved from the guest's own time), so any case passes run alone
// (`vitest run test/appliance/backup.test.ts -t NAME`).

/** A restore point to rotate, merge or keep: the one the cases before left, else a new one. */
async function ensureSnap0(vm: Appliance): Promise<void> {
  if (await lv(vm, 'snap0')) return;
  const r = await vm.run(['zshield', 'backup']);
  if (r.code !== 0) throw vm.failure(`the backup a case needs failed (exit ${r.code}): ${r.stderr}`);
}

describe('backups on the virtual appliance', () => {
  let vm: Appliance;

  beforeAll(async () => {
    vm = await bootAppliance(freshWorkDir('backup'));
    await makeSeedLayout(vm);
    await writeConfig(vm, { log: { file: '/var/log/zshield/zshield.log', level: 'debug' } });
  });
  afterAll(async () => {
    await vm?.kill();
  });
  // Each scenario writes the config it needs; a failed one must not leave its config (or slow
  // tool wrappers) to the next.
  afterEach(async () => {
    if (!vm?.running) return;
    await writeConfig(vm, { log: { file: '/var/log/zshield/zshield.log', level: 'debug' } });
    await vm.sh(`rm -rf ${SHIM_DIR}`);
  });

  it('dry-run shows the plan and changes nothing', async () => {
    const before = await lvs(vm);
    const r = await vm.run(['zshield', 'backup', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('there is no snap0 yet');
    expect(r.stdout).toMatch(/lvcreate --snapshot --name snap0/);
    expect(await lvs(vm)).toEqual(before);
  });

  it('the first backup makes snap0, labelled with its reason and time', async () => {
    const r = await vm.run(['zshield', 'backup']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/backup taken: vgroup\/snap0 \(manual\)/);
    const snap = await lv(vm, 'snap0');
    expect(snap?.lv_attr[0]).toBe('s');
    expect(snap?.origin).toBe('lv-root');
    expect(tag(snap, 'reason')).toBe('manual');
    // 20 % of the 1 GiB lv-root, rounded up to 4 MiB extents.
    expect(Number(snap?.lv_size)).toBe(208 * 1024 * 1024);

    const status = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(status.snapshot).toMatchObject({ present: true, valid: true, merging: false, reason: 'manual' });
    expect(status.health.level).toBe('ok');
    expect(status.lastBackup).toMatchObject({ result: 'ok', reason: 'manual' });
  });

  it('zshield_backup rotates: a new snapshot replaces the old, labelled pre-upgrade', async () => {
    await ensureSnap0(vm);
    const old = await lv(vm, 'snap0');
    const r = await vm.run(['zshield_backup']);
    expect(r.code, r.stderr).toBe(0);
    const rows = await lvs(vm);
    const snap = rows.find((l) => l.lv_name === 'snap0');
    expect(snap?.lv_uuid).not.toBe(old?.lv_uuid);
    expect(tag(snap, 'reason')).toBe('pre-upgrade');
    expect(rows.map((l) => l.lv_name).sort()).toEqual(['lv-data', 'lv-root', 'snap0']);
    // Made before the old one was dropped (the VG has room for both): the log shows the order.
    const log = (await vm.readFile('/var/log/zshield/zshield.log')).toString();
    const created = log.lastIndexOf('lvcreate --snapshot --name snap0-next');
    const removed = log.lastIndexOf('lvremove --yes vgroup/snap0');
    expect(created).toBeGreaterThan(0);
    expect(removed).toBeGreaterThan(created);
  });

  it('refuses clearly when the VG has too little space, and keeps the old snap0 valid', async () => {
    await ensureSnap0(vm);
    const old = await lv(vm, 'snap0');
    // Fill the VG: about 300 MiB stay free besides the old 208 MiB snap0.
    await vm.shOk('lvcreate -q -y -L 2300M -n filler vgroup');
    try {
      await writeConfig(vm, { snapshot: { size: '600M' } });
      const r = await vm.run(['zshield', 'backup']);
      expect(r.code).toBe(6);
      expect(firstErrLine(r)).toMatch(
        /^zshield: not enough space in VG vgroup for a new snap0: need 600 MiB, \d+ MiB free, \d+ MiB even without the old one; the old snap0 is kept$/,
      );
      const snap = await lv(vm, 'snap0');
      expect(snap?.lv_uuid).toBe(old?.lv_uuid);
      expect(snap?.lv_attr[4]).toBe('a');
    } finally {
      await vm.shOk('lvremove -q -y vgroup/filler');
    }
  });

  it('two backups at once: the second fails cleanly on the lock, or queues with --wait; never both rotate', async () => {
    // The first holds the lock inside lvremove until the test releases it: after the second has
    // failed on the lock and the third is seen waiting for it.
    await holdTool(vm, 'lvremove');
    // A rotation (not a first backup) is what reaches lvremove.
    await ensureSnap0(vm);
    const first = vm.spawn(`${SHIM_PATH} exec zshield backup`);
    await untilEntered(vm, 'lvremove');
    const second = await vm.run(['zshield', 'backup']);
    expect(second.code).toBe(7);
    expect(firstErrLine(second)).toMatch(
      /^zshield: LVM is locked by pid \d+ \(backup \(manual\), since .*\)$/,
    );
    const queued = vm.spawn('exec zshield backup --wait 600');
    for (;;) {
      if (/waiting for the LVM lock held by pid/.test((await queued.output()).stderr)) break;
      if (queued.finished) break; // its result is judged below
      await vm.shOk('sleep 0.5');
    }
    await releaseTool(vm, 'lvremove');
    const a = await first.wait();
    const b = await queued.wait();
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/waiting for the LVM lock held by pid/);
    expect((await lvs(vm)).map((l) => l.lv_name).sort()).toEqual(['lv-data', 'lv-root', 'snap0']);
  });

  it('a rotation killed after the new snapshot was made is finished by the next run', async () => {
    await ensureSnap0(vm); // a rotation (not a first backup) is what reaches lvremove
    await holdTool(vm, 'lvremove'); // never released: the job is killed inside it
    const job = vm.spawn(`${SHIM_PATH} exec zshield backup --reason daily`);
    await untilEntered(vm, 'lvremove');
    await job.kill('KILL');
    await job.wait();
    const halfDone = (await lvs(vm)).map((l) => l.lv_name).sort();
    expect(halfDone).toEqual(['lv-data', 'lv-root', 'snap0', 'snap0-next']);
    const next = await lv(vm, 'snap0-next');

    const status = await vm.run(['zshield', 'status']);
    expect(status.stdout).toMatch(/rotation: +INTERRUPTED/);

    const r = await vm.run(['zshield', 'backup']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/after repairing an interrupted rotation/);
    const rows = await lvs(vm);
    expect(rows.map((l) => l.lv_name).sort()).toEqual(['lv-data', 'lv-root', 'snap0']);
    expect(rows.find((l) => l.lv_name === 'snap0')?.lv_uuid).not.toBe(next?.lv_uuid);
    const vgTags = await vm.shOk('vgs --noheadings -o vg_tags vgroup');
    expect(vgTags.trim()).toBe('');
  });

  it('a drop-first rotation killed before the new snapshot exists is repaired by the daemon at start', async () => {
    // A VG with room for one 1000 MiB snapshot but not two: the old one goes first.
    await vm.shOk('lvcreate -q -y -L 1200M -n filler vgroup');
    try {
      await writeConfig(vm, { snapshot: { size: '1000M' }, daemon: { checkEverySeconds: 1 } });
      expect((await vm.run(['zshield', 'backup'])).code).toBe(0);
      await holdTool(vm, 'lvcreate'); // never released: the job is killed inside it
      const job = vm.spawn(`${SHIM_PATH} exec zshield backup`);
      await untilEntered(vm, 'lvcreate');
      await job.kill('KILL');
      await job.wait();
      expect(await lv(vm, 'snap0')).toBeUndefined();
      expect((await vm.shOk('vgs --noheadings -o vg_tags vgroup')).trim()).toBe('zshield_rotating');

      const daemon = vm.spawn('exec zshield daemon');
      await vm.shOk(
        'i=0; until lvs vgroup/snap0 >/dev/null 2>&1 && [ -z "$(vgs --noheadings -o vg_tags vgroup | tr -d " ")" ]; do sleep 1; i=$((i+1)); [ $i -lt 540 ] || exit 1; done',
        { timeoutMs: 570_000 },
      );
      await daemon.kill('TERM');
      const d = await daemon.wait();
      expect(d.code, d.stderr).toBe(0);
      expect(d.stderr).toMatch(/no snap0 is left after the repair: taking a backup now/);
      expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('repair');
    } finally {
      await vm.shOk('lvremove -q -y vgroup/filler');
    }
  });

  it('the daemon takes a catch-up backup at start and the daily one at the set time (moved clock)', async () => {
    await writeConfig(vm, { daemon: { dailyAt: '03:00', checkEverySeconds: 1, catchUp: true } });
    // The box was "off" over a 03:00: start the daemon at 09:00 on the guest's next day (every
    // restore point so far was made before that day's 03:00).
    const day = await guestDay(vm, 1);
    await setGuestClock(vm, day + 9 * 3600);
    const daemon = vm.spawn('exec zshield daemon');
    const snapTime = async () => Number(tag(await lv(vm, 'snap0'), 'time'));
    const until = async (pred: (t: number) => boolean, what: string) => {
      for (let i = 0; i < 120; i++) {
        if (pred(await snapTime())) return;
        await new Promise((r) => setTimeout(r, 1000));
      }
      throw vm.failure(`timed out waiting for ${what}`);
    };
    await until((t) => t >= day + 9 * 3600, 'the catch-up backup');
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('daily');

    const status = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(status.daemon.running).toBe(true);
    const next = day + DAY_S + 3 * 3600;
    expect(status.daemon.nextRun).toBe(isoOf(next));

    // Five seconds before the next 03:00.
    await setGuestClock(vm, next - 5);
    await until((t) => t >= next, 'the daily backup at 03:00');
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('daily');

    await daemon.kill('TERM');
    const d = await daemon.wait();
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).toMatch(/daemon stopped/);
    const after = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(after.daemon.running).toBe(false);
  });

  it('no backup while a merge is pending: the daemon skips, backup refuses', async () => {
    await ensureSnap0(vm);
    // A merge into an origin that is open is deferred to its next activation ("Delaying merge").
    await vm.shOk(
      'mkdir -p /mnt/root && mount /dev/vgroup/lv-root /mnt/root && lvconvert --merge -i 1 vgroup/snap0',
      {
        timeoutMs: 120_000,
      },
    );
    const r = await vm.run(['zshield', 'backup']);
    expect(r.code).toBe(6);
    expect(firstErrLine(r)).toBe('zshield: a merge of a snapshot into vgroup/lv-root is pending');
    const status = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(status.root.mergePending).toBe(true);
    expect(status.snapshot.merging).toBe(true);

    // The guest's next day, 09:00: that day's 03:00 backup is due (and skipped for the merge).
    await setGuestClock(vm, (await guestDay(vm, 1)) + 9 * 3600);
    const daemon = vm.spawn('exec zshield daemon');
    await vm.shOk(
      'i=0; until grep -q "daily backup skipped: a merge" /var/log/zshield/zshield.log; do sleep 1; i=$((i+1)); [ $i -lt 60 ] || exit 1; done',
      {
        timeoutMs: 90_000,
      },
    );
    await daemon.kill('TERM');
    expect((await daemon.wait()).code).toBe(0);
    expect(await lv(vm, 'snap0')).toBeDefined();

    // Let the merge finish: unmount and reactivate, as the next boot would.
    await vm.shOk(
      'umount /mnt/root && lvchange -an vgroup/lv-root && lvchange -ay vgroup/lv-root && i=0; while lvs vgroup/snap0 >/dev/null 2>&1; do sleep 1; i=$((i+1)); [ $i -lt 540 ] || exit 1; done',
      {
        timeoutMs: 180_000,
      },
    );
    const again = await vm.run(['zshield', 'backup']);
    expect(again.code, again.stderr).toBe(0);
  });

  it('an overflowed snapshot shows as invalid, with what to do', async () => {
    await writeConfig(vm, { snapshot: { size: '16M' } });
    expect((await vm.run(['zshield', 'backup'])).code).toBe(0);
    // Overwrite 64 MiB of lv-root: the 16 MiB copy-on-write store overflows and the kernel drops it.
    await vm.shOk(
      'dd if=/dev/urandom of=/dev/vgroup/lv-root bs=1M count=64 seek=256 oflag=direct 2>/dev/null; sync',
      {
        timeoutMs: 120_000,
      },
    );
    const snap = await lv(vm, 'snap0');
    expect(snap?.lv_attr[4]).toBe('I');
    const json = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(json.snapshot).toMatchObject({ present: true, valid: false });
    expect(json.health.level).toBe('error');
    const human = await vm.run(['zshield', 'status']);
    expect(human.stdout).toMatch(
      /health: +ERROR: vgroup\/snap0 is INVALID \(it overflowed\): it cannot be restored; run `zshield backup`/,
    );
    expect(human.stdout).toMatch(/restore point: snap0, INVALID/);
    // A new backup replaces the invalid one.
    await writeConfig(vm, {});
    expect((await vm.run(['zshield', 'backup'])).code).toBe(0);
    expect((await lv(vm, 'snap0'))?.lv_attr[4]).toBe('a');
  });

  it('bad input: a one-line error, a documented exit code, nothing changed', async () => {
    const before = await lvs(vm);
    const cases: { argv: string[]; code: number; line: RegExp; setup?: string; undo?: string }[] = [
      { argv: ['zshield', 'frobnicate'], code: 2, line: /^zshield: Unknown argument: frobnicate$/ },
      { argv: ['zshield', 'backup', '--colour'], code: 2, line: /^zshield: Unknown argument: colour$/ },
      {
        argv: ['zshield', 'backup', '--config', '/nonexistent.conf'],
        code: 3,
        line: /^zshield: config: \/nonexistent.conf: cannot read: ENOENT$/,
      },
      {
        argv: ['zshield', 'backup', '--config', '/tmp/broken.conf'],
        code: 3,
        setup: `printf '{ "lvm": { "vg": "vgroup", }' > /tmp/broken.conf`,
        line: /^zshield: config: \/tmp\/broken.conf:1:\d+: /,
      },
      {
        argv: ['zshield', 'backup', '--config', '/tmp/invalid.conf'],
        code: 3,
        setup: `echo '{"lvm":{"vg":"-bad"},"snapshot":{"size":"lots"},"colour":1}' > /tmp/invalid.conf`,
        line: /^zshield: config: \/tmp\/invalid.conf: .* \(and 2 more problem\(s\)\)$/,
      },
      {
        argv: ['zshield', 'backup', '--config', '/tmp/novg.conf'],
        code: 5,
        setup: `echo '{"lvm":{"vg":"nosuchvg"}}' > /tmp/novg.conf`,
        line: /^zshield: volume group "nosuchvg" not found$/,
      },
      {
        argv: ['zshield', 'backup', '--config', '/tmp/nolv.conf'],
        code: 5,
        setup: `echo '{"lvm":{"rootLv":"nosuchlv"},"layout":{"volumes":[{"name":"nosuchlv","size":"40%","mount":"/"}]}}' > /tmp/nolv.conf`,
        line: /^zshield: logical volume "vgroup\/nosuchlv" not found$/,
      },
      {
        argv: ['zshield', 'backup'],
        code: 4,
        // lvs, vgs, lvcreate... are links to lvm: hide it and they are all gone.
        setup: 'command -v lvm > /tmp/lvm.path && mv "$(cat /tmp/lvm.path)" /tmp/lvm.hidden',
        undo: 'mv /tmp/lvm.hidden "$(cat /tmp/lvm.path)"',
        line: /^zshield: required tool not found: lvs, vgs$/,
      },
    ];
    for (const c of cases) {
      if (c.setup) await vm.shOk(c.setup);
      let r: Awaited<ReturnType<Appliance['run']>>;
      try {
        r = await vm.run(c.argv);
      } finally {
        if (c.undo) await vm.shOk(c.undo);
      }
      expect({ argv: c.argv, code: r.code }).toEqual({ argv: c.argv, code: c.code });
      expect(firstErrLine(r)).toMatch(c.line);
    }
    const invalid = await vm.run(['zshield', 'config', 'check', '--config', '/tmp/invalid.conf']);
    expect(invalid.code).toBe(3);
    expect(invalid.stderr).toMatch(/lvm\.vg: not a valid LVM name/);
    expect(invalid.stderr).toMatch(/snapshot\.size: "lots" is not a size/);
    expect(invalid.stderr).toMatch(/unknown setting\(s\): colour/);
    expect(await lvs(vm)).toEqual(before);
  });
});
