import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import { ensureBench } from '../bench/bench-env.js';
import { setNextBootEntry, withImagePartition } from '../bench/disk-images.js';
import { freshWorkDir, lv, tag, writeConfig } from './lib.js';
import {
  DISKS,
  FROM_GOLDEN,
  FROM_SYSTEM,
  GOLDEN,
  STARTING_BOOT_UNIT,
  SYSTEM,
  copyImage,
  expectSystemd,
  imageOf,
  prepareGolden,
  systemState,
  waitJournal,
} from './systemd-lib.js';

// The appliance as shipped on a systemd distribution: Debian bookworm with systemd as PID 1, udev
// and journald (the bench's systemd flavour, test/bench/setup-systemd.sh), zshield installed from
// its Debian package (dpkg -i: the package enables the units in rc/). The boot paths, through real GRUB from the golden medium's menu:
// "Recover to factory default" cancelled with c at the countdown on the console, then started
// again and run; the system disk it makes booting with zshield.service active; "Recover to latest
// backup". One golden prepare; each case starts from host copies of the disk images the one before
// it left. Five boots: 309-410 s under TCG (with other guests running on the 2 cores); the package
// case (apt's pre-upgrade hook, node_exporter, dpkg -r/--purge) one more boot of the system disk:
// 121 s at a light load, 217 s at a load of 7-9 (2026-12-07; the whole file 729 and 1208 s).
// The daemon under systemd (daily backup, stop during a backup, a merge cut by a power cut) is in
// test/appliance-long/systemd-daemon.test.ts, outside the gate.

describe('systemd as PID 1: the boot paths of the units in rc/ on a Debian guest', () => {
  let prepared: string;
  let factoryDir: string;
  let systemDir: string;
  let vm: Appliance | undefined;

  beforeAll(async () => {
    await ensureBench('systemd');
    prepared = freshWorkDir('systemd-golden');
    await prepareGolden(prepared);
  }, 1_500_000);
  afterEach(async () => {
    await vm?.kill();
    vm = undefined;
  });

  it('"Recover to factory default": c typed at the countdown on the console cancels through zshield-boot.service, nothing written; started again, the factory reset runs through the unit', async () => {
    factoryDir = freshWorkDir('systemd-factory');
    const workDir = factoryDir;
    copyImage(imageOf(prepared, GOLDEN), workDir, GOLDEN);
    setNextBootEntry(workDir, 'golden', 'zshield-factory');
    vm = await Appliance.boot({
      workDir,
      disks: DISKS,
      boot: FROM_GOLDEN,
      timeoutMs: 300_000,
      consoleInput: true,
    });
    await expectSystemd(vm);
    // zshield-boot's lines are on the console and in the journal; the journal's are read (exact:
    // the socket console's log may double a byte).
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
    expect(await vm.shOk('journalctl -b -u zshield-boot -o cat')).toContain('Factory reset of /dev/vdb');
    // Nothing written: the system disk's image is still all holes (any write, zeros too, would
    // have allocated blocks; qemu writes a raw image through at once).
    expect(fs.statSync(imageOf(workDir, SYSTEM)).blocks).toBe(0);
    expect(await vm.shOk("grep ' / ' /proc/mounts")).toMatch(/^\/dev\/vda1 \/ ext4 ro[, ]/);
    // Enabled on the medium (the factory reset copies it to the system disk), skipped here.
    expect(await vm.shOk('systemctl is-enabled zshield.service')).toBe('enabled\n');
    expect(await vm.shOk('systemctl show -p ConditionResult --value zshield')).toBe('no\n');

    // The operator changes their mind and starts it again from the console (as a reboot into the
    // same menu entry would): the unit runs the reset to its end and reboots.
    await vm.shOk('systemctl restart --no-block zshield-boot.service');
    await waitJournal(vm, 'zshield-boot', /\[1\/\d+\] wipe the partition table of \/dev\/vdb/);
    await vm.waitForExit(900_000);
  });

  it('the system disk the factory reset made (initramfs by initramfs-tools) boots through its GRUB with zshield.service active', async () => {
    const workDir = freshWorkDir('systemd-system');
    copyImage(imageOf(factoryDir, GOLDEN), workDir, GOLDEN);
    copyImage(imageOf(factoryDir, SYSTEM), workDir, SYSTEM);
    vm = await Appliance.boot({ workDir, disks: DISKS, boot: FROM_SYSTEM, timeoutMs: 300_000 });
    await expectSystemd(vm);
    expect((await vm.shOk("grep ' / ' /proc/mounts")).split(' ')[0]).toBe('/dev/mapper/vgroup-lv--root');
    expect(await systemState(vm)).toMatch(/^(running|degraded)$/);
    expect(await vm.shOk('systemctl show -p Result --value zshield-boot')).toBe('success\n');
    expect(await vm.shOk('journalctl -b -u zshield-boot -o cat')).toContain(
      'zshield boot: no recovery requested',
    );
    expect(await vm.shOk('systemctl is-active zshield')).toBe('active\n');
    expect(await vm.shOk('systemctl is-enabled zshield-boot zshield')).toBe('enabled\nenabled\n');
    // Active as soon as started; its first line follows once node has loaded the bundle.
    await waitJournal(vm, 'zshield', /daemon started \(pid \d+\)/);
    // The reset ran to its end (its record in the event log, written last).
    const status = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(status.events.at(-1)).toMatchObject({ event: 'factory-reset', result: 'ok' });
    // The initramfs that booted it is initramfs-tools' (its /init and conf/initramfs.conf).
    expect(
      await vm.shOk('lsinitramfs /boot/initrd.img-$(uname -r) | grep -xE "init|conf/initramfs.conf" | sort'),
    ).toBe('conf/initramfs.conf\ninit\n');
    const snap = await lv(vm, 'snap0');
    expect(tag(snap, 'reason')).toBe('factory');
    // Regenerated during the reset (update-initramfs in the new root), not the golden's copied one.
    const built = Number(await vm.shOk('stat -c %Y /boot/initrd.img-$(uname -r)'));
    expect(built).toBeGreaterThanOrEqual(Number(tag(snap, 'time')));
    // A change after the restore point, for "Recover to latest backup" to undo.
    await vm.shOk('echo lost > /etc/after-backup; sync');
    await vm.poweroff(120_000);
    systemDir = workDir;
  });

  it('"Recover to latest backup" runs through zshield-boot.service: the change after the restore point is gone', async () => {
    const workDir = freshWorkDir('systemd-latest');
    copyImage(imageOf(prepared, GOLDEN), workDir, GOLDEN);
    copyImage(imageOf(systemDir, SYSTEM), workDir, SYSTEM);
    // This copy of the medium with a 2 s countdown (the countdown itself is the case above's).
    withImagePartition(imageOf(workDir, GOLDEN), 1, (mnt) => {
      const conf = path.join(mnt, 'etc/zshield/zshield.conf');
      const config = JSON.parse(fs.readFileSync(conf, 'utf8'));
      fs.writeFileSync(conf, JSON.stringify({ ...config, recovery: { countdownSeconds: 2 } }));
    });
    setNextBootEntry(workDir, 'golden', 'zshield-latest');
    const log = await Appliance.bootUntilExit({
      workDir,
      disks: DISKS,
      boot: FROM_GOLDEN,
      timeoutMs: 900_000,
    });
    expect(log).toMatch(STARTING_BOOT_UNIT);
    expect(log).toMatch(/restore point: vgroup\/snap0, taken \S+ \(reason: factory\)/);
    expect(log).toContain('The restore starts in 2 s');
    expect(log).toMatch(/restore done: lv-root is back at/);

    // Checked from the busybox bench (a kernel boot of seconds): the system disk's own boot is
    // proven by the case before.
    vm = await Appliance.boot({ workDir, disks: DISKS });
    await vm.shOk('mkdir -p /mnt/r && mount -o ro /dev/vgroup/lv-root /mnt/r');
    expect(await vm.shOk('test -e /mnt/r/etc/after-backup && echo there || echo gone')).toBe('gone\n');
    expect(await vm.shOk('test -x /mnt/r/usr/sbin/zshield && echo ok')).toBe('ok\n');
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('post-restore');
    expect(await vm.shOk('vgs --noheadings -o vg_tags vgroup')).not.toContain('zshield_restor');
  });
  it('the package on the system disk: apt-get install ./x.deb leaves a pre-upgrade snap0 made before dpkg unpacked; a second run adds none; node_exporter serves the metrics; dpkg -r stops the daemon and keeps the config, --purge drops it', async () => {
    const workDir = freshWorkDir('systemd-package');
    copyImage(imageOf(systemDir, GOLDEN), workDir, GOLDEN);
    copyImage(imageOf(systemDir, SYSTEM), workDir, SYSTEM);
    vm = await Appliance.boot({ workDir, disks: DISKS, boot: FROM_SYSTEM, timeoutMs: 300_000 });
    expect(await systemState(vm)).toMatch(/^(running|degraded)$/);
    // Installed with dpkg -i in the flavour's tree (setup-systemd.sh), carried by golden prepare and
    // the factory reset (which ran no dpkg): dpkg knows it here, its units enabled, the daemon up.
    expect(await vm.shOk('dpkg -s zshield | grep ^Status:')).toBe('Status: install ok installed\n');
    expect(await vm.shOk('systemctl is-enabled zshield-boot zshield')).toBe('enabled\nenabled\n');
    expect(await vm.shOk('test -e /etc/systemd/system/zshield.service || echo none')).toBe('none\n');
    expect(await vm.shOk('systemctl is-active zshield prometheus-node-exporter')).toBe('active\nactive\n');

    // A local package of one file, installed by apt: the hook runs before dpkg unpacks it.
    await vm.shOk(
      [
        'mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/zshield-bench',
        'echo new > /tmp/pkg/usr/share/zshield-bench/marker',
        "printf 'Package: zshield-bench\\nVersion: 1\\nArchitecture: all\\nMaintainer: b <b@example.com>\\nDescription: bench\\n' > /tmp/pkg/DEBIAN/control",
        'dpkg-deb --root-owner-group --build /tmp/pkg /tmp/zshield-bench_1_all.deb',
      ].join(' && '),
    );
    // The factory reset's snap0 is minutes old: within hooks.aptMinIntervalMinutes (60) the hook
    // would take none. 0 for this run (always), back to 60 for the next.
    const config = JSON.parse(await vm.shOk('cat /etc/zshield/zshield.conf'));
    await writeConfig(vm, { ...config, hooks: { aptMinIntervalMinutes: 0 } });
    const apt = await vm.sh('cd /tmp && apt-get install -y ./zshield-bench_1_all.deb', {
      timeoutMs: 300_000,
    });
    expect(apt.code, apt.stdout + apt.stderr).toBe(0);
    const snap = await lv(vm, 'snap0');
    expect(tag(snap, 'reason'), apt.stdout + apt.stderr).toBe('pre-upgrade');
    // Made before dpkg unpacked the package: its LVM time is not after dpkg's log line for it, and
    // the snapshot (mounted read-only) lacks the package's file while lv-root has it. dpkg logs no
    // "unpack" action: process_archive (src/main/unpack.c) logs `install PKG:ARCH <none> VERSION`
    // (`upgrade` for an installed one) after "Preparing to unpack" and before the first file is
    // written, then `status half-installed`, `status unpacked`. The line is in the guest's local
    // time: converted by the guest's date(1); a missing line fails.
    const unpackedAt = Number(
      await vm.shOk(
        'l=$(grep -m1 \' install zshield-bench:all <none> 1$\' /var/log/dpkg.log | cut -c1-19); [ -n "$l" ] && date -d "$l" +%s',
      ),
    );
    const lvTime = Number(
      await vm.shOk('lvs --noheadings --config \'report/time_format="%s"\' -o lv_time vgroup/snap0'),
    );
    expect(Number.isInteger(unpackedAt) && Number.isInteger(lvTime)).toBe(true);
    expect(lvTime).toBeLessThanOrEqual(unpackedAt);
    await vm.shOk('mkdir -p /mnt/snap && mount -o ro,noload /dev/vgroup/snap0 /mnt/snap');
    expect(
      await vm.shOk('test -e /mnt/snap/usr/share/zshield-bench/marker && echo there || echo absent'),
    ).toBe('absent\n');
    expect(await vm.shOk('cat /usr/share/zshield-bench/marker')).toBe('new\n');
    await vm.shOk('umount /mnt/snap');

    // A second apt run within hooks.aptMinIntervalMinutes: no new restore point.
    await writeConfig(vm, { ...config, hooks: { aptMinIntervalMinutes: 60 } });
    const again = await vm.sh('cd /tmp && apt-get install -y --reinstall ./zshield-bench_1_all.deb', {
      timeoutMs: 300_000,
    });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout + again.stderr).toMatch(
      /apt hook: no pre-upgrade backup: the restore point is \d+ min old/,
    );
    expect(tag(await lv(vm, 'snap0'), 'time')).toBe(tag(snap, 'time'));

    // node_exporter (Debian's) serves the file zshield wrote after the job.
    const metrics = await vm.shOk('busybox wget -q -O - http://127.0.0.1:9100/metrics');
    // (node_exporter prints large values in exponent form: compared as numbers.)
    const taken = /^zshield_restore_point_timestamp_seconds\{reason="pre-upgrade"\} (\S+)$/m.exec(metrics);
    expect(Number(taken?.[1])).toBe(Number(tag(snap, 'time')));
    expect(metrics).toMatch(/^zshield_restore_point_valid 1$/m);

    // dpkg -r: the daemon stopped, config and data kept; --purge: the config gone.
    await vm.shOk('dpkg -r zshield', { timeoutMs: 300_000 });
    expect((await vm.sh('systemctl is-active zshield')).stdout).toBe('inactive\n');
    expect(await vm.shOk('test -f /etc/zshield/zshield.conf && test -d /var/lib/zshield && echo kept')).toBe(
      'kept\n',
    );
    expect(tag(await lv(vm, 'snap0'), 'time')).toBe(tag(snap, 'time'));
    await vm.shOk('dpkg --purge zshield', { timeoutMs: 300_000 });
    expect(await vm.shOk('test -e /etc/zshield && echo there || echo gone')).toBe('gone\n');
  });
});
