import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import { freshWorkDir, GOLDEN_SERIAL, lv, makeSeedLayout, SYSTEM_SERIAL, tag, writeConfig } from './lib.js';

// The history on real LVM: a take from a temporary snapshot (mounted read-only, noload) into a
// repository on lv-data, then lv-root wrecked and reset to that fingerprint with `recover
// fingerprint`: restored into a new LV that takes lv-root's name, the old root kept as
// lv-root-prev, a new snap0. The guest runs from the bench's own root (as the golden medium does),
// so lv-root is not the running root. The fetch from a target over QEMU user networking, the
// system disk booting the reset root, replicate A onto B and the blank-disk restore are in
// history-net.test.ts.

const DISKS = [
  { name: 'golden', sizeMiB: 2048, serial: GOLDEN_SERIAL },
  { name: 'system', sizeMiB: 4096, serial: SYSTEM_SERIAL },
];
const CONFIG = {
  log: { file: '/var/log/zshield/zshield.log', level: 'debug' },
  history: { dir: '/data/zshield/history', keyFile: '/data/zshield/history.key' },
};
/**
 * Paths, modes, sizes and data of lv-root, mounted read-only; not /boot, where (with no separate
 * /boot partition in this layout) the reset writes its event.
 */
const DIGEST = `set -e; mkdir -p /mnt/digest; mount -o ro /dev/vgroup/lv-root /mnt/digest
  cd /mnt/digest; d=$(find . \\( -path ./lost+found -o -path ./boot \\) -prune -o -print0 | sort -z | xargs -0 stat -c '%n %f %s' | md5sum)
  f=$(find . \\( -path ./lost+found -o -path ./boot \\) -prune -o -type f -print0 | sort -z | xargs -0 cat | md5sum)
  cd /; umount /mnt/digest; echo "$d $f"`;

describe('history on the virtual appliance', () => {
  let vm: Appliance;

  beforeAll(async () => {
    vm = await Appliance.boot({ workDir: freshWorkDir('history'), disks: DISKS });
    await makeSeedLayout(vm, 1024);
    await vm.shOk(
      `set -e
       mkfs.ext4 -q /dev/vgroup/lv-data
       mkdir -p /data /mnt/root && mount /dev/vgroup/lv-data /data
       mount /dev/vgroup/lv-root /mnt/root
       cp -a /etc /mnt/root/
       mkdir -p /mnt/root/var/lib/app /mnt/root/var/lib/zshield/boot
       head -c 6M /dev/urandom > /mnt/root/var/lib/app/data.bin
       echo kernel-of-the-history > /mnt/root/var/lib/zshield/boot/vmlinuz-test
       echo in-the-history > /mnt/root/marker
       umount /mnt/root`,
      { timeoutMs: 300_000 },
    );
    await writeConfig(vm, CONFIG);
    const init = await vm.run(['zshield', 'history', 'init'], { timeoutMs: 300_000 });
    expect(init.code, init.stderr).toBe(0);
  });
  afterAll(async () => {
    await vm?.kill();
  });

  it('takes lv-root from a temporary snapshot, then resets a wrecked lv-root to that fingerprint', async () => {
    const backup = await vm.run(['zshield', 'backup'], { timeoutMs: 300_000 });
    expect(backup.code, backup.stderr).toBe(0);
    const digest = (await vm.shOk(DIGEST, { timeoutMs: 120_000 })).trim();
    const take = await vm.run(['zshield', 'history', 'take', '--reason', 'bench'], { timeoutMs: 600_000 });
    expect(take.code, take.stderr).toBe(0);
    const id = /history: ([0-9a-f]{64}) /.exec(take.stdout)?.[1];
    expect(id, take.stdout).toBeDefined();
    // The temporary snapshot is gone, the mount point empty, snap0 untouched.
    expect(await lv(vm, 'zshield-history')).toBeUndefined();
    expect((await vm.shOk('grep -c history-root /proc/mounts || true')).trim()).toBe('0');
    expect((await vm.run(['zshield', 'catalog', 'verify'])).code).toBe(0);

    // Later: a change, then lv-root wrecked (no file system left).
    await vm.shOk(
      'mount /dev/vgroup/lv-root /mnt/root && echo after > /mnt/root/marker && umount /mnt/root && dd if=/dev/zero of=/dev/vgroup/lv-root bs=1M count=16 oflag=direct 2>/dev/null',
      { timeoutMs: 120_000 },
    );
    expect((await vm.sh('blkid -p /dev/vgroup/lv-root')).code).not.toBe(0);

    const dry = await vm.run(['zshield', '--dry-run', 'recover', 'fingerprint', id!], { timeoutMs: 300_000 });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`Reset vgroup/lv-root to fingerprint ${id}`));
    expect(await lv(vm, 'lv-root-new')).toBeUndefined();

    const r = await vm.run(['zshield', 'recover', 'fingerprint', id!, '--yes'], { timeoutMs: 900_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/reset done: vgroup\/lv-root now holds/);
    expect(r.stderr + r.stdout).toMatch(/history restore: 100%/);
    expect((await vm.shOk(DIGEST, { timeoutMs: 120_000 })).trim()).toBe(digest);
    // The old (wrecked) root is kept, the new snap0 is of the new root.
    expect(await lv(vm, 'lv-root-prev')).toBeDefined();
    const snap = await lv(vm, 'snap0');
    expect(snap?.origin).toBe('lv-root');
    expect(tag(snap, 'reason')).toBe('post-restore');
    expect(await lv(vm, 'lv-root-new')).toBeUndefined();
  });
});
