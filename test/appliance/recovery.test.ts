import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import type { DiskSpec } from '../bench/qemu-command.js';
import { setNextBootEntry } from '../bench/disk-images.js';
import {
  CUT_FLAG,
  GOLDEN_SERIAL,
  SYSTEM_SERIAL,
  cutBoot,
  diskBySerial,
  firstErrLine,
  freshWorkDir,
  lv,
  makeSeedLayout,
  tag,
  writeConfig,
  installShim,
} from './lib.js';

// Boot-time recovery through real GRUB: a golden medium made by `zshield golden prepare`, its
// "Recover to factory default" and "Recover to latest backup" entries picked as an operator would
// (grubenv next_entry, what grub-reboot does), the system disk booting on its own, and power cuts
// (the guest killed) in the middle of a factory reset and of a merge.

const GOLDEN: DiskSpec = { name: 'golden', sizeMiB: 2048, serial: GOLDEN_SERIAL };
const SYSTEM: DiskSpec = { name: 'system', sizeMiB: 4096, serial: SYSTEM_SERIAL };
const disks = [GOLDEN, SYSTEM];
const fromGolden = { from: 'disk', disk: 'golden' } as const;
const fromSystem = { from: 'disk', disk: 'system', only: true } as const;

// The power cuts come from inside the guest, at a state, not after a delay: shims on PATH in the
// prototype (so in the golden medium and the roots copied from it) stand in front of rsync and
// lvconvert, inert unless the boot carries the fw_cfg entry opt/bench/cut naming their cut. Then
// they reset the machine through sysrq (`b`: at once, nothing synced, as a power cut; qemu runs with
// -no-reboot and exits), after a line on the console that the test checks.
/**
 * The factory reset's copy (rsync ... / <new root>/): the real rsync runs, and the cut comes once
 * the new root holds /etc/hostname while rsync is still running (it copies in name order: /usr,
 * most of the golden root, is still to come): a root half-copied.
 */
const RSYNC_SHIM = `#!/bin/sh
[ "$(cat ${CUT_FLAG} 2>/dev/null)" = factory-copy ] || exec /usr/bin/rsync "$@"
case " $* " in *" --info=progress2 "*) ;; *) exec /usr/bin/rsync "$@" ;; esac
for dest; do :; done
/usr/bin/rsync "$@" &
pid=$!
until [ -e "\${dest}etc/hostname" ] || ! kill -0 $pid 2>/dev/null; do sleep 0.1; done
kill -0 $pid 2>/dev/null && echo 'bench: power cut during the copy' > /dev/console || echo 'bench: the copy ended before its cut' > /dev/console
echo b > /proc/sysrq-trigger
while :; do :; done
`;
/**
 * The merge (lvconvert --merge -i 1): the cut comes at lvconvert's first progress report below
 * 100 %: the merge is committed in the VG metadata and under way in the kernel, not finished.
 */
const LVCONVERT_SHIM = `#!/bin/sh
[ "$(cat ${CUT_FLAG} 2>/dev/null)" = merge ] || exec /usr/sbin/lvconvert "$@"
case " $* " in *" --merge "*) ;; *) exec /usr/sbin/lvconvert "$@" ;; esac
/usr/sbin/lvconvert "$@" | while IFS= read -r line; do
  printf '%s\n' "$line"
  case $line in
  *Merged:*100.00%*) echo 'bench: the merge ended before its cut' > /dev/console; echo b > /proc/sysrq-trigger ;;
  *Merged:*) echo 'bench: power cut during the merge' > /dev/console; echo b > /proc/sysrq-trigger ;;
  esac
done
`;

/** What a system disk must look like after it booted on its own. */
async function expectBootedFromLvm(vm: Appliance): Promise<void> {
  expect((await vm.shOk("grep ' / ' /proc/mounts")).split(' ')[0]).toBe('/dev/mapper/vgroup-lv--root');
  // The kernel that booted matches the modules in the root it booted.
  expect((await vm.sh('test -d "/lib/modules/$(uname -r)"')).code).toBe(0);
}

describe('recovery through the golden medium', () => {
  let workDir: string;
  let vm: Appliance | undefined;

  beforeAll(async () => {
    workDir = freshWorkDir('recovery');
    // The prototype system (the bench's root) is turned into the golden medium.
    const proto = await Appliance.boot({ workDir, disks });
    await writeConfig(proto, {
      disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } },
      recovery: { countdownSeconds: 2 },
    });
    // The OEM's factory test, run after a factory reset and after a restore.
    await installShim(proto, 'rsync', RSYNC_SHIM);
    await installShim(proto, 'lvconvert', LVCONVERT_SHIM);
    await proto.writeFile(
      '/etc/zshield/hooks.d/10-factory-test',
      '#!/bin/sh\necho "factory test: $ZSHIELD_EVENT ok"\n',
      0o755,
    );
    const r = await proto.run(['zshield', 'golden', 'prepare', '--target', GOLDEN_SERIAL, '--yes'], {
      timeoutMs: 900_000,
    });
    expect(r.code, r.stderr).toBe(0);
    await proto.poweroff();
  });
  afterAll(async () => {
    await vm?.kill();
  });

  it('the golden medium boots read-only through its GRUB, and refuses itself as a target', async () => {
    vm = await Appliance.boot({ workDir, disks, boot: fromGolden });
    const root = (await vm.shOk("grep ' / ' /proc/mounts")).split(' ');
    expect(root[0]).toBe('/dev/vda1');
    expect(root[3]).toMatch(/^ro\b/);
    expect(await vm.shOk('cat /proc/cmdline')).not.toContain('zshield_recovery');
    const menu = await vm.shOk('cat /boot/grub/grub.cfg');
    expect(menu).toMatch(/menuentry 'Recover to factory default' --class recovery --id zshield-factory/);
    // The entry's text ends with the restore point's age, read at boot (grub/40_zshield).
    expect(menu).toMatch(/menuentry 'Recover to latest backup'.* --class recovery --id zshield-latest/);
    const self = await vm.run(['zshield', 'recover', 'factory', '--target', GOLDEN_SERIAL, '--yes']);
    expect(self.code).toBe(6);
    expect(firstErrLine(self)).toMatch(
      /^zshield: \/dev\/vda .* is the disk the running system booted from; it is never a target$/,
    );
    const plan = await vm.run(['zshield', 'recover', 'factory', '--dry-run', '--json']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(JSON.parse(plan.stdout).title).toBe('Factory reset of /dev/vdb');
    await vm.poweroff();
  });

  it('"Recover to factory default" on the blank system disk, cut by a power cut during the copy: the next boot runs it again, and the disk then boots on its own into root on LVM', {
    timeout: 1_800_000,
  }, async () => {
    // One reset, interrupted: the resumed run is the whole reset again from the wipe (the plan is
    // the same; the gate saves a second full reset under TCG). The uninterrupted path is the demo's.
    setNextBootEntry(workDir, 'golden', 'zshield-factory');
    // The system disk capped at 8 MiB/s for this boot, as for the merge's cut below: the copy of
    // the ~250 MiB golden root then lasts half a minute on any host, so the shim, which looks every
    // 0.1 s, finds /etc/hostname copied while most of /usr is still to come.
    const first = await Appliance.bootUntilExit({
      workDir,
      disks: [GOLDEN, { ...SYSTEM, throttleBytesPerSec: 8 * 1024 * 1024 }],
      boot: fromGolden,
      ...cutBoot('factory-copy'),
      timeoutMs: 900_000,
    });
    expect(first).toMatch(/\[\d+\/\d+\] copy the golden root into the new root/);
    expect(first).toContain('bench: power cut during the copy');
    expect(first).not.toMatch(/factory reset done/);
    expect(first).toContain('Factory reset of /dev/vdb');
    expect(first).toMatch(/The factory reset starts in 2 s/);

    // An ordinary boot of the golden medium (next_entry was used up) finds the mark and finishes.
    const log = await Appliance.bootUntilExit({ workDir, disks, boot: fromGolden, timeoutMs: 900_000 });
    expect(log).toContain('a factory reset was interrupted (power cut?): running it again');
    expect(log).toMatch(/factory reset done in \d+ s/);
    expect(log).toContain('factory test: factory-reset ok');
    expect(log).toContain('zshield: rebooting into the system disk');

    vm = await Appliance.boot({ workDir, disks, boot: fromSystem });
    await expectBootedFromLvm(vm);
    const snap = await lv(vm, 'snap0');
    expect(snap?.origin).toBe('lv-root');
    expect(tag(snap, 'reason')).toBe('factory');
    for (const name of ['lv-root', 'lv-data', 'lv-audit']) expect(await lv(vm, name)).toBeDefined();
    expect(await vm.shOk('vgs --noheadings -o vg_tags vgroup')).not.toContain('zshield_factory_reset');
    const status = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(status.events.at(-1)).toMatchObject({
      event: 'factory-reset',
      result: 'ok',
      hooks: [{ hook: '10-factory-test', code: 0 }],
    });
    expect(status.recoveryPending).toBeNull();
  });

  it('"Recover to latest backup": the change after the backup is gone, earlier files and user data stay', {
    timeout: 1_200_000,
  }, async () => {
    const sys = vm!;
    await sys.shOk('echo kept > /etc/before-backup; echo user > /data/user-file; sync');
    const b = await sys.run(['zshield', 'backup']);
    expect(b.code, b.stderr).toBe(0);
    await sys.shOk(
      'echo lost > /etc/after-backup; rm /etc/before-backup.none 2>/dev/null; echo more >> /data/user-file; sync',
    );
    await sys.poweroff();

    setNextBootEntry(workDir, 'golden', 'zshield-latest');
    const log = await Appliance.bootUntilExit({ workDir, disks, boot: fromGolden, timeoutMs: 900_000 });
    expect(log).toMatch(/restore point: vgroup\/snap0, taken \S+ \(reason: manual\)/);
    expect(log).toContain('factory test: restore ok');
    expect(log).toMatch(/restore done: lv-root is back at/);

    vm = await Appliance.boot({ workDir, disks, boot: fromSystem });
    await expectBootedFromLvm(vm);
    expect((await vm.sh('test -e /etc/after-backup')).code).not.toBe(0);
    expect(await vm.shOk('cat /etc/before-backup')).toBe('kept\n');
    expect(await vm.shOk('cat /data/user-file')).toBe('user\nmore\n');
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('post-restore');
    const status = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(status.events.at(-1)).toMatchObject({ event: 'restore', result: 'ok', snapshotReason: 'manual' });
    // The boot hook went on as the daemon (it survives the console's hangup when rcS ends).
    await vm.shOk(
      'i=0; until [ -s /run/zshield/daemon.json ]; do sleep 1; i=$((i+1)); [ $i -lt 90 ] || exit 1; done',
      {
        timeoutMs: 120_000,
      },
    );
    expect(JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout).daemon.running).toBe(true);
    await vm.poweroff();
  });

  it("a power cut during the merge: the system disk's next boot finishes the restore", {
    timeout: 1_800_000,
  }, async () => {
    vm = await Appliance.boot({ workDir, disks, boot: fromSystem });
    // Enough changed blocks after the restore point that the merge takes a while.
    await vm.shOk('dd if=/dev/urandom of=/opt/big bs=1M count=120 2>/dev/null; sync', { timeoutMs: 300_000 });
    await vm.poweroff();
    setNextBootEntry(workDir, 'golden', 'zshield-latest');
    // The system disk capped at 8 MiB/s for this boot: the merge (about 120 MiB read back from
    // snap0 and written to lv-root) then lasts many seconds on any host, so lvconvert's first
    // progress report (after its 1 s interval) comes in its middle; an idle fast host could
    // otherwise merge it all within that second, before the shim can cut.
    const cut = await Appliance.bootUntilExit({
      workDir,
      disks: [GOLDEN, { ...SYSTEM, throttleBytesPerSec: 8 * 1024 * 1024 }],
      boot: fromGolden,
      ...cutBoot('merge'),
      timeoutMs: 900_000,
    });
    expect(cut).toMatch(/\[\d+\/\d+\] merge snap0 into lv-root/);
    expect(cut).toContain('bench: power cut during the merge');
    expect(cut).not.toMatch(/restore done/);

    // The system disk boots (its activation continues the merge); the boot hook finishes the job
    // (lvpoll, /boot put back, new snap0, event) and reboots.
    const log = await Appliance.bootUntilExit({ workDir, disks, boot: fromSystem, timeoutMs: 900_000 });
    expect(log).toMatch(/a restore was interrupted or deferred: finishing it/);
    expect(log).toMatch(/restore done/);
    vm = await Appliance.boot({ workDir, disks, boot: fromSystem });
    await expectBootedFromLvm(vm);
    expect((await vm.sh('test -e /opt/big')).code).not.toBe(0);
    expect(await vm.shOk('cat /etc/before-backup')).toBe('kept\n');
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('post-restore');
    expect(await vm.shOk('vgs --noheadings -o vg_tags vgroup')).not.toContain('zshield_restor');
    const status = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(status.recoveryPending).toBeNull();
    expect(status.events.at(-1)).toMatchObject({ event: 'restore', result: 'ok' });
    await vm.poweroff();
  });

  it('an image of lv-root made on the running system is restored from the golden medium over a wrecked lv-root, and the system disk boots it', {
    timeout: 1_800_000,
  }, async () => {
    // On the system: an image into the user data LV (outside lv-root), then a change after it.
    vm = await Appliance.boot({ workDir, disks, boot: fromSystem });
    await writeConfig(vm, {
      disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } },
      recovery: { countdownSeconds: 2 },
      image: { dir: '/data/images' },
    });
    await vm.shOk('echo in-the-image > /etc/image-marker; sync');
    const made = await vm.run(['zshield', 'image', 'create'], { timeoutMs: 900_000 });
    expect(made.code, made.stderr).toBe(0);
    const file = (await vm.shOk('ls /data/images/*.img.zst')).trim();
    expect(file).toMatch(/^\/data\/images\/zshield-[\w.-]+-\d{8}T\d{6}Z\.img\.zst$/);
    await vm.shOk('echo after-the-image > /etc/image-marker; echo x > /etc/after-image; sync');
    await vm.poweroff();

    // The golden medium's ordinary entry: lv-root is wrecked (no file system left), then the
    // image is written back from the user data LV.
    vm = await Appliance.boot({ workDir, disks, boot: fromGolden });
    await vm.shOk(
      'dd if=/dev/zero of=/dev/vgroup/lv-root bs=1M count=16 oflag=direct 2>/dev/null; mkdir -p /run/img && mount /dev/vgroup/lv-data /run/img',
      { timeoutMs: 120_000 },
    );
    expect((await vm.sh('blkid -p /dev/vgroup/lv-root')).code).not.toBe(0);
    const image = file.replace('/data/', '/run/img/');
    const r = await vm.run(['zshield', 'image', 'restore', image, '--yes'], { timeoutMs: 900_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/image restore done: vgroup\/lv-root now holds zshield-/);
    await vm.shOk('umount /run/img');
    await vm.poweroff();

    vm = await Appliance.boot({ workDir, disks, boot: fromSystem });
    await expectBootedFromLvm(vm);
    expect(await vm.shOk('cat /etc/image-marker')).toBe('in-the-image\n');
    expect((await vm.sh('test -e /etc/after-image')).code).not.toBe(0);
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('post-restore');
    expect(await vm.shOk('ls /data/images')).toContain(file.split('/').pop()!);
    await vm.poweroff();
  });
});

describe('recovery refusals: nothing is written', () => {
  let vm: Appliance;
  const fingerprint = () =>
    vm.shOk(
      'sfdisk -d /dev/vdb 2>&1; lvs -a --noheadings -o lv_name,lv_attr,lv_uuid 2>&1; head -c 4194304 /dev/vdb | sha256sum',
    );

  beforeAll(async () => {
    vm = await Appliance.boot({ workDir: freshWorkDir('refusals'), disks });
    await vm.shOk(
      `printf 'ro zshield_recovery=bogus\\n' > /tmp/cmdline-bogus; printf 'ro zshield_recovery=default\\n' > /tmp/cmdline-default`,
    );
  });
  afterAll(async () => {
    await vm?.kill();
  });

  const refuse = async (
    config: unknown,
    argv: string[],
    code: number,
    line: RegExp,
    opts: { stdin?: string; setup?: string; undo?: string } = {},
  ) => {
    await writeConfig(vm, config);
    const before = await fingerprint();
    if (opts.setup) await vm.shOk(opts.setup);
    let r: Awaited<ReturnType<Appliance['run']>>;
    try {
      r = await vm.sh(argv.map((a) => `'${a}'`).join(' '), { stdin: opts.stdin ?? '' });
    } finally {
      if (opts.undo) await vm.shOk(opts.undo);
    }
    expect({ argv, code: r.code, err: r.stderr }).toMatchObject({ argv, code });
    expect(r.stderr.split('\n').find((l) => l.startsWith('zshield: ')) ?? '').toMatch(line);
    expect(await fingerprint()).toBe(before);
  };
  const named = { disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } } };

  it('factory reset refusals', async () => {
    await refuse(
      {},
      ['zshield', 'boot', '--cmdline-file', '/tmp/cmdline-bogus'],
      2,
      /^zshield: unknown zshield_recovery value "bogus" on the kernel command line$/,
    );
    await refuse(
      // 1 GiB minimum: the 2 GiB golden medium is a candidate too (at the default 4 GiB it is too small).
      { disks: { system: { minSize: '1G' } } },
      ['zshield', 'recover', 'factory', '--yes'],
      6,
      /^zshield: two or more candidate system disks: \/dev\/vda .*, \/dev\/vdb /,
    );
    await refuse(
      { disks: { golden: { serial: GOLDEN_SERIAL }, system: { minSize: '100G' } } },
      ['zshield', 'recover', 'factory', '--yes'],
      6,
      /^zshield: no eligible system disk found \(at least 100 GiB/,
    );
    await refuse(
      { disks: { system: { serial: SYSTEM_SERIAL, minSize: '8G' } } },
      ['zshield', 'recover', 'factory', '--yes'],
      6,
      /^zshield: \/dev\/vdb .* is too small: at least 8.0 GiB is needed$/,
    );
    await refuse(
      { disks: { system: { serial: 'NO-SUCH-DISK' } } },
      ['zshield', 'recover', 'factory', '--yes'],
      5,
      /^zshield: no disk with serial or WWN "NO-SUCH-DISK"$/,
    );
    await refuse(
      named,
      ['zshield', 'recover', 'factory'],
      6,
      /^zshield: The factory reset was not started: it needs confirmation$/,
    );
    await refuse(
      named,
      ['zshield', 'recover', 'factory', '--yes'],
      4,
      /^zshield: required tool not found: sfdisk$/,
      {
        setup: 'command -v sfdisk > /tmp/sfdisk.path && mv "$(cat /tmp/sfdisk.path)" /tmp/sfdisk.hidden',
        undo: 'mv /tmp/sfdisk.hidden "$(cat /tmp/sfdisk.path)"',
      },
    );
    await refuse(
      { ...named, recovery: { countdownSeconds: 20 } },
      ['zshield', 'boot', '--cmdline-file', '/tmp/cmdline-default'],
      9,
      /^zshield: The factory reset was cancelled by the operator; nothing was written$/,
      { stdin: 'c\n' },
    );
  });

  it('restore refusals: no VG, no snap0, an invalid snap0, a merge pending', async () => {
    await refuse(
      named,
      ['zshield', 'recover', 'latest', '--yes'],
      5,
      /^zshield: no volume group vgroup: there is no backup to restore$/,
    );
    await makeSeedLayout(vm);
    await refuse(
      named,
      ['zshield', 'recover', 'latest', '--yes'],
      6,
      /^zshield: there is no backup to restore: vgroup\/snap0 does not exist$/,
    );
    await vm.shOk(
      'lvcreate -q -s -n snap0 -L 16M vgroup/lv-root && dd if=/dev/urandom of=/dev/vgroup/lv-root bs=1M count=48 seek=300 oflag=direct 2>/dev/null',
      { timeoutMs: 180_000 },
    );
    await refuse(
      named,
      ['zshield', 'recover', 'latest', '--yes'],
      6,
      /^zshield: the backup vgroup\/snap0 is invalid \(it overflowed\) and cannot be restored$/,
    );
    await vm.shOk(
      'lvremove -q -y vgroup/snap0 && lvcreate -q -s -n snap0 -L 200M vgroup/lv-root && mkdir -p /mnt/r && mount /dev/vgroup/lv-root /mnt/r && lvconvert --merge -i 1 vgroup/snap0',
      { timeoutMs: 180_000 },
    );
    await refuse(
      named,
      ['zshield', 'recover', 'latest', '--yes'],
      6,
      /^zshield: a restore \(merge of snap0 into lv-root\) is already pending$/,
    );
  });
});

describe('recover latest without a /boot partition, and with a /boot that cannot be mounted', () => {
  // Issue 11.2: everything the phases after the merge need is checked before it (a merge cannot be
  // undone). Prepared by hand on a blank disk, booted from the bench kernel: GRUB is not under test.
  let vm: Appliance;
  const named = { disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } } };
  const disk = diskBySerial(SYSTEM_SERIAL);
  // lv-root's and snap0's identity and content, and the VG's tags: what a refused restore must not change.
  const fingerprint = () =>
    vm.shOk(
      'lvs -a --noheadings -o lv_name,lv_attr,lv_uuid,lv_tags vgroup; vgs --noheadings -o vg_tags vgroup; vgchange -q -ay vgroup >/dev/null; head -c 16777216 /dev/vgroup/lv-root | sha256sum; head -c 16777216 /dev/vgroup/snap0 | sha256sum',
      { timeoutMs: 120_000 },
    );
  const marker = async () => {
    await vm.shOk('mkdir -p /mnt/root && mount -o ro /dev/vgroup/lv-root /mnt/root');
    try {
      return await vm.shOk('cat /mnt/root/marker');
    } finally {
      await vm.shOk('umount /mnt/root');
    }
  };
  /** A restore point, then a change after it; the VG left inactive, as the golden medium finds it. */
  const backupThenChange = () =>
    vm.shOk(
      `set -e
       lvcreate -q -y -s -n snap0 -L 200M --addtag zshield_reason=manual --addtag zshield_time=$(date +%s) --addtag zshield_boot=none vgroup/lv-root
       mount /dev/vgroup/lv-root /mnt/root && echo after > /mnt/root/marker && umount /mnt/root
       vgchange -q -an vgroup`,
      { timeoutMs: 180_000 },
    );

  beforeAll(async () => {
    vm = await Appliance.boot({ workDir: freshWorkDir('boot-checks'), disks });
    await writeConfig(vm, named);
  });
  afterAll(async () => {
    await vm?.kill();
  });

  it('no separate /boot (the seed layout: the PV is partition 1): the plan says so and the restore goes on without it', {
    timeout: 600_000,
  }, async () => {
    await makeSeedLayout(vm);
    await backupThenChange();
    const r = await vm.run(['zshield', 'recover', 'latest', '--yes'], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      'note: no separate /boot: no /boot file system was recorded for this volume group',
    );
    expect(r.stdout).toMatch(/^ {2}\d+\. activate the volume group vgroup$/m);
    expect(r.stdout).toMatch(/restore done: lv-root is back at/);
    expect(await marker()).toBe('before\n');
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('post-restore');
    expect(await vm.shOk('vgs --noheadings -o vg_tags vgroup')).not.toContain('zshield_restor');
  });

  it('a /boot recorded at factory reset whose file system is gone: refused before the merge, lv-root and snap0 unchanged', {
    timeout: 600_000,
  }, async () => {
    await vm.shOk(
      `set -e
       vgremove -q -f vgroup >/dev/null
       wipefs -q -a "${disk}1" && wipefs -q -a "${disk}"
       printf 'start=2048, size=131072, type=83\\nstart=133120, type=8e\\n' | sfdisk -q "${disk}"
       mkfs.ext4 -q -L zs-boot "${disk}1"
       pvcreate -q -ff -y "${disk}2"
       vgcreate -q --addtag zshield_boot_uuid=$(blkid -s UUID -o value "${disk}1") vgroup "${disk}2"
       lvcreate -q -y -L 1024M -n lv-root vgroup
       mkfs.ext4 -q /dev/vgroup/lv-root
       mount /dev/vgroup/lv-root /mnt/root && echo before > /mnt/root/marker && umount /mnt/root
       # The superblock of /boot destroyed: nothing can mount it now.
       dd if=/dev/zero of="${disk}1" bs=64k count=1 conv=fsync 2>/dev/null`,
      { timeoutMs: 180_000 },
    );
    await backupThenChange();
    const before = await fingerprint();
    await vm.shOk('vgchange -q -an vgroup');
    const r = await vm.run(['zshield', 'recover', 'latest', '--yes'], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(6);
    expect(firstErrLine(r)).toMatch(
      /^zshield: the system's \/boot \(file system UUID [-0-9a-f]+, recorded at factory reset\) is on no disk/,
    );
    // Shown, then refused by its checks: no step ran (the VG is not even activated).
    expect(r.stdout).toContain('checks first: ');
    expect(await vm.shOk('lvs --noheadings -o lv_attr vgroup/lv-root')).toMatch(/^\s*\S{4}-/);
    expect(await fingerprint()).toBe(before);
    expect(await marker()).toBe('after\n');
  });
});
