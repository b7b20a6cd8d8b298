import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import { ensureBench } from '../bench/bench-env.js';
import { setNextBootEntry, withImagePartition } from '../bench/disk-images.js';
import {
  freshWorkDir,
  lv,
  tag,
  writeConfig,
  GLOBAL_SHIM_DIR,
  installShim,
  removeShim,
} from '../appliance/lib.js';
import {
  CONFIG,
  DISKS,
  FROM_GOLDEN,
  FROM_SYSTEM,
  GOLDEN,
  STARTING_BOOT_UNIT,
  SYSTEM,
  copyImage,
  imageOf,
  prepareGolden,
  systemState,
  waitJournal,
} from '../appliance/systemd-lib.js';

// zshield.service under systemd on the system disk a factory reset made (the bench's systemd
// flavour; the boot paths are test/appliance/systemd.test.ts, in the gate): the daily backup on a
// moved clock, reload, `systemctl stop` during a backup, and a restore from the golden menu whose
// merge a power cut interrupts, finished by the system disk's next boot. Outside the gate (about
// 8 minutes under TCG): `vitest run --project appliance-long test/appliance-long/systemd-daemon.test.ts`.
// The power cut and the stop come at states the test observes (shims that hold lvconvert and
// lvcreate and say so), never after a guessed delay.

/** Holds the daily backup's lvcreate while /run/bench-hold exists, until /run/bench-go does. */
const LVCREATE_SHIM = `#!/bin/sh
# bench shim (test/appliance-long/systemd-daemon.test.ts): hold lvcreate while the test asks
if [ -e /run/bench-hold ]; then
  echo "$*" >/run/bench-lvcreate-held
  while [ ! -e /run/bench-go ]; do sleep 0.2; done
fi
exec /usr/sbin/lvcreate "$@"
`;

/**
 * On the golden medium: runs the merge (zshield's `lvconvert --merge -i 1`) and, at its first
 * progress report below 100 % (the merge committed and under way in the kernel), suspends the
 * merging origin (the kernel stops a snapshot merge at suspend) and holds, saying on the console
 * how far the merge got: the test cuts the power there, in the middle of the merge. (Suspending
 * right after a backgrounded lvconvert raced the merge: a fast one was done before the suspend.)
 */
const LVCONVERT_SHIM = `#!/bin/sh
# bench shim (test/appliance-long/systemd-daemon.test.ts): freeze a merge part-way for a power cut
case " $* " in *" --merge "*) ;; *) exec /usr/sbin/lvconvert "$@" ;; esac
/usr/sbin/lvconvert "$@" | while IFS= read -r line; do
  printf '%s\\n' "$line"
  case $line in
  *Merged:*100.00%*) echo 'bench-shim: the merge ended before its cut' >/dev/console ;;
  *Merged:*)
    dmsetup suspend vgroup-lv--root
    echo "bench-shim: merge held: $(dmsetup status vgroup-lv--root)" >/dev/console
    exec sleep infinity ;;
  esac
done
`;

describe('zshield.service under systemd: daily backup, stop during a backup, a merge cut by a power cut', () => {
  let prepared: string;
  let systemDir: string;
  let vm: Appliance | undefined;

  beforeAll(async () => {
    await ensureBench('systemd');
    prepared = freshWorkDir('systemd-daemon-golden');
    await prepareGolden(prepared);
    setNextBootEntry(prepared, 'golden', 'zshield-factory');
    const log = await Appliance.bootUntilExit({
      workDir: prepared,
      disks: DISKS,
      boot: FROM_GOLDEN,
      timeoutMs: 900_000,
    });
    expect(log).toMatch(/factory reset done in \d+ s/);
  }, 1_800_000);
  afterEach(async () => {
    await vm?.kill();
    vm = undefined;
  });

  it('reload re-reads the config; the daily backup on a moved clock; stop waits for a running backup', async () => {
    systemDir = freshWorkDir('systemd-daemon');
    copyImage(imageOf(prepared, GOLDEN), systemDir, GOLDEN);
    copyImage(imageOf(prepared, SYSTEM), systemDir, SYSTEM);
    const sys = await Appliance.boot({
      workDir: systemDir,
      disks: DISKS,
      boot: FROM_SYSTEM,
      timeoutMs: 300_000,
    });
    vm = sys;
    expect(await systemState(sys)).toMatch(/^(running|degraded)$/);
    expect(await sys.shOk('systemctl is-active zshield')).toBe('active\n');
    // The lvcreate shim goes first on the PATH before the daemon's first backup (the runner keeps
    // the path it found for a tool); it passes through until /run/bench-hold exists.
    await installShim(sys, 'lvcreate', LVCREATE_SHIM);
    await waitJournal(sys, 'zshield', /daemon started \(pid \d+\)/);
    await writeConfig(sys, { ...CONFIG, daemon: { checkEverySeconds: 1 } });
    await sys.shOk('systemctl reload zshield');
    await waitJournal(sys, 'zshield', /daemon: config reloaded/);

    // Tomorrow 03:00:05: the daily backup is due on the next tick.
    await sys.shOk('date -s "$(date -d tomorrow +%F) 03:00:05" >/dev/null');
    await waitJournal(sys, 'zshield', /backup done: vgroup\/snap0 \(daily\)/);
    expect(tag(await lv(sys, 'snap0'), 'reason')).toBe('daily');

    // Another day; the backup's lvcreate is held by the shim until the test says go: `systemctl stop` asked then waits for the backup, SIGTERM going to the daemon only.
    await sys.shOk('touch /run/bench-hold; date -s "$(date -d tomorrow +%F) 03:00:05" >/dev/null');
    await waitFile(sys, '/run/bench-lvcreate-held');
    expect(await sys.shOk('cat /run/bench-lvcreate-held')).toMatch(/^--snapshot .*vgroup\/lv-root$/m);
    const stop = sys.spawn('systemctl stop zshield');
    await waitJournal(sys, 'zshield', /daemon: stop requested/);
    expect(await sys.shOk('systemctl is-active zshield; true')).toBe('deactivating\n');
    await sys.shOk('touch /run/bench-go');
    expect((await stop.wait({ timeoutMs: 300_000 })).code).toBe(0);
    const journal = await sys.shOk('journalctl -b -u zshield -o cat');
    const after = journal.slice(journal.lastIndexOf('daemon: stop requested'));
    expect(after).toMatch(/backup done: vgroup\/snap0 \(daily\)[\s\S]*daemon stopped/);
    expect(await sys.shOk('systemctl is-active zshield; true')).toBe('inactive\n');
    expect(await sys.shOk('systemctl show -p Result --value zshield')).toBe('success\n');
    const snap = await lv(sys, 'snap0');
    expect(tag(snap, 'reason')).toBe('daily');
    expect(snap?.lv_attr[4]).toBe('a');

    // For the restore below: a change after the backup, big enough that its merge takes a while.
    await removeShim(sys, 'lvcreate');
    await sys.shOk('rm /run/bench-hold');
    await sys.shOk(
      'echo lost > /etc/after-backup; dd if=/dev/urandom of=/opt/big bs=1M count=96 2>/dev/null; sync',
      {
        timeoutMs: 300_000,
      },
    );
    await sys.poweroff(120_000);
  });

  it('"Recover to latest backup" from the golden menu, power cut during the merge: the next boot of the system disk finishes it under systemd', async () => {
    const workDir = freshWorkDir('systemd-daemon-cut');
    copyImage(imageOf(prepared, GOLDEN), workDir, GOLDEN);
    copyImage(imageOf(systemDir, SYSTEM), workDir, SYSTEM);
    // The shim goes onto this copy of the medium (its root is read-only to the guest).
    withImagePartition(path.join(workDir, 'golden.img'), 1, (mnt) => {
      fs.mkdirSync(path.join(mnt, GLOBAL_SHIM_DIR), { recursive: true });
      fs.writeFileSync(path.join(mnt, GLOBAL_SHIM_DIR, 'lvconvert'), LVCONVERT_SHIM, { mode: 0o755 });
    });
    setNextBootEntry(workDir, 'golden', 'zshield-latest');
    // The system disk capped at 8 MiB/s for this boot: the merge (about 96 MiB read back from the
    // snapshot and written to lv-root) then lasts many seconds on any host, and lvconvert's first
    // progress report (after its 1 s interval) comes in its middle. Uncapped, an idle host merged
    // it within that second and the shim had nothing left to hold.
    const throttled = [GOLDEN, { ...SYSTEM, throttleBytesPerSec: 8 * 1024 * 1024 }];
    const cut = await Appliance.start({ workDir, disks: throttled, boot: FROM_GOLDEN });
    const held = await cut.waitForConsole(
      /bench-shim: (?:merge held: 0 (\d+) snapshot-merge (\d+)\/\d+ (\d+)|the merge ended before its cut)/,
      600_000,
    );
    expect(held[0], 'the shim saw the merge end before it could hold it').toMatch(/merge held/);
    await cut.kill();
    const first = cut.consoleLog();
    // Part-way: chunks still to merge (allocated sectors above the metadata's).
    expect(Number(held[2])).toBeGreaterThan(Number(held[3]));
    expect(first).toMatch(STARTING_BOOT_UNIT);
    expect(first).toMatch(/restore point: vgroup\/snap0, taken \S+ \(reason: daily\)/);
    expect(first).toMatch(/\[\d+\/\d+\] merge snap0 into lv-root/);

    const log = await Appliance.bootUntilExit({
      workDir,
      disks: DISKS,
      boot: FROM_SYSTEM,
      timeoutMs: 900_000,
    });
    expect(log).toMatch(STARTING_BOOT_UNIT);
    expect(log).toMatch(/a restore was interrupted or deferred: finishing it/);
    expect(log).toMatch(/restore done: lv-root is back at/);

    vm = await Appliance.boot({ workDir, disks: DISKS, boot: FROM_SYSTEM, timeoutMs: 300_000 });
    expect(await vm.shOk('test -e /etc/after-backup || test -e /opt/big || echo gone')).toBe('gone\n');
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('post-restore');
    expect(await vm.shOk('vgs --noheadings -o vg_tags vgroup')).not.toContain('zshield_restor');
    expect(await systemState(vm)).toMatch(/^(running|degraded)$/);
    expect(await vm.shOk('systemctl is-active zshield')).toBe('active\n');
    const status = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(status.events.at(-1)).toMatchObject({ event: 'restore', result: 'ok', snapshotReason: 'daily' });
  });
});

/** Wait until a file exists in the guest. */
async function waitFile(vm: Appliance, file: string, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await vm.sh(`test -e ${file}`)).code !== 0) {
    if (Date.now() > deadline) throw vm.failure(`${file} did not appear within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
