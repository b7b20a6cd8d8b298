// Self-test of the QEMU virtual appliance bench (test/bench/): the guest boots, finds its disks by
// serial, runs real LVM (PV, VG, LV, snapshot, JSON reports), runs the zshield binary, moves binary
// and multi-megabyte data both ways, runs background jobs, reads fw_cfg, shuts down cleanly and
// keeps its disks across boots; hangs fail with the console tail instead of hanging the test.
// Then the disk-boot mode: the real `zshield golden prepare` writes a golden medium, which boots
// through SeaBIOS, its own GRUB and the bench's boot initramfs; a GRUB entry picked from the host
// (setNextBootEntry) boots once with zshield_recovery=default and the boot hook starts.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import { type BootOptions, USER_NET } from '../bench/qemu-command.js';
import { BENCH_DIR, benchInfo } from '../bench/bench-env.js';
import { readGrubEnv, readPartitionTable, setNextBootEntry } from '../bench/disk-images.js';
import { freshWorkDir } from './lib.js';

const WORK = freshWorkDir('bench-selftest');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const bootOpts: BootOptions = {
  workDir: WORK,
  disks: [
    { name: 'golden', sizeMiB: 2048, serial: 'ZSB-GOLDEN-0' },
    { name: 'system', sizeMiB: 4096, serial: 'ZSB-SYSTEM-0' },
  ],
  fwCfg: { 'zshield/selftest': 'hello, fw_cfg' },
  appendCmdline: 'zshield_selftest=1',
};

/** Shell snippet: the /dev node of the disk with serial $1. */
const bySerial = (serial: string) =>
  `$(for b in /sys/block/vd*; do [ "$(cat $b/serial)" = ${serial} ] && echo /dev/\${b##*/}; done)`;

describe('appliance bench', () => {
  let app: Appliance;

  beforeAll(async () => {
    fs.rmSync(WORK, { recursive: true, force: true });
    app = await Appliance.boot(bootOpts);
    console.log(`bench boot: agent ready after ${app.bootMs} ms`);
  });

  afterAll(async () => {
    await app?.kill();
  });

  it('sees both disks by serial, the kernel command line and fw_cfg', async () => {
    const serials = await app.shOk(
      'for b in /sys/block/vd*; do echo "$(basename $b) $(cat $b/serial)"; done',
    );
    expect(serials).toContain('vda ZSB-GOLDEN-0');
    expect(serials).toContain('vdb ZSB-SYSTEM-0');
    expect(await app.shOk(`blockdev --getsize64 ${bySerial('ZSB-SYSTEM-0')}`)).toBe(
      `${4096 * 1024 * 1024}\n`,
    );
    expect(await app.shOk('cat /proc/cmdline')).toContain('zshield_selftest=1');
    expect(await app.shOk('cat /sys/firmware/qemu_fw_cfg/by_name/opt/zshield/selftest/raw')).toBe(
      'hello, fw_cfg',
    );
    expect(app.consoleLog()).toContain('BENCH-READY');
  });

  it('runs real LVM: PV, VG, LV, ext4, snapshot, JSON report', async () => {
    const dev = bySerial('ZSB-SYSTEM-0');
    await app.shOk(
      `set -e; d=${dev}; pvcreate -y -ff "$d"; vgcreate vgroup "$d"
       lvcreate -y -n lv-root -L 1G vgroup; mkfs.ext4 -q /dev/vgroup/lv-root
       mkdir -p /mnt/root; mount /dev/vgroup/lv-root /mnt/root; echo kept > /mnt/root/marker`,
      { timeoutMs: 120_000 },
    );
    await app.shOk('lvcreate -y -s -n snap0 -L 256M vgroup/lv-root', { timeoutMs: 120_000 });
    const r = await app.run(['lvs', '--reportformat', 'json', '-o', 'lv_name,vg_name,lv_attr,origin']);
    expect(r.code).toBe(0);
    const lvs = (JSON.parse(r.stdout) as { report: { lv: Record<string, string>[] }[] }).report[0]!.lv;
    expect(lvs.map((lv) => lv.lv_name).sort()).toEqual(['lv-root', 'snap0']);
    expect(lvs.find((lv) => lv.lv_name === 'snap0')).toMatchObject({ vg_name: 'vgroup', origin: 'lv-root' });
    expect(lvs.find((lv) => lv.lv_name === 'snap0')!.lv_attr).toMatch(/^s/);
    expect(await app.shOk('ls /dev/mapper')).toContain('vgroup-lv--root');
  });

  it('runs the zshield binary (and zshield_backup is the same file)', async () => {
    const r = await app.run(['zshield', '--version'], { timeoutMs: 60_000 });
    expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(r.stdout.trim()).not.toBe('');
    expect(await app.shOk('readlink /usr/sbin/zshield_backup')).toBe('zshield\n');
  });

  it('moves binary and multi-megabyte data both ways, with stdin and exit codes', async () => {
    const data = randomBytes(5 * 1024 * 1024);
    await app.writeFile('/tmp/in/blob', data, 0o600);
    expect(await app.shOk('sha256sum /tmp/in/blob; stat -c %a /tmp/in/blob')).toBe(
      `${sha256(data)}  /tmp/in/blob\n600\n`,
    );
    expect(sha256(await app.readFile('/tmp/in/blob'))).toBe(sha256(data));
    const big = await app.exec('head -c 3000000 /dev/urandom | tee /tmp/r; sha256sum /tmp/r >&2');
    expect(big.stdout.length).toBe(3_000_000);
    expect(big.stderr.toString()).toBe(`${sha256(big.stdout)}  /tmp/r\n`);
    expect(await app.sh('echo out; echo err >&2; exit 7')).toEqual({
      code: 7,
      stdout: 'out\n',
      stderr: 'err\n',
    });
    expect(await app.sh('tr a-z A-Z', { stdin: 'piped\n' })).toMatchObject({ stdout: 'PIPED\n' });
    expect((await app.run(['printf', '%s|', "it's", 'a b', '$HOME', '*'])).stdout).toBe("it's|a b|$HOME|*|");
    await expect(app.readFile('/no/such/file')).rejects.toThrow(/No such file/);
  });

  it('runs background jobs concurrently, and kills them', async () => {
    const a = app.spawn(
      'for i in $(seq 1 20000); do echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done',
    );
    const b = app.spawn(
      'for i in $(seq 1 20000); do echo bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb; done',
    );
    const sleeper = app.spawn('echo started; exec sleep 600');
    const [ra, rb] = await Promise.all([a.wait({ timeoutMs: 120_000 }), b.wait({ timeoutMs: 120_000 })]);
    expect(ra.stdout).toBe(`${'a'.repeat(48)}\n`.repeat(20000));
    expect(rb.stdout).toBe(`${'b'.repeat(48)}\n`.repeat(20000));
    const pid = await sleeper.pid();
    expect(pid).toBeGreaterThan(1);
    // The pid is known as soon as the job starts; its echo and exec come after, however long the
    // guest takes to get there (the guest loop ends when they did; the timeout bounds a hang).
    expect(
      await app.shOk(
        `until [ "$(cat /proc/${pid}/comm)" = sleep ]; do sleep 0.1; done; cat /proc/${pid}/comm`,
      ),
    ).toBe('sleep\n');
    expect((await sleeper.output()).stdout).toBe('started\n');
    expect(sleeper.finished).toBe(false);
    await sleeper.kill();
    const rs = await sleeper.wait({ timeoutMs: 30_000 });
    expect(rs.code).toBe(137);
    expect((await app.sh(`test -d /proc/${pid}`)).code).not.toBe(0);
  });

  it('a guest command that hangs past its timeout throws with the console tail, and is killed', async () => {
    const err = await app.sh('echo hanging >/dev/console; exec sleep 600', { timeoutMs: 2_000 }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/timed out after 2000 ms/);
    expect(err!.message).toContain('--- console tail');
    expect(err!.message).toContain('BENCH-READY');
    // The timed-out job is killed in the guest (the kill is sent right after the timeout, without
    // being awaited): wait for it to be gone, bounded only against a hang.
    expect(
      await app.sh('while pidof sleep >/dev/null; do sleep 0.1; done', { timeoutMs: 60_000 }),
    ).toMatchObject({
      code: 0,
    });
  });

  it('powers off cleanly, and the disks keep the VG and its data on the next boot', async () => {
    await app.poweroff();
    expect(app.running).toBe(false);
    expect(app.consoleLog()).toMatch(/reboot: Power down/);
    app = await Appliance.boot(bootOpts);
    console.log(`bench boot (second): agent ready after ${app.bootMs} ms`);
    const vgs = JSON.parse(await app.shOk('vgs --reportformat json -o vg_name,lv_count')) as {
      report: { vg: { vg_name: string; lv_count: string }[] }[];
    };
    expect(vgs.report[0]!.vg).toEqual([{ vg_name: 'vgroup', lv_count: '2' }]);
    await app.shOk('vgchange -ay vgroup && mkdir -p /mnt/root && mount -o ro /dev/vgroup/lv-root /mnt/root');
    expect(await app.shOk('cat /mnt/root/marker')).toBe('kept\n');
  });
});

describe('appliance bench: a golden medium booted through GRUB', () => {
  const workDir = freshWorkDir('bench-selftest-grub');
  const disks = [
    { name: 'golden', sizeMiB: 2048, serial: 'ZS-GOLDEN-CF' },
    { name: 'system', sizeMiB: 4096, serial: 'ZS-SYSTEM-HDD' },
  ];
  const fromGolden: BootOptions = { workDir, disks, boot: { from: 'disk', disk: 'golden' } };
  let app: Appliance | undefined;
  let goldenUuid = '';

  afterAll(async () => {
    await app?.kill();
  });

  it('zshield golden prepare writes a golden medium from the prototype', async () => {
    fs.rmSync(workDir, { recursive: true, force: true });
    app = await Appliance.boot({ workDir, disks });
    // A long countdown: the recovery boot below shows its plan and waits; nothing is written.
    await app.writeFile('/etc/zshield/zshield.conf', JSON.stringify({ recovery: { countdownSeconds: 600 } }));
    const t0 = Date.now();
    const r = await app.sh('zshield golden prepare --target ZS-GOLDEN-CF --yes', { timeoutMs: 480_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    console.log(`golden prepare: ${Date.now() - t0} ms`);
    await app.poweroff();
    expect(readPartitionTable(app.diskPath('golden'))).toMatchObject([
      { number: 1, type: 0x83, bootable: true, startBytes: 1024 * 1024 },
    ]);
  });

  it('boots the golden medium through SeaBIOS, GRUB and the boot initramfs: root read-only, agent up', async () => {
    app = await Appliance.boot(fromGolden);
    console.log(`golden disk boot: agent ready after ${app.bootMs} ms`);
    const log = app.consoleLog();
    expect(log).toContain('bench-initrd: switching to /dev/vda1 (ro)');
    expect(await app.shOk("grep ' / ' /proc/mounts")).toMatch(/^\/dev\/vda1 \/ ext4 ro[, ]/);
    const cmdline = await app.shOk('cat /proc/cmdline');
    expect(cmdline).toMatch(/^BOOT_IMAGE=\/boot\/vmlinuz-\S+ root=\S+ ro console=ttyS0/); // from grub.cfg
    expect(cmdline).not.toContain('zshield_recovery');
    goldenUuid = (await app.shOk('findmnt -n -o UUID /')).trim();
    expect(await app.shOk('cat /etc/default/zshield-grub')).toContain(`ZSHIELD_GOLDEN_UUID=${goldenUuid}`);
    expect(await app.shOk('grep -o "menuentry .* --id zshield-[a-z]*" /boot/grub/grub.cfg')).toMatch(
      /Recover to factory default.*zshield-factory\n.*Recover to latest backup.*zshield-latest/,
    );
    // Read-only root, with tmpfs where programs write; LVM works; zshield runs.
    expect((await app.sh('touch /etc/probe')).stderr).toMatch(/Read-only file system/);
    await app.shOk('touch /var/log/probe /var/lib/zshield/probe /tmp/probe /run/probe');
    await app.shOk('vgs');
    expect(await app.shOk('ls -l /etc/rc.local; cat /etc/rc.local')).toContain('zshield boot');
    await app.poweroff();
  });

  it('setNextBootEntry picks "Recover to factory default" for one boot: zshield_recovery=default, the boot hook runs', async () => {
    setNextBootEntry(workDir, 'golden', 'zshield-factory');
    expect(readGrubEnv(workDir, 'golden')).toMatchObject({ next_entry: 'zshield-factory' });
    app = await Appliance.boot(fromGolden);
    expect(app.consoleLog()).toContain('zshield: Recover to factory default'); // the entry's echo
    expect(await app.shOk('cat /proc/cmdline')).toMatch(
      new RegExp(`root=UUID=${goldenUuid} ro console=ttyS0\\S* .*zshield_recovery=default`),
    );
    // rc.local started the boot hook `zshield boot` on the console, where it shows its plan and
    // counts down (600 s here: nothing is written before the reboot below).
    const hook = await app.shOk(
      'for p in $(pidof zshield); do echo "$(tr "\\0" " " </proc/$p/cmdline)$(readlink /proc/$p/fd/0) $(readlink /proc/$p/fd/1)"; done',
    );
    expect(hook).toContain('/usr/sbin/zshield boot --daemon /dev/console /dev/console');
    // A reboot in the guest (what `zshield boot` does after a recovery) ends qemu (-no-reboot).
    app.spawn('exec reboot');
    await app.waitForExit(90_000);
    expect(app.consoleLog()).toMatch(/reboot: Restarting system/);
    // GRUB cleared next_entry (save_env): the next boot is the default entry again.
    expect(readGrubEnv(workDir, 'golden').next_entry ?? '').toBe('');
  });
});

describe('appliance bench: QEMU user networking with restrict=on', () => {
  it('reaches a host port on 127.0.0.1 only through its guestfwd, one connection after another; nothing else', async () => {
    // A server on the host's loopback that answers each connection with its sequence number.
    let connections = 0;
    const server = net.createServer((sock) => {
      connections += 1;
      sock.end(`host-answer-${connections}\n`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const vm = await Appliance.boot({
      workDir: path.join(BENCH_DIR, 'work', 'bench-selftest-net'),
      disks: [],
      network: { kind: 'user', forwards: [{ guestPort: 2222, hostPort: port }] },
    });
    try {
      expect(await vm.shOk('ip -o -4 addr show dev eth0')).toContain(USER_NET.guest);
      const first = await vm.shOk(`nc ${USER_NET.server} 2222 </dev/null`);
      const second = await vm.shOk(`nc ${USER_NET.server} 2222 </dev/null`);
      expect([first.trim(), second.trim()]).toEqual(['host-answer-1', 'host-answer-2']);
      // The same host port by the gateway's address, and a port with no forward: nothing answers
      // (-w bounds the wait for an answer that cannot come).
      expect((await vm.sh(`nc -w 5 ${USER_NET.gateway} ${port} </dev/null`)).stdout).not.toContain(
        'host-answer',
      );
      expect((await vm.sh(`nc -w 5 ${USER_NET.server} 2223 </dev/null`)).stdout).not.toContain('host-answer');
      expect(connections).toBe(2);
    } finally {
      await vm.kill();
      server.close();
    }
  });
});

describe('appliance bench failures', () => {
  it('a boot that does not finish in time throws with the console tail and leaves no qemu behind', async () => {
    const workDir = path.join(BENCH_DIR, 'work', 'bench-selftest-timeout');
    // A guest that can never answer, however fast the machine: the boot initramfs waits an hour
    // for a root device that does not exist, and has no agent. The only possible outcome is the
    // timeout; it is long enough for the kernel's first messages (printed within its first second).
    const err = await Appliance.boot({
      workDir,
      disks: [],
      boot: { from: 'kernel', initrd: benchInfo().bootInitrd },
      appendCmdline: 'root=UUID=00000000-0000-4000-8000-000000000000 rootdelay=3600',
      timeoutMs: 20_000,
    }).then(
      (a) => a.kill().then(() => undefined),
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/boot timed out/);
    expect(err!.message).toContain('--- console tail');
    expect(err!.message).toMatch(/\[ *\d+\.\d+\] /); // kernel messages
    // No qemu process is still using this work folder.
    const users = fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(workDir);
        } catch {
          return false;
        }
      });
    expect(users).toEqual([]);
  });

  it('the boot initramfs powers off with a clear message when the root does not appear; bootUntilExit returns the console', async () => {
    const workDir = path.join(BENCH_DIR, 'work', 'bench-selftest-noroot');
    const log = await Appliance.bootUntilExit({
      workDir,
      disks: [{ name: 'blank', sizeMiB: 64, serial: 'ZSB-BLANK' }],
      boot: { from: 'kernel', initrd: benchInfo().bootInitrd },
      appendCmdline: 'root=UUID=00000000-0000-4000-8000-000000000000 rootdelay=2',
      timeoutMs: 120_000,
    });
    expect(log).toContain(
      'bench-initrd: FATAL: the root device UUID=00000000-0000-4000-8000-000000000000 did not appear within 2s',
    );
    expect(log).toMatch(/reboot: Power down/);
    expect(Appliance.lastExit?.code).toBe(0);
  });

  it('a disk boot from a disk without a boot loader fails at once with the firmware log (not at the timeout)', async () => {
    const workDir = path.join(BENCH_DIR, 'work', 'bench-selftest-noboot');
    const started = Date.now();
    const err = await Appliance.boot({
      workDir,
      disks: [{ name: 'blank', sizeMiB: 64, serial: 'ZSB-BLANK' }],
      boot: { from: 'disk', disk: 'blank', only: true },
      timeoutMs: 120_000,
    }).then(
      (a) => a.kill().then(() => undefined),
      (e: unknown) => e as Error,
    );
    console.log(`disk boot without a boot loader failed after ${Date.now() - started} ms`);
    expect(err?.message).toMatch(/^boot failed: the firmware found no bootable disk/);
    expect(err?.message).toContain('--- firmware (SeaBIOS) log tail');
    expect(err?.message).toMatch(/Boot failed: not a bootable disk/);
  });

  it('bootUntilExit throws with the console tail when the guest does not stop in time', async () => {
    const workDir = path.join(BENCH_DIR, 'work', 'bench-selftest-noexit');
    const err = await Appliance.bootUntilExit({ workDir, disks: [], timeoutMs: 3_000 }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/did not exit within/);
    expect(err?.message).toContain('--- console tail');
  });
});
