// The boot menu tells the truth about the restore point, through real GRUB: the golden medium's
// "Recover to latest backup" entry reads the restore point's time and reason from zshield's env
// file on the system disk's /boot, found by the /boot UUID the factory reset wrote into the golden
// medium's settings; every writer rewrites it. The menu is read where the operator reads it: on
// the serial console, as GRUB draws it (each GRUB boot is cut as soon as the entry is drawn).
// To boot as little as possible, the system disk is booted with the bench kernel (GRUB is not what
// is tested there) and the factory reset runs from the golden root booted the same way.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import type { BootOptions } from '../bench/qemu-command.js';
import { benchInfo } from '../bench/bench-env.js';
import { withImagePartition } from '../bench/disk-images.js';
import {
  GOLDEN_SERIAL,
  SYSTEM_SERIAL,
  freshWorkDir,
  guestDay,
  isoOf,
  setGuestClock,
  writeConfig,
} from './lib.js';

const workDir = freshWorkDir('boot-menu');
const disks = [
  { name: 'golden', sizeMiB: 2048, serial: GOLDEN_SERIAL },
  { name: 'system', sizeMiB: 4096, serial: SYSTEM_SERIAL },
];
const MENU_FILE = '/boot/zshield/bootmenu.env';
const TITLE = /Recover to latest backup \(([^)\n]*)\)/;

/** What the menu of the disk `disk` shows for "Recover to latest backup", as GRUB draws it. */
async function menuShows(disk: 'golden' | 'system'): Promise<string> {
  const vm = await Appliance.start({ workDir, disks, boot: { from: 'disk', disk } });
  try {
    return (await vm.waitForConsole(TITLE, 120_000))[1]!;
  } finally {
    await vm.kill();
  }
}

/** The system disk's root, booted by the bench kernel and the boot initramfs (no GRUB). */
const systemKernelBoot = (): BootOptions => ({
  workDir,
  disks,
  boot: { from: 'kernel', initrd: benchInfo().bootInitrd },
  appendCmdline: 'root=/dev/mapper/vgroup-lv--root ro',
});

/** The env file's variables, read in the guest by GRUB's own tool. */
async function menuFileInGuest(vm: Appliance): Promise<string> {
  return vm.shOk(`grub-editenv ${MENU_FILE} list`);
}

describe('the boot menu tells the truth about the restore point', () => {
  let vm: Appliance | undefined;
  afterAll(async () => {
    await vm?.kill();
  });

  it('after the factory reset, the golden medium’s menu shows the first restore point (found by the /boot UUID paired at the reset)', {
    timeout: 1_200_000,
  }, async () => {
    const proto = await Appliance.boot({ workDir, disks });
    // No daily backup of its own while the test moves the clock (catch-up off, every scheduled
    // moment before the daemon started); a tick every second notices a removed snap0 at once.
    await writeConfig(proto, {
      disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } },
      recovery: { countdownSeconds: 0 },
      daemon: { catchUp: false, checkEverySeconds: 1 },
    });
    const r = await proto.run(['zshield', 'golden', 'prepare', '--target', GOLDEN_SERIAL, '--yes'], {
      timeoutMs: 900_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const goldenUuid = (await proto.shOk('blkid -s UUID -o value /dev/vda1')).trim();
    await proto.poweroff();

    const log = await Appliance.bootUntilExit({
      workDir,
      disks,
      boot: { from: 'kernel', initrd: benchInfo().bootInitrd },
      appendCmdline: `root=UUID=${goldenUuid} ro zshield_recovery=default`,
      timeoutMs: 900_000,
    });
    expect(log).toMatch(/factory reset done in \d+ s/);
    expect(log).toMatch(
      /golden medium: its menu reads the restore point from the \/boot with UUID [0-9a-f-]{36}/,
    );
    const pairedUuid = /with UUID ([0-9a-f-]{36})/.exec(log)![1]!;
    // The pairing is in the golden medium's own settings, beside its grub.cfg; the restore point in
    // the system disk's /boot, on the file system of that UUID.
    withImagePartition(path.join(workDir, 'golden.img'), 1, (mnt) => {
      expect(fs.readFileSync(path.join(mnt, 'boot/grub/zshield-system.env'), 'utf8')).toMatch(
        new RegExp(
          `^# GRUB Environment Block\\nzshield_menu_uuid=${pairedUuid}\\nzshield_menu_path=/zshield/bootmenu.env\\n#+$`,
        ),
      );
    });

    expect(await menuShows('golden')).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d, factory$/);
  });

  it('after the next backup, both menus show the new restore point; the system disk’s own menu too', async () => {
    vm = await Appliance.boot(systemKernelBoot());
    // 03:00 on the guest's next day: later than the factory reset's restore point.
    const at = (await guestDay(vm, 1)) + 3 * 3600;
    await setGuestClock(vm, at);
    const b = await vm.run(['zshield', 'backup', '--reason', 'daily']);
    expect(b.code, b.stderr).toBe(0);
    // The snapshot's own time, in the guest's local time (however long the backup took to start).
    const taken = (
      await vm.shOk(
        `date -d @$(lvs --noheadings -o lv_tags vgroup/snap0 | tr ',' '\\n' | sed -n 's/^ *zshield_time=//p') '+%Y-%m-%d %H:%M'`,
      )
    ).trim();
    expect(taken).toMatch(new RegExp(`^${isoOf(at).slice(0, 10)} 03:\\d\\d$`));
    expect(await menuFileInGuest(vm)).toBe(`zshield_restore_point=${taken}, daily\n`);
    await vm.poweroff();

    expect(await menuShows('golden')).toBe(`${taken}, daily`);
    expect(await menuShows('system')).toBe(`${taken}, daily`);
  });

  it('after snap0 is removed, the daemon’s next check makes it "(none available)"; with the env file deleted, "(unknown)"', async () => {
    vm = await Appliance.boot(systemKernelBoot());
    await vm.shOk('lvremove -q -y vgroup/snap0');
    // The boot hook's daemon (a check every second) rewrites the file; wait for it, bounded only
    // against a daemon that never does.
    await vm.shOk(
      `until grub-editenv ${MENU_FILE} list | grep -qx 'zshield_restore_point=none available'; do sleep 1; done`,
      { timeoutMs: 120_000 },
    );
    await vm.poweroff();
    expect(await menuShows('golden')).toBe('none available');

    withImagePartition(path.join(workDir, 'system.img'), 1, (mnt) => {
      fs.rmSync(path.join(mnt, 'zshield', 'bootmenu.env'));
    });
    expect(await menuShows('golden')).toBe('unknown');
  });
});
