import { chownSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import { type DiskSpec, USER_NET } from '../bench/qemu-command.js';
import { benchInfo } from '../bench/bench-env.js';
import { setNextBootEntry } from '../bench/disk-images.js';
import { TARGET_QUESTION } from '../../src/recovery/offbox.js';
import { type RgwEnv, startRgw } from '../remote/rgw.js';
import { listKeys, makeBucket } from '../remote/s3-lib.js';
import { freePort, KEY_USER, type RemoteEnv, setUpRemoteEnv, uidOf } from '../remote/sshd.js';
import {
  CUT_FLAG,
  cutBoot,
  diskBySerial,
  freshWorkDir,
  GOLDEN_SERIAL,
  lv,
  makeSeedLayout,
  SYSTEM_SERIAL,
  tag,
  writeConfig,
  installShim,
} from './lib.js';

// The history over the network, in the bench: the guest reaches the host's sshd and a one-node
// Ceph RADOS Gateway (both started here, on 127.0.0.1 only, by the remote tests' harness: the
// cluster beside the first boot, so its start costs no wall time) ONLY through QEMU user networking
// with restrict=on and a guestfwd per connection. Box A takes and replicates a backup of its
// lv-root (a bootable copy of the bench root) to an SFTP target and an S3 one (`history target add
// s3://...` in the guest); lv-root is wrecked and the local repository is out of reach (lv-data
// unmounted, as on the golden medium); `recover fingerprint --from` fetches the repository from the
// S3 target and swaps the restored root in; the system disk then boots it. Box B (another system
// disk) restores A's fingerprint from the SFTP target with its own host name (replicate A onto B).
// Then a blank replacement disk is brought back from the SFTP target through the golden medium's
// menu entry "Recover from off-box backup" (real GRUB), the credentials given by a recovery file
// through QEMU's fw_cfg (an S3 recovery file's wrong password refused first), and that disk boots
// through its own GRUB; another blank disk is brought back from the S3 target, the answers typed on
// the console. The other boots are kernel boots.

const GOLDEN: DiskSpec = { name: 'golden', sizeMiB: 512, serial: GOLDEN_SERIAL };
const SYSTEM_A: DiskSpec = { name: 'system-a', sizeMiB: 4096, serial: SYSTEM_SERIAL };
const SYSTEM_B: DiskSpec = { name: 'system-b', sizeMiB: 4096, serial: SYSTEM_SERIAL };
const MEDIUM: DiskSpec = { name: 'golden-medium', sizeMiB: 2048, serial: GOLDEN_SERIAL };
const SYSTEM_C: DiskSpec = { name: 'system-c', sizeMiB: 4096, serial: SYSTEM_SERIAL };
const SYSTEM_D: DiskSpec = { name: 'system-d', sizeMiB: 4096, serial: SYSTEM_SERIAL };
const KEY_FILE = '/etc/zshield/history.key';
const TARGET_KEY = '/etc/zshield/target.key';
/** The RGW as the guest sees it: a guestfwd from this port to the port the harness picked. */
const RGW_GUEST_PORT = 7480;
const S3_ENDPOINT = `http://${USER_NET.server}:${RGW_GUEST_PORT}`;
const S3_PREFIX = 'box-a/';

/**
 * lv-root as a small system that boots: the bench root without the large binaries the checks do
 * not need (zshield, restic), with its own host name and a marker, and its /boot (kernel and
 * initramfs) captured inside it as a factory reset leaves it, so a restore can put it back.
 */
const FILL_ROOT = (hostname: string, marker: string) => `set -e
  mkdir -p /mnt/root && mount /dev/vgroup/lv-root /mnt/root
  rsync -aHAXx --numeric-ids --exclude=/usr/sbin/zshield --exclude=/usr/bin/restic \\
    --exclude='/boot/*' --exclude='/mnt/*' --exclude='/data/*' --exclude=/etc/zshield / /mnt/root/
  echo ${hostname} > /mnt/root/etc/hostname
  printf '127.0.0.1 localhost\\n127.0.1.1 ${hostname}\\n' > /mnt/root/etc/hosts
  mkdir -p /mnt/root/var/lib/zshield/boot && cp -a /boot/. /mnt/root/var/lib/zshield/boot/
  echo ${marker} > /mnt/root/marker
  umount /mnt/root`;

/** The error line zshield prints (stderr also carries its progress lines). */
const errorLine = (r: { stderr: string }) =>
  r.stderr.split('\n').find((l) => l.startsWith('zshield: ')) ?? '';

/** `text` as a pattern that also matches when the socket console's log doubled a byte of it. */
const loose = (text: string) =>
  new RegExp([...text].map((c) => `${c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}{1,2}`).join(''));

/**
 * A power cut in the middle of the off-box restore, at a state rather than after a delay: a shim
 * in front of restic, put in the prototype so the golden medium has it, inert unless the boot
 * carries the fw_cfg entry opt/bench/cut = offbox. Then the real `restic restore` fills the new
 * root, and the machine is reset at once (sysrq `b`, nothing synced) before the restore's next
 * step: a root filled (as far as the disk got it) without its /boot, boot loader or snap0.
 */
const RESTIC_SHIM = `#!/bin/sh
[ "$(cat ${CUT_FLAG} 2>/dev/null)" = offbox ] || exec /usr/bin/restic "$@"
case " $* " in *" restore "*) ;; *) exec /usr/bin/restic "$@" ;; esac
/usr/bin/restic "$@"
echo "bench: power cut after restic restore (exit $?)" > /dev/console
echo b > /proc/sysrq-trigger
while :; do :; done
`;

describe('history over QEMU user networking (restrict=on)', () => {
  let remote: { env: RemoteEnv; stop(): Promise<void> };
  /** The cluster's start, not awaited in beforeAll: it goes on while the first guest boots. */
  let rgwStart: Promise<{ env: RgwEnv; stop(): Promise<void> }> | undefined;
  let rgwPort = 0;
  let bucket = '';
  let workDir: string;
  let dest: string;
  let vm: Appliance | undefined;
  let id = '';
  /** Box A's config and key file, as box B is given them (the standby knows A's repository). */
  let configA = '';
  let keyA = '';
  let passwordA = '';

  beforeAll(async () => {
    rgwPort = await freePort();
    rgwStart = startRgw({ rgwPort });
    // Awaited where it is needed (and in afterAll, which stops it by its pid files).
    rgwStart.catch(() => {});
    remote = await setUpRemoteEnv();
    workDir = freshWorkDir('history-net');
    dest = path.join(remote.env.base, 'history-net-dest');
    mkdirSync(dest, { mode: 0o700 });
    const { uid, gid } = uidOf(KEY_USER);
    chownSync(dest, uid, gid);
  });
  afterAll(async () => {
    await vm?.kill();
    await rgwStart?.then(
      (r) => r.stop(),
      () => {},
    );
    await remote?.stop();
  });

  /** sshd on the guest's port 22, radosgw on RGW_GUEST_PORT, both at USER_NET.server. */
  const net = () => ({
    kind: 'user' as const,
    forwards: [
      { guestPort: 22, hostPort: remote.env.serverA.port },
      { guestPort: RGW_GUEST_PORT, hostPort: rgwPort },
    ],
  });
  const rgw = async (): Promise<RgwEnv> => (await rgwStart!).env;

  async function writeTargetConfig(box: Appliance): Promise<void> {
    await box.writeFile(TARGET_KEY, readFileSync(remote.env.clientKey), 0o600);
    await box.writeFile(
      '/etc/zshield/zshield.conf',
      JSON.stringify({
        log: { file: '/var/log/zshield/zshield.log', level: 'debug' },
        history: {
          dir: '/data/zshield/history',
          keyFile: KEY_FILE,
          retries: 1,
          targets: [
            {
              name: 'site',
              server: USER_NET.server,
              port: 22,
              user: KEY_USER,
              privateKey: TARGET_KEY,
              hostKey: remote.env.serverA.fingerprint,
              directory: dest,
            },
          ],
        },
      }),
      0o600,
    );
  }

  it('box A takes and replicates to SFTP and S3; its wrecked lv-root is reset from the S3 target, and the system disk boots it', {
    timeout: 900_000,
  }, async () => {
    const started = Date.now();
    vm = await Appliance.boot({ workDir, disks: [GOLDEN, SYSTEM_A], network: net() });
    await makeSeedLayout(vm, 512);
    await vm.shOk(FILL_ROOT('box-a', 'in-the-history'), { timeoutMs: 300_000 });
    await vm.shOk('mkfs.ext4 -q /dev/vgroup/lv-data && mkdir -p /data && mount /dev/vgroup/lv-data /data', {
      timeoutMs: 120_000,
    });
    await writeTargetConfig(vm);
    const init = await vm.run(['zshield', 'history', 'init'], { timeoutMs: 300_000 });
    expect(init.code, init.stderr).toBe(0);
    // The S3 target as an operator adds it: the secret on stdin, http:// allowed by name.
    const cluster = await rgw();
    bucket = await makeBucket(cluster);
    const add = await vm.run(
      [
        'zshield',
        'history',
        'target',
        'add',
        'rgw',
        `s3://${bucket}/${S3_PREFIX}`,
        '--endpoint',
        S3_ENDPOINT,
        '--allow-http',
        '--access-key-id',
        cluster.admin.accessKeyId,
        '--secret-stdin',
      ],
      { stdin: `${cluster.admin.secretAccessKey}\n`, timeoutMs: 300_000 },
    );
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout + add.stderr).not.toContain(cluster.admin.secretAccessKey);
    const take = await vm.run(['zshield', 'history', 'take', '--reason', 'bench', '--replicate'], {
      timeoutMs: 600_000,
    });
    expect(take.code, take.stderr).toBe(0);
    id = /history: ([0-9a-f]{64}) /.exec(take.stdout)?.[1] ?? '';
    expect(id, take.stdout).toMatch(/^[0-9a-f]{64}$/);
    // On the host: the target holds the snapshot and the catalog, written through the forward only.
    expect(readFileSync(path.join(dest, 'repo', 'snapshots', id)).length).toBeGreaterThan(0);
    expect(readFileSync(path.join(dest, 'catalog', 'catalog.jsonl'), 'utf8')).toContain(id);
    const objects = await listKeys(cluster, bucket, S3_PREFIX);
    expect(objects.get(`${S3_PREFIX}repo/snapshots/${id}`)).toBeGreaterThan(0);
    expect(objects.get(`${S3_PREFIX}catalog/catalog.jsonl`)).toBeGreaterThan(0);
    configA = (await vm.readFile('/etc/zshield/zshield.conf')).toString();
    keyA = (await vm.readFile(KEY_FILE)).toString();
    passwordA = (await vm.shOk('zshield history password --yes')).trim();

    // lv-root wrecked; the local repository out of reach: the reset must fetch from the target.
    await vm.shOk(
      'umount /data && rmdir /data && dd if=/dev/zero of=/dev/vgroup/lv-root bs=1M count=16 oflag=direct 2>/dev/null',
      { timeoutMs: 120_000 },
    );
    // From the S3 target, named (without --from the fresher catalog would choose it too: its copy
    // holds one more arrival, the SFTP target's).
    const r = await vm.run(['zshield', 'recover', 'fingerprint', id, '--from', 'rgw', '--yes'], {
      timeoutMs: 900_000,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `history: fetching the repository from rgw (s3 ${S3_ENDPOINT}/${bucket}/${S3_PREFIX})`,
    );
    expect(r.stdout).toMatch(/reset done: vgroup\/lv-root now holds/);
    expect(await lv(vm, 'lv-root-prev')).toBeDefined();
    await vm.poweroff();

    // The system disk boots the reset root (the bench kernel and the disks' boot initramfs).
    vm = await Appliance.boot({
      workDir,
      disks: [GOLDEN, SYSTEM_A],
      boot: { from: 'kernel', initrd: benchInfo().bootInitrd },
      appendCmdline: 'root=/dev/mapper/vgroup-lv--root ro',
    });
    expect((await vm.shOk("grep ' / ' /proc/mounts")).split(' ')[0]).toBe('/dev/mapper/vgroup-lv--root');
    expect(await vm.shOk('cat /marker /etc/hostname')).toBe('in-the-history\nbox-a\n');
    // It booted: the reset is confirmed by dropping the old root, as the plan said.
    await vm.shOk('lvremove -y vgroup/lv-root-prev', { timeoutMs: 120_000 });
    expect(await lv(vm, 'lv-root-prev')).toBeUndefined();
    await vm.poweroff();
    console.log(
      `history-net: box A (take, replicate, reset, boot) ${Math.round((Date.now() - started) / 1000)} s`,
    );
  });

  it("box B restores box A's fingerprint from the SFTP target (--from) and keeps its own host name", {
    timeout: 600_000,
  }, async () => {
    expect(id, 'box A made no fingerprint').toMatch(/^[0-9a-f]{64}$/);
    const started = Date.now();
    vm = await Appliance.boot({ workDir, disks: [GOLDEN, SYSTEM_B], network: net() });
    await makeSeedLayout(vm, 512);
    await vm.shOk(FILL_ROOT('box-b', 'b-before'), { timeoutMs: 300_000 });
    await vm.writeFile(TARGET_KEY, readFileSync(remote.env.clientKey), 0o600);
    await vm.writeFile(KEY_FILE, keyA, 0o600);
    await vm.writeFile('/etc/zshield/zshield.conf', configA, 0o600);
    const r = await vm.run(
      ['zshield', 'recover', 'fingerprint', id, '--from', 'site', '--hostname', 'box-b', '--yes'],
      { timeoutMs: 900_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/history: fetching the repository from site /);
    expect(r.stdout).toMatch(/host name box-b/);
    const seen = await vm.shOk(
      'mount -o ro /dev/vgroup/lv-root /mnt/root && cat /mnt/root/marker /mnt/root/etc/hostname && grep -c box-b /mnt/root/etc/hosts; umount /mnt/root',
      { timeoutMs: 120_000 },
    );
    expect(seen).toBe('in-the-history\nbox-b\n1\n');
    await vm.poweroff();
    console.log(`history-net: box B (replicate A onto B) ${Math.round((Date.now() - started) / 1000)} s`);
  });

  it("a blank replacement disk is brought back from the off-box copy by the golden medium's menu entry; cut by a power failure, the medium's next boot runs it again", {
    timeout: 1_200_000,
  }, async () => {
    expect(id, 'box A made no fingerprint').toMatch(/^[0-9a-f]{64}$/);
    const started = Date.now();
    const disks = [MEDIUM, SYSTEM_C];
    const recoveryFile = (over: object = {}) =>
      JSON.stringify({
        target: {
          server: USER_NET.server,
          port: 22,
          user: KEY_USER,
          directory: dest,
          hostKey: remote.env.serverA.fingerprint,
          privateKey: readFileSync(remote.env.clientKey, 'utf8'),
        },
        repositoryPassword: passwordA,
        publicKey: JSON.parse(configA).history.publicKey,
        ...over,
      });
    // The golden medium, made from the bench root; first the operator's checks from its shell.
    vm = await Appliance.boot({ workDir, disks, network: net() });
    // The system disk is not named: the blank disk is the only candidate, and after the cut the
    // disk holding only that restore's marked VG is erased again without being named.
    await writeConfig(vm, {
      disks: { golden: { serial: GOLDEN_SERIAL } },
      recovery: { countdownSeconds: 1 },
    });
    await installShim(vm, 'restic', RESTIC_SHIM);
    await vm.writeFile('/root/bad.json', recoveryFile({ publicKey: 'ssh-ed25519 AAAA' }), 0o600);
    const bad = await vm.run(['zshield', 'recover', 'offbox', '--recovery-file', '/root/bad.json', '--yes']);
    expect(bad.code).toBe(3);
    expect(errorLine(bad)).toBe(
      'zshield: config: recovery file /root/bad.json: publicKey: must be ed25519:<base64>',
    );
    await vm.writeFile('/root/wrong.json', recoveryFile({ repositoryPassword: 'not-it' }), 0o600);
    const wrong = await vm.run(
      ['zshield', 'recover', 'offbox', '--recovery-file', '/root/wrong.json', '--yes'],
      {
        timeoutMs: 300_000,
      },
    );
    expect(wrong.code).toBe(3);
    expect(errorLine(wrong)).toMatch(
      /^zshield: config: recovery file \/root\/wrong\.json: repositoryPassword: the password does not open the repository on /,
    );
    // An S3 recovery file (the http:// endpoint allowed by name): the store answers, the catalog
    // verifies, its keys are fetched, and a wrong password stops there (the whole S3 restore, from
    // the answers on the console, is the next case's).
    const cluster = await rgw();
    const s3Secret = cluster.admin.secretAccessKey;
    const s3Target = {
      type: 's3',
      endpoint: S3_ENDPOINT,
      allowHttp: true,
      bucket,
      prefix: S3_PREFIX,
      accessKeyId: cluster.admin.accessKeyId,
      secretAccessKey: s3Secret,
    };
    await vm.writeFile(
      '/root/s3.json',
      recoveryFile({ target: s3Target, repositoryPassword: 'not-it' }),
      0o600,
    );
    const s3Wrong = await vm.run(
      ['zshield', 'recover', 'offbox', '--recovery-file', '/root/s3.json', '--yes'],
      { timeoutMs: 300_000 },
    );
    expect(s3Wrong.code, s3Wrong.stderr).toBe(3);
    expect(errorLine(s3Wrong)).toBe(
      `zshield: config: recovery file /root/s3.json: repositoryPassword: the password does not open the repository on s3 ${S3_ENDPOINT}/${bucket}/${S3_PREFIX}`,
    );
    expect(s3Wrong.stdout + s3Wrong.stderr).not.toContain(s3Secret);
    await vm.writeFile('/root/good.json', recoveryFile(), 0o600);
    const dry = await vm.run(
      ['zshield', '--dry-run', 'recover', 'offbox', '--recovery-file', '/root/good.json'],
      { timeoutMs: 300_000 },
    );
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`Restore of /dev/vdb from fingerprint ${id}`);
    expect(dry.stdout + dry.stderr).not.toContain(passwordA);
    // Nothing was written: the disk is still blank, no secret is left in the run directory.
    expect((await vm.sh(`blkid -p ${diskBySerial(SYSTEM_SERIAL)}`)).code).not.toBe(0);
    expect((await vm.sh('ls /run/zshield/offbox')).code).not.toBe(0);
    const prep = await vm.run(['zshield', 'golden', 'prepare', '--target', GOLDEN_SERIAL, '--yes'], {
      timeoutMs: 900_000,
    });
    expect(prep.code, prep.stderr).toBe(0);
    await vm.poweroff();

    // The menu entry, picked as an operator would; the recovery file on the "removable medium".
    // The power fails once restic has filled the new root.
    setNextBootEntry(workDir, MEDIUM.name, 'zshield-offbox');
    const boot = (cut?: string) =>
      Appliance.bootUntilExit({
        workDir,
        disks,
        boot: { from: 'disk', disk: MEDIUM.name },
        network: net(),
        fwCfg: { 'zshield-recovery': recoveryFile(), ...(cut ? cutBoot(cut).fwCfg : {}) },
        timeoutMs: 900_000,
      });
    const cutLog = await boot('offbox');
    expect(cutLog).toContain(`Restore of /dev/vdb from fingerprint ${id}`);
    expect(cutLog).toMatch(/bench: power cut after restic restore \(exit 0\)/);
    expect(cutLog).not.toMatch(/restore from off-box backup done/);

    // The medium's next boot (its default entry: no recovery asked) finds the VG marked and runs
    // the off-box restore again, from the wipe, with the recovery file still there.
    const log = await boot();
    expect(log).toContain('zshield: an off-box restore was interrupted (power cut?): running it again');
    expect(log).toContain(`Restore of /dev/vdb from fingerprint ${id}`);
    expect(log).toMatch(/restore from off-box backup done in \d+ s/);
    expect(log).toContain('zshield: rebooting into the system disk');
    expect(log).not.toContain(passwordA);

    // The new disk boots on its own, through its own GRUB, into the fingerprint's root.
    vm = await Appliance.boot({ workDir, disks, boot: { from: 'disk', disk: SYSTEM_C.name, only: true } });
    expect((await vm.shOk("grep ' / ' /proc/mounts")).split(' ')[0]).toBe('/dev/mapper/vgroup-lv--root');
    expect(await vm.shOk('cat /marker /etc/hostname')).toBe('in-the-history\nbox-a\n');
    const snap = await lv(vm, 'snap0');
    expect(snap?.origin).toBe('lv-root');
    expect(tag(snap, 'reason')).toBe('post-restore');
    const events = (await vm.shOk('cat /boot/zshield/events.jsonl')).trim().split('\n');
    expect(JSON.parse(events.at(-1)!)).toMatchObject({ event: 'restore', result: 'ok' });
    expect(await vm.shOk('vgs --noheadings -o vg_tags vgroup')).not.toContain('zshield_offbox_restore');
    await vm.poweroff();
    console.log(
      `history-net: blank disk from the off-box copy ${Math.round((Date.now() - started) / 1000)} s`,
    );
  });
  it('with no recovery file, the menu entry asks on the console for an S3 target (the secrets not echoed) and restores another blank disk from it', {
    timeout: 1_200_000,
  }, async () => {
    expect(id, 'box A made no fingerprint').toMatch(/^[0-9a-f]{64}$/);
    const disks = [MEDIUM, SYSTEM_D];
    setNextBootEntry(workDir, MEDIUM.name, 'zshield-offbox');
    vm = await Appliance.start({
      workDir,
      disks,
      boot: { from: 'disk', disk: MEDIUM.name },
      network: net(),
      consoleInput: true,
    });
    // Each answer typed once its question shows, as an operator at the serial console would.
    const answer = async (question: string, text: string) => {
      await vm!.waitForConsole(loose(question), 300_000);
      await vm!.typeOnConsole(`${text}\r`);
    };
    const cluster = await rgw();
    await answer(TARGET_QUESTION, `s3://${bucket}/${S3_PREFIX}`);
    await answer('endpoint (https://host[:port]): ', S3_ENDPOINT);
    await answer('the endpoint is http:// (no TLS: the data travels in clear); allow it? (yes/no): ', 'yes');
    await answer('region (empty: us-east-1): ', '');
    await answer('access key id: ', cluster.admin.accessKeyId);
    await answer('secret access key: ', cluster.admin.secretAccessKey);
    await answer('repository password: ', passwordA);
    await answer("the catalog's public key (ed25519:...): ", JSON.parse(configA).history.publicKey);
    await answer('fingerprint (empty: the newest): ', '');
    await vm.waitForExit(900_000);
    const log = vm.consoleLog();
    expect(log).toContain(`Restore of /dev/vdb from fingerprint ${id}`);
    expect(log).toContain(`from s3 ${S3_ENDPOINT}/${bucket}/${S3_PREFIX}`);
    expect(log).toMatch(/restore from off-box backup done in \d+ s/);
    expect(log).not.toContain(passwordA);
    expect(log).not.toContain(cluster.admin.secretAccessKey);

    vm = await Appliance.boot({ workDir, disks, boot: { from: 'disk', disk: SYSTEM_D.name, only: true } });
    expect(await vm.shOk('cat /marker /etc/hostname')).toBe('in-the-history\nbox-a\n');
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('post-restore');
    await vm.poweroff();
  });
});
