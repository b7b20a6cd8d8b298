import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import type { BootOptions } from '../bench/qemu-command.js';
import {
  SYSTEM_SERIAL,
  freshWorkDir,
  lv,
  lvs,
  makeSeedLayout,
  tag,
  untilPowerCut,
  writeConfig,
  installShim,
} from './lib.js';

// Issue 11.1 in the bench: a backup rotation cut by a power cut before each of its commands, and
// in the middle of lvcreate, then "Recover to latest backup" as the golden medium runs it at boot
// (`zshield boot` with zshield_recovery=latest on the kernel command line). Every case must restore
// the newest complete restore point and none may say "no backup". Then the drop-first rotation's
// cut that leaves no restore point: status names it and the daemon at start takes one.
//
// The cut is made inside the guest, by a shim on PATH in front of the LVM tool (the Runner finds
// tools on PATH): when zshield calls it with the rotation's arguments, the shim resets the machine
// through sysrq (`b`: at once, nothing synced, no device shut down, as a power cut looks to the
// disk; qemu runs with -no-reboot, so it exits). No timing: the cut comes at a command, or at a
// point where lvcreate itself waits (INSIDE_LVCREATE).
//
// To boot as little as possible the cases are chained on one disk (GRUB is not under test: the
// bench kernel boots the golden root): each recovery boot checks its case, then writes a new
// marker into lv-root and runs the next backup, which its shim cuts. The backups run from the
// golden root against lv-root (not the running root there), so /boot is not captured: the
// rotation's LVM commands are the same.

const SYSTEM = { name: 'system', sizeMiB: 1024, serial: SYSTEM_SERIAL };
const CONFIG = {
  disks: { system: { serial: SYSTEM_SERIAL } },
  // reboot off: the recovery boot goes on, so its result is checked (and the next cut made) in it.
  recovery: { countdownSeconds: 0, reboot: false },
  daemon: { catchUp: false, checkEverySeconds: 1 },
};
const ROTATING = 'zshield_rotating';

type Cut =
  | 'mark'
  | 'lvcreate'
  | 'inside-lvcreate'
  | 'lvremove'
  | 'lvrename'
  | 'unmark'
  | 'drop-first-lvcreate';

/** The shim for each cut: the tool it stands in front of and a shell test of its arguments. */
const SHIMS: Record<Cut, { tool: string; when: string }> = {
  mark: { tool: 'vgchange', when: `"--addtag ${ROTATING} vgroup"` },
  lvcreate: { tool: 'lvcreate', when: '"--name snap0-next"' },
  'inside-lvcreate': { tool: 'lvcreate', when: '"--name snap0-next"' },
  lvremove: { tool: 'lvremove', when: '" vgroup/snap0 "' },
  lvrename: { tool: 'lvrename', when: '"vgroup snap0-next snap0"' },
  unmark: { tool: 'vgchange', when: `"--deltag ${ROTATING} vgroup"` },
  'drop-first-lvcreate': { tool: 'lvcreate', when: '"--name snap0 "' },
};

/**
 * In the middle of lvcreate: the machine is reset while lvcreate is stopped at a point of its own.
 * lvcreate (lvm2 2.03, lv_manip.c _lv_create_an_lv) first commits metadata holding snap0-next as a
 * plain LV, then activates that LV alone to zero its start, deactivates it, and only then turns it
 * into the snapshot (a metadata write and commit, which brings the -cow device). So the state cut
 * is: metadata committed with an unfinished snap0-next that is not a snapshot, lvcreate running.
 *
 * No race with lvcreate: the guest has no udev, and the shim plays its part. With udev "running"
 * (/run/udev/control exists) and udev_sync on, libdevmapper waits after each activation (blocked
 * in semtimedop, syscall 220, on a semaphore "cookie") until udev says it is done (`dmsetup
 * udevcomplete`). At each such wait the shim looks at the devices: snap0-next without -cow is the
 * state, and it cuts while lvcreate waits; otherwise it completes the cookies and lvcreate goes on.
 * Were the state never seen (another lvm2 that activates differently), lvcreate ends and the shim
 * says so on the kernel log before it cuts: the test fails on it, never cuts elsewhere unnoticed.
 */
const INSIDE_LVCREATE = `mkdir -p /run/udev && : > /run/udev/control
/usr/sbin/lvcreate --config 'activation { udev_sync = 1 }' "$@" &
pid=$!
while kill -0 $pid 2>/dev/null; do
  read -r nr rest < /proc/$pid/syscall 2>/dev/null || continue
  read -r _ _ state rest < /proc/$pid/stat 2>/dev/null || continue
  [ "$nr" = 220 ] && [ "$state" = S ] || continue
  if dmsetup info vgroup-snap0--next >/dev/null 2>&1 && ! dmsetup info vgroup-snap0--next-cow >/dev/null 2>&1; then
    echo b > /proc/sysrq-trigger
  fi
  for c in $(dmsetup udevcookies | awk 'NR > 1 { print $1 }'); do dmsetup udevcomplete "$c" >/dev/null; done
done
echo 'bench: the cut missed its state' > /dev/kmsg; echo b > /proc/sysrq-trigger`;

function shimScript(cut: Cut): string {
  const { tool, when } = SHIMS[cut];
  const act =
    cut === 'inside-lvcreate' ? INSIDE_LVCREATE : 'echo b > /proc/sysrq-trigger; while :; do :; done';
  return `#!/bin/sh
# bench: a power cut at "${cut}" of the backup rotation
case " $* " in
*${when}*) ;;
*) exec /usr/sbin/${tool} "$@" ;;
esac
${act}
`;
}

describe('a backup rotation cut by a power cut, then "Recover to latest backup" from the golden medium', () => {
  const workDir = freshWorkDir('rotation-cut');
  let vm: Appliance | undefined;
  /** The marker the current snap0 holds: what a restore gives back when no newer point is complete. */
  let inSnap0 = '';

  const boot = async (opts: Partial<BootOptions> = {}) => {
    vm = await Appliance.boot({ workDir, disks: [SYSTEM], ...opts });
    await writeConfig(vm, CONFIG);
    await vm.shOk('mkdir -p /mnt/root');
    return vm;
  };
  const marker = async (v: Appliance) =>
    (
      await v.shOk('mount -o ro /dev/vgroup/lv-root /mnt/root && cat /mnt/root/marker; umount /mnt/root')
    ).trim();
  const vgTags = async (v: Appliance) => (await v.shOk('vgs --noheadings -o vg_tags vgroup')).trim();

  /** A new marker in lv-root, then `zshield backup` with the shim armed: the guest goes off. */
  async function changeThenCutBackup(v: Appliance, cut: Cut, value: string): Promise<void> {
    await v.shOk(
      `mkdir -p /mnt/root && mount /dev/vgroup/lv-root /mnt/root && echo ${value} > /mnt/root/marker && umount /mnt/root && sync`,
    );
    await installShim(v, SHIMS[cut].tool, shimScript(cut));
    await untilPowerCut(v, v.spawn('exec zshield backup'));
    expect(v.consoleLog()).not.toContain('bench: the cut missed its state');
  }

  /** The golden medium's boot hook, in a boot with zshield_recovery=latest on the kernel command line. */
  async function recoverLatest(v: Appliance): Promise<void> {
    const r = await v.run(['zshield', 'boot'], { timeoutMs: 600_000 });
    const out = `${r.stdout}\n${r.stderr}`;
    expect(out).not.toMatch(/no backup/);
    expect(r.code, out).toBe(0);
    expect(r.stdout).toMatch(/restore point: vgroup\/snap0, taken \S+ \(reason: (manual|post-restore)\)/);
    expect(r.stdout).toMatch(/restore done: lv-root is back at/);
  }

  /** After a restore: lv-root holds `expected`, a new snap0 of it, no rotation or restore left marked. */
  async function expectRestored(v: Appliance, expected: string): Promise<void> {
    expect(await marker(v)).toBe(expected);
    const rows = await lvs(v);
    expect(rows.map((r) => r.lv_name).sort()).toEqual(['lv-data', 'lv-root', 'snap0']);
    expect(
      tag(
        rows.find((r) => r.lv_name === 'snap0'),
        'reason',
      ),
    ).toBe('post-restore');
    expect(await vgTags(v)).not.toMatch(/zshield_rotating|zshield_restor/);
    inSnap0 = expected;
  }

  afterAll(async () => {
    await vm?.kill();
  });

  beforeAll(async () => {
    const v = await boot();
    await makeSeedLayout(v, 256);
    // The first restore point (no rotation yet: nothing to cut).
    await v.shOk('mount /dev/vgroup/lv-root /mnt/root && echo v0 > /mnt/root/marker && umount /mnt/root');
    const b = await v.run(['zshield', 'backup'], { timeoutMs: 300_000 });
    expect(b.code, b.stderr).toBe(0);
    expect(tag(await lv(v, 'snap0'), 'reason')).toBe('manual');
    inSnap0 = 'v0';
  }, 900_000);

  // What the cut left, seen in the recovery boot before the recovery runs: proof the shim cut where
  // it says. `next` is snap0-next's kind ('snapshot', 'plain' or absent), `snap` whether snap0 is there.
  type Left = { tagged: boolean; next: 'snapshot' | 'plain' | null; snap: boolean };
  const cases: { cut: Cut; left: Left; newest: 'new' | 'old' }[] = [
    { cut: 'mark', left: { tagged: false, next: null, snap: true }, newest: 'old' },
    { cut: 'lvcreate', left: { tagged: true, next: null, snap: true }, newest: 'old' },
    { cut: 'inside-lvcreate', left: { tagged: true, next: 'plain', snap: true }, newest: 'old' },
    { cut: 'lvremove', left: { tagged: true, next: 'snapshot', snap: true }, newest: 'new' },
    { cut: 'lvrename', left: { tagged: true, next: 'snapshot', snap: false }, newest: 'new' },
    { cut: 'unmark', left: { tagged: true, next: null, snap: true }, newest: 'new' },
  ];

  for (const [i, c] of cases.entries()) {
    it(`a power cut ${c.cut === 'inside-lvcreate' ? 'in the middle of lvcreate snap0-next' : `before ${c.cut}`}: the ${c.newest === 'new' ? 'new backup (complete)' : 'old snap0 (the new one is not complete)'} is restored`, {
      timeout: 1_200_000,
    }, async () => {
      const value = `v${i + 1}`;
      await changeThenCutBackup(vm!, c.cut, value);
      const expected = c.newest === 'new' ? value : inSnap0;

      const v = await boot({ appendCmdline: 'zshield_recovery=latest' });
      const rows = await lvs(v);
      const next = rows.find((r) => r.lv_name === 'snap0-next');
      expect({
        tagged: (await vgTags(v)).includes(ROTATING),
        next: next ? (next.origin === 'lv-root' ? 'snapshot' : 'plain') : null,
        snap: rows.some((r) => r.lv_name === 'snap0'),
      }).toEqual(c.left);
      if (c.cut === 'lvremove') {
        // A reader (status) shows what the repair will leave, and says a rotation was cut short.
        const st = JSON.parse((await v.run(['zshield', 'status', '--json'])).stdout);
        expect(st.rotationNote).toMatch(
          /cut short; the repair makes the completed snap0-next the restore point/,
        );
      }
      await recoverLatest(v);
      await expectRestored(v, expected);
    });
  }

  it('the drop-first rotation (no room for two snapshots) cut before its lvcreate: status names the missing restore point, and the daemon at start takes one', {
    timeout: 1_200_000,
  }, async () => {
    const v = vm!;
    // Fill the VG: the new snapshot fits only once the old one is dropped.
    await v.shOk('lvcreate -q -y -l 100%FREE -n filler vgroup', { timeoutMs: 180_000 });
    const plan = await v.run(['zshield', 'backup', '--dry-run']);
    expect(plan.stdout).toMatch(/until the new one exists there is no restore point/);
    await changeThenCutBackup(v, 'drop-first-lvcreate', 'v-drop');

    const next = await boot();
    expect(await lv(next, 'snap0')).toBeUndefined();
    const st = JSON.parse((await next.run(['zshield', 'status', '--json'])).stdout);
    expect(st.rotationNote).toMatch(
      /left no restore point; the next backup \(or the daemon at start\) takes one/,
    );
    const daemon = next.spawn('exec zshield daemon');
    await next.shOk(
      'until lvs --noheadings -o lv_tags vgroup/snap0 2>/dev/null | grep -q zshield_reason=repair; do sleep 1; done; until ! vgs --noheadings -o vg_tags vgroup | grep -q zshield_rotating; do sleep 1; done',
      { timeoutMs: 300_000 },
    );
    await daemon.kill('TERM');
    await daemon.wait({ timeoutMs: 120_000 });
    expect((await lv(next, 'snap0'))?.origin).toBe('lv-root');
    expect(
      (
        await next.shOk('mount -o ro /dev/vgroup/snap0 /mnt/root && cat /mnt/root/marker; umount /mnt/root')
      ).trim(),
    ).toBe('v-drop');
  });
});
