import { afterAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import type { BootOptions } from '../bench/qemu-command.js';
import {
  SYSTEM_SERIAL,
  freshWorkDir,
  lv,
  makeSeedLayout,
  tag,
  untilPowerCut,
  writeConfig,
  installShim,
} from './lib.js';

// Issue 11.6 in the bench: a power cut while `image restore` writes lv-root (run from the golden
// root, the image on a file system mounted read-only, as a USB stick would be), then the golden
// medium's next boot (its boot hook, `zshield boot`, with nothing mounted) finds the mark in the VG
// tags, finds the image again by its file system's UUID, writes it again, and lv-root holds the
// image's content. GRUB is not under test: the bench kernel boots the golden root twice.
//
// The cut: a shim on PATH in front of dd (the restore's writer when it streams) runs the real dd
// with `count=` the first 16 MiB of the stream (dd's conv=fsync puts them on the disk), then resets
// the machine through sysrq (`b`: at once, nothing synced, as a power cut; qemu runs with
// -no-reboot and exits). No timing: the cut comes after a given amount written.

const SYSTEM = { name: 'system', sizeMiB: 1024, serial: SYSTEM_SERIAL };
const CONFIG = {
  disks: { system: { serial: SYSTEM_SERIAL } },
  recovery: { countdownSeconds: 0, reboot: false },
  image: { dir: '/media/usb' },
};
const CUT_AFTER_MIB = 16;
const DD_SHIM = `#!/bin/sh
# bench: a power cut once the image restore's writer has written ${CUT_AFTER_MIB} MiB into lv-root
case " $* " in
*" of=/dev/vgroup/lv-root "*) ;;
*) exec /usr/bin/dd "$@" ;;
esac
/usr/bin/dd "$@" count=${CUT_AFTER_MIB}
echo b > /proc/sysrq-trigger
while :; do :; done
`;
/** lv-root's content as the test knows it: the digest of its files (mounted read-only). */
const DIGEST =
  'mkdir -p /mnt/root && mount -o ro /dev/vgroup/lv-root /mnt/root && (cd /mnt/root && sha256sum marker payload); umount /mnt/root';

describe('an image restore cut by a power cut during its write', () => {
  const workDir = freshWorkDir('image-cut');
  let vm: Appliance | undefined;
  const boot = async (opts: Partial<BootOptions> = {}) => {
    vm = await Appliance.boot({ workDir, disks: [SYSTEM], ...opts });
    await writeConfig(vm, CONFIG);
    return vm;
  };
  afterAll(async () => {
    await vm?.kill();
  });

  it("is marked in the VG (the image's file system and SHA-256 in its tags); the golden medium's next boot finds the image by UUID and finishes it: lv-root holds the image's content", {
    timeout: 1_800_000,
  }, async () => {
    const v = await boot();
    await makeSeedLayout(v, 256);
    // lv-root's content (what the image holds; an image must hold an /etc/fstab), then the image into lv-data, kept there.
    await v.shOk(
      `set -e
       mkfs.ext4 -q /dev/vgroup/lv-data
       mkdir -p /media/usb /mnt/root && mount /dev/vgroup/lv-data /media/usb
       mount /dev/vgroup/lv-root /mnt/root
       echo in-the-image > /mnt/root/marker
       mkdir /mnt/root/etc && echo '/dev/vgroup/lv-root / ext4 defaults 0 1' > /mnt/root/etc/fstab
       dd if=/dev/urandom of=/mnt/root/payload bs=1M count=24 2>/dev/null
       umount /mnt/root`,
      { timeoutMs: 180_000 },
    );
    const inImage = await v.shOk(DIGEST);
    const made = await v.run(['zshield', 'image', 'create'], { timeoutMs: 900_000 });
    expect(made.code, made.stderr).toBe(0);
    const file = (await v.shOk('ls /media/usb/*.img.zst')).trim();
    // A change after the image; the image's medium now read-only, as a stick with its switch on.
    await v.shOk(
      'mount /dev/vgroup/lv-root /mnt/root && echo after > /mnt/root/marker && rm /mnt/root/payload && umount /mnt/root && mount -o remount,ro /media/usb && sync',
    );
    expect(await v.shOk(DIGEST).catch((e: Error) => e.message)).not.toBe(inImage);

    await installShim(v, 'dd', DD_SHIM);
    await untilPowerCut(v, v.spawn(`exec zshield image restore ${file} --yes`));

    // The golden medium's next boot: nothing mounted; the VG says what was cut and with what.
    const g = await boot();
    const tags = (await g.shOk('vgs --noheadings -o vg_tags vgroup')).trim();
    expect(tags).toMatch(/zshield_image_restore=[0-9a-f]{8}/);
    expect(tags).toMatch(/zshield_image_src=[-0-9a-f]{36}:\/zshield-/);
    expect(await g.shOk('grep -c " /media/usb " /proc/mounts || true')).toBe('0\n');
    const st = JSON.parse((await g.run(['zshield', 'status', '--json'])).stdout);
    expect(st.recoveryPending).toBe('image-restore');
    expect(st.recoveryNote).toContain(`an image restore of ${file}`);
    // lv-root is half-written: not the image's content (nor the content before the restore).
    expect(await g.shOk(DIGEST).catch((e: Error) => e.message)).not.toBe(inImage);
    // No backup of a half-written root.
    const b = await g.run(['zshield', 'backup']);
    expect(b.code).toBe(6);

    const r = await g.run(['zshield', 'boot'], { timeoutMs: 900_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('zshield: an image restore was interrupted (power cut?): running it again');
    expect(r.stdout).toMatch(/image restore done: vgroup\/lv-root now holds zshield-/);
    expect(await g.shOk(DIGEST)).toBe(inImage);
    expect((await g.sh('e2fsck -f -n /dev/vgroup/lv-root')).code).toBe(0);
    expect(tag(await lv(g, 'snap0'), 'reason')).toBe('post-restore');
    expect(await g.shOk('vgs --noheadings -o vg_tags vgroup')).not.toMatch(/zshield_image/);
    // The image's file system was found by its UUID, mounted for the restore and let go after it.
    expect(await g.shOk('cat /var/log/zshield/zshield.log')).toMatch(
      /the image is on \S+ \(file system [-0-9a-f]{36}\), mounted read-only on \/run\/zshield\/image-source/,
    );
    expect(await g.shOk('grep -c image-source /proc/mounts || true')).toBe('0\n');
  });
});
