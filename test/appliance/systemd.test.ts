import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Appliance, ensureBench, setNextBootEntry, withImagePartition } from '../bench/appliance.js';
import { freshWorkDir, lv, tag } from './lib.js';
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
// it left. Five boots: 309-410 s under TCG (with other guests running on the 2 cores). The package
// case of issue 25 (apt's pre-upgrade hook, node_exporter, dpkg -r/--purge) is not here yet: its
// draft (commit bde6ab9) took the pre-upgrade snap0 but found no unpack line in the guest's dpkg.log.
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
});
