import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Appliance,
  type DiskSpec,
  type GuestJob,
  ensureBench,
  setNextBootEntry,
  systemdBenchInfo,
} from '../bench/appliance.js';
import { GOLDEN_SERIAL, SYSTEM_SERIAL, freshWorkDir, lv, tag, writeConfig } from '../appliance/lib.js';

// The appliance as shipped on a systemd distribution: Debian bookworm with systemd as PID 1, udev
// and journald (the bench's systemd flavour, test/bench/setup-systemd.sh), zshield's units
// installed as rc/README.md says. Only the boot paths run here (the busybox flavour covers the
// rest): golden prepare on the prototype, the golden medium's GRUB entries through
// zshield-boot.service (cancelled at the countdown from the console, then the factory reset), the
// system disk with zshield.service (daily backup on a moved clock, reload, stop during a backup),
// and a restore whose merge a power cut interrupts, finished by the system disk's next boot.

const PROTO: DiskSpec = { name: 'proto', sizeMiB: 2048, serial: 'ZS-PROTO' };
const GOLDEN: DiskSpec = { name: 'golden', sizeMiB: 2048, serial: GOLDEN_SERIAL };
const SYSTEM: DiskSpec = { name: 'system', sizeMiB: 4096, serial: SYSTEM_SERIAL };
const disks = [GOLDEN, SYSTEM];
const fromGolden = { from: 'disk', disk: 'golden' } as const;
const fromSystem = { from: 'disk', disk: 'system', only: true } as const;
const CONFIG = {
  disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } },
  recovery: { countdownSeconds: 2 },
};

/** Wait until systemd has finished booting (running or degraded), and say which. */
async function systemState(vm: Appliance): Promise<string> {
  const r = await vm.sh('systemctl is-system-running --wait', { timeoutMs: 300_000 });
  return r.stdout.trim();
}

/** PID 1 is systemd, with udevd and journald running. */
async function expectSystemd(vm: Appliance): Promise<void> {
  expect(await vm.shOk('readlink /proc/1/exe')).toMatch(/\/systemd\n$/);
  expect(await vm.shOk('systemctl is-active systemd-udevd systemd-journald')).toBe('active\nactive\n');
}

describe('systemd as PID 1: the units in rc/ on a Debian guest', () => {
  let workDir: string;
  let vm: Appliance | undefined;

  beforeAll(async () => {
    await ensureBench('systemd');
    workDir = freshWorkDir('systemd');
    execFileSync('cp', ['--sparse=always', systemdBenchInfo().protoImage, path.join(workDir, 'proto.img')]);
  });
  afterAll(async () => {
    await vm?.kill();
  });

  it('golden prepare on a systemd prototype installs and enables both units on the medium', async () => {
    const sd = systemdBenchInfo();
    vm = await Appliance.boot({
      workDir,
      disks: [PROTO, ...disks],
      boot: { from: 'kernel', kernel: sd.vmlinuz, initrd: sd.initrd },
      appendCmdline: `root=UUID=${sd.protoUuid} rw`,
    });
    await expectSystemd(vm);
    // Installed the documented way on the prototype (rc/README.md): both enabled; nothing to
    // recover here, so zshield-boot.service finished and the daemon runs.
    expect(await vm.shOk('systemctl is-enabled zshield-boot.service zshield.service')).toBe(
      'enabled\nenabled\n',
    );
    expect(await systemState(vm)).toMatch(/^(running|degraded)$/);
    expect(await vm.shOk('journalctl -b -u zshield-boot -o cat')).toContain(
      'zshield boot: no recovery requested',
    );
    // A countdown long enough for the operator (the test) to type c on the golden medium's console.
    await writeConfig(vm, { ...CONFIG, recovery: { countdownSeconds: 10 } });
    const r = await vm.run(['zshield', 'golden', 'prepare', '--target', GOLDEN_SERIAL, '--yes'], {
      timeoutMs: 900_000,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('enable zshield-boot.service and zshield.service');
    await vm.poweroff();
  });

  it('"Recover to factory default": typing c at the countdown on the console cancels through zshield-boot.service, nothing written; the daemon does not run on the read-only medium', async () => {
    setNextBootEntry(workDir, 'golden', 'zshield-factory');
    vm = await Appliance.boot({ workDir, disks, boot: fromGolden, timeoutMs: 300_000, consoleInput: true });
    await expectSystemd(vm);
    const zeros = await vm.shOk('head -c 4194304 /dev/zero | sha256sum');
    const blank = 'head -c 4194304 /dev/vdb | sha256sum';
    expect(await vm.shOk(blank)).toBe(zeros);
    // zshield-boot's lines are on the console and in the journal; the journal's are read (exact).
    await waitJournal(vm, 'zshield-boot', /The factory reset starts in 10 s\. Type c and Enter to cancel\./);
    await vm.typeOnConsole('c\n');
    await waitJournal(
      vm,
      'zshield-boot',
      /The factory reset was cancelled by the operator; nothing was written/,
      60_000,
    );
    expect(vm.consoleLog()).toMatch(/zshield\[\d+\]: /);
    expect(await systemState(vm)).toBe('degraded');
    expect(await vm.shOk('systemctl show -p Result --value zshield-boot')).toBe('exit-code\n');
    const journal = await vm.shOk('journalctl -b -u zshield-boot -o cat');
    expect(journal).toContain('Factory reset of /dev/vdb');
    expect(journal).toContain('The factory reset was cancelled by the operator; nothing was written');
    expect(await vm.shOk(blank)).toBe(zeros);
    expect(await vm.shOk("grep ' / ' /proc/mounts")).toMatch(/^\/dev\/vda1 \/ ext4 ro[, ]/);
    // Enabled on the medium (the factory reset copies it to the system disk), skipped here.
    expect(await vm.shOk('systemctl is-enabled zshield.service')).toBe('enabled\n');
    expect(await vm.shOk('systemctl show -p ConditionResult --value zshield')).toBe('no\n');
    await vm.poweroff();
  });

  it('"Recover to factory default" runs through zshield-boot.service; the system disk (initramfs by initramfs-tools) boots with zshield.service active', async () => {
    setNextBootEntry(workDir, 'golden', 'zshield-factory');
    const log = await Appliance.bootUntilExit({ workDir, disks, boot: fromGolden, timeoutMs: 900_000 });
    expect(log).toMatch(/Starting (\x1b\[[\d;]*m)?zshield-boot\.serv/);
    expect(log).toContain('Factory reset of /dev/vdb');
    expect(log).toMatch(/factory reset done in \d+ s/);
    expect(log).toContain('zshield: rebooting into the system disk');

    vm = await Appliance.boot({ workDir, disks, boot: fromSystem, timeoutMs: 300_000 });
    await expectSystemd(vm);
    expect((await vm.shOk("grep ' / ' /proc/mounts")).split(' ')[0]).toBe('/dev/mapper/vgroup-lv--root');
    expect(await systemState(vm)).toMatch(/^(running|degraded)$/);
    expect(await vm.shOk('systemctl show -p Result --value zshield-boot')).toBe('success\n');
    expect(await vm.shOk('systemctl is-active zshield')).toBe('active\n');
    expect(await vm.shOk('systemctl is-enabled zshield-boot zshield')).toBe('enabled\nenabled\n');
    // Active as soon as started; its first line follows once node has loaded the bundle.
    await waitJournal(vm, 'zshield', /daemon started \(pid \d+\)/);
    // The initramfs that booted it is initramfs-tools' (its /init and conf/initramfs.conf).
    expect(
      await vm.shOk('lsinitramfs /boot/initrd.img-$(uname -r) | grep -xE "init|conf/initramfs.conf" | sort'),
    ).toBe('conf/initramfs.conf\ninit\n');
    const snap = await lv(vm, 'snap0');
    expect(tag(snap, 'reason')).toBe('factory');
    // Regenerated during the reset (update-initramfs in the new root), not the golden's copied one.
    const built = Number(await vm.shOk('stat -c %Y /boot/initrd.img-$(uname -r)'));
    expect(built).toBeGreaterThanOrEqual(Number(tag(snap, 'time')));
  });

  it('zshield.service: reload re-reads the config, the daily backup on a moved clock, stop waits for a running backup', async () => {
    const sys = vm!;
    await writeConfig(sys, {
      ...CONFIG,
      recovery: { countdownSeconds: 3600 },
      daemon: { checkEverySeconds: 1 },
    });
    await sys.shOk('systemctl reload zshield');
    await waitJournal(sys, 'zshield', /daemon: config reloaded/);
    // Tomorrow 03:00:05: the daily backup is due on the next tick.
    await sys.shOk('date -s "$(date -d tomorrow +%F) 03:00:05" >/dev/null');
    await waitJournal(sys, 'zshield', /backup done: snap0 \(daily\)/);
    expect(tag(await lv(sys, 'snap0'), 'reason')).toBe('daily');

    // Another day, with the LVM lock held by a restore waiting at its countdown (a real zshield,
    // its stdin a fifo): the daemon's daily backup queues behind it, `systemctl stop` is asked
    // then, and the stop waits until the backup has been taken.
    await sys.shOk('mkfifo /run/answer; printf "ro zshield_recovery=latest\\n" > /run/cmdline-latest');
    const holder = sys.spawn('exec zshield boot --cmdline-file /run/cmdline-latest < /run/answer');
    const typist = sys.spawn('exec 3>/run/answer; until [ -e /run/go ]; do sleep 0.2; done; echo c >&3');
    await waitOutput(holder, /The restore starts in 600 s/);
    await sys.shOk('date -s "$(date -d tomorrow +%F) 03:00:05" >/dev/null');
    await waitJournal(sys, 'zshield', /daemon: daily backup due[\s\S]*waiting for the LVM lock held by/);
    const stop = sys.spawn('systemctl stop zshield');
    await waitJournal(sys, 'zshield', /daemon: stop requested/);
    expect(await sys.shOk('systemctl is-active zshield; true')).toBe('deactivating\n');
    await sys.shOk('touch /run/go');
    expect((await holder.wait({ timeoutMs: 120_000 })).code).toBe(9);
    await typist.wait({ timeoutMs: 30_000 });
    expect((await stop.wait({ timeoutMs: 300_000 })).code).toBe(0);
    const journal = await sys.shOk('journalctl -b -u zshield -o cat');
    const after = journal.slice(journal.lastIndexOf('daemon: stop requested'));
    expect(after).toMatch(/backup done: snap0 \(daily\)[\s\S]*daemon stopped/);
    expect(await sys.shOk('systemctl is-active zshield; true')).toBe('inactive\n');
    const snap = await lv(sys, 'snap0');
    expect(tag(snap, 'reason')).toBe('daily');
    expect(snap?.lv_attr[4]).toBe('a');

    // For the restore below: a change after the backup, and enough of it that the merge takes a while.
    await sys.shOk(
      'echo lost > /etc/after-backup; dd if=/dev/urandom of=/opt/big bs=1M count=120 2>/dev/null; sync',
      {
        timeoutMs: 300_000,
      },
    );
    await sys.poweroff(120_000);
  });

  it('"Recover to latest backup" runs through zshield-boot.service; a power cut during the merge is finished by the next boot under systemd', async () => {
    setNextBootEntry(workDir, 'golden', 'zshield-latest');
    const cut = await Appliance.boot({ workDir, disks, boot: fromGolden, timeoutMs: 300_000 });
    await cut.waitForConsole(/\[\d+\/\d+\] merge snap0 into lv-root/, 600_000);
    await new Promise((r) => setTimeout(r, 2000));
    const first = cut.consoleLog();
    await cut.kill();
    expect(first).toMatch(/Starting (\x1b\[[\d;]*m)?zshield-boot\.serv/);
    expect(first).toMatch(/restore point: vgroup\/snap0, taken \S+ \(reason: daily\)/);
    expect(first).toContain('The restore starts in 10 s');

    const log = await Appliance.bootUntilExit({ workDir, disks, boot: fromSystem, timeoutMs: 900_000 });
    expect(log).toMatch(/Starting (\x1b\[[\d;]*m)?zshield-boot\.serv/);
    expect(log).toMatch(/a restore was interrupted or deferred: finishing it/);
    expect(log).toMatch(/restore done: lv-root is back at/);

    vm = await Appliance.boot({ workDir, disks, boot: fromSystem, timeoutMs: 300_000 });
    expect((await vm.sh('test -e /etc/after-backup || test -e /opt/big')).code).not.toBe(0);
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('post-restore');
    expect(await vm.shOk('vgs --noheadings -o vg_tags vgroup')).not.toContain('zshield_restor');
    expect(await systemState(vm)).toMatch(/^(running|degraded)$/);
    expect(await vm.shOk('systemctl is-active zshield')).toBe('active\n');
    const status = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(status.events.at(-1)).toMatchObject({ event: 'restore', result: 'ok', snapshotReason: 'daily' });
    await vm.kill();
  });
});

/** Wait until `journalctl -u <unit>` of this boot matches. */
async function waitJournal(vm: Appliance, unit: string, pattern: RegExp, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await vm.shOk(`journalctl -b -u ${unit} -o cat`);
    if (pattern.test(text)) return;
    if (Date.now() > deadline) throw vm.failure(`journalctl -u ${unit} did not show ${pattern}:\n${text}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Wait until a guest job's output matches. */
async function waitOutput(job: GuestJob, pattern: RegExp, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const o = await job.output();
    if (pattern.test(o.stdout + o.stderr)) return;
    if (job.finished || Date.now() > deadline) {
      throw new Error(`guest job did not print ${pattern}:\n${o.stdout}${o.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
