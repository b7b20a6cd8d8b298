import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { updateArgv } from '../../src/golden/cli.js';
import { makeGoldenImage, manifestPathOf, verifyGoldenImage } from '../../src/golden/golden-image.js';
import { firstMenuEntry, linuxPartitionOffsets } from '../../src/golden/update-boot.js';
import {
  type HandoffRequest,
  decodeArea,
  encodeArea,
  readResult,
  writeHandoffDisk,
} from '../../src/golden/update-handoff.js';
import { detectAccel, proofBootArgs, updateBootArgs } from '../../src/golden/update-qemu.js';
import { DEFAULT_ENTRIES, proofProblems, runGoldenUpdate } from '../../src/golden/update.js';
import { CommandError, RefusedError, VerifyError } from '../../src/errors.js';
import { HANDOFF_SERIAL, PROOF_MARKER } from '../../src/names/golden-update.js';
import { answerGoldenUpdate, findHandoffDisk, hasUpdateKey } from '../../src/golden/update-guest.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { type SigningKey, writeNewSigningKey } from '../../src/system/signing.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { REAL_WRITES } from '../../src/system/writes.js';

const GRUB_CFG = `set default="0"
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-x' {
\tload_video
\tlinux\t/boot/vmlinuz-6.1.0-57-cloud-amd64 root=/dev/vda1 ro console=ttyS0,115200 panic=-1 $vt_handoff
\tinitrd\t/boot/initrd.img-6.1.0-57-cloud-amd64
}
menuentry 'Recover to factory default' --class recovery --id zshield-factory {
\tlinux\t/boot/vmlinuz-6.1.0-57-cloud-amd64 root=UUID=abc ro zshield_recovery=default
}
`;

/** A 3 MiB raw medium: an MBR with one Linux partition at sector 2048, some non-zero bytes. */
function rawMedium(file: string, fill = 0x5a): void {
  const b = Buffer.alloc(3 * 1024 * 1024);
  b.writeUInt16LE(0xaa55, 510);
  b[446 + 4] = 0x83;
  b.writeUInt32LE(2048, 446 + 8);
  b.fill(fill, 1024 * 1024, 1024 * 1024 + 4096);
  writeFileSync(file, b);
}

const argAfter = (argv: readonly string[], flag: string) => argv[argv.indexOf(flag) + 1]!;
const handoffOf = (argv: readonly string[]) =>
  argv.find((a) => a.startsWith('file=') && a.includes('handoff'))!.replace(/^file=([^,]*),.*$/, '$1');
const imageOf = (argv: readonly string[]) =>
  argv.find((a) => a.startsWith('file=') && a.includes('golden.raw'))!.replace(/^file=([^,]*),.*$/, '$1');

describe('golden update: QEMU command lines', () => {
  const disks = { image: '/w/golden.raw', handoff: '/w/handoff.raw' };
  it('the update boot starts the image’s own kernel with the update key and both disks, the image first', () => {
    const a = updateBootArgs(
      'tcg',
      disks,
      { kernel: '/w/vmlinuz', initrd: '/w/initrd', append: 'root=/dev/vda1 ro zshield_update=1' },
      '/w/u.log',
    );
    expect(a.slice(0, 4)).toEqual(['-accel', 'tcg', '-cpu', 'max']);
    expect(argAfter(a, '-kernel')).toBe('/w/vmlinuz');
    expect(argAfter(a, '-initrd')).toBe('/w/initrd');
    expect(argAfter(a, '-append')).toBe('root=/dev/vda1 ro zshield_update=1');
    expect(argAfter(a, '-serial')).toBe('file:/w/u.log');
    expect(a).toContain('-no-reboot');
    const drives = a.filter((_, i) => a[i - 1] === '-drive');
    expect(drives[0]).toMatch(/^file=\/w\/golden.raw,format=raw,/);
    expect(a).toContain(`virtio-blk-pci,drive=handoff,serial=${HANDOFF_SERIAL}`);
    expect(a).not.toContain('-snapshot');
  });
  it('the proof boot goes through the disk’s GRUB, on a throw-away overlay, with KVM when chosen', () => {
    const a = proofBootArgs('kvm', disks, '/w/p.log');
    expect(a).not.toContain('-kernel');
    expect(a).toContain('-snapshot');
    expect(argAfter(a, '-boot')).toBe('c');
    expect(argAfter(a, '-cpu')).toBe('host');
    expect(argAfter(a, '-accel')).toBe('kvm');
  });
});

describe('golden update: the command line', () => {
  it('the command is every word after --, even one that is "update" or looks like an option', () => {
    expect(updateArgv({ _: ['golden', 'update', 'apt-get', 'update', '--yes'] } as never)).toEqual([
      'apt-get',
      'update',
      '--yes',
    ]);
    expect(updateArgv({ _: ['golden', 'update'] } as never)).toEqual([]);
  });
});

describe('golden update: choosing the accelerator', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => {
    t = tempDir();
  });
  afterEach(() => t.cleanup());
  it('no /dev/kvm: TCG, and no trial boot', async () => {
    const r = new RecordingRunner();
    expect((await detectAccel(r, '/k', '/l', { devKvm: path.join(t.dir, 'none') })).accel).toBe('tcg');
    expect(r.calls).toEqual([]);
  });
  it('/dev/kvm and a trial boot that ends by itself: KVM; one that fails or hangs: TCG', async () => {
    const kvm = path.join(t.dir, 'kvm');
    writeFileSync(kvm, '');
    const ok = new RecordingRunner().on('qemu-system-x86_64', { exitCode: 0 });
    expect((await detectAccel(ok, '/k', '/l', { devKvm: kvm })).accel).toBe('kvm');
    expect(ok.calls[0]!.argv).toEqual(expect.arrayContaining(['-accel', 'kvm', '-kernel', '/k']));
    const hung = new RecordingRunner().on('qemu-system-x86_64', { exitCode: 124, stderr: 'timeout' });
    expect((await detectAccel(hung, '/k', '/l', { devKvm: kvm })).accel).toBe('tcg');
  });
});

describe('golden update: reading the image’s boot entry', () => {
  it('takes the first menu entry’s kernel, initrd and arguments, dropping GRUB variables', () => {
    expect(firstMenuEntry(GRUB_CFG)).toEqual({
      title: 'Debian GNU/Linux',
      linux: '/boot/vmlinuz-6.1.0-57-cloud-amd64',
      args: 'root=/dev/vda1 ro console=ttyS0,115200 panic=-1',
      initrd: '/boot/initrd.img-6.1.0-57-cloud-amd64',
    });
    expect(firstMenuEntry('set timeout=1\n')).toBeNull();
  });
  it('finds Linux partitions in the MBR and nothing on a disk without a boot signature', () => {
    const mbr = Buffer.alloc(512);
    expect(linuxPartitionOffsets(mbr)).toEqual([]);
    mbr.writeUInt16LE(0xaa55, 510);
    mbr[446 + 4] = 0x83;
    mbr.writeUInt32LE(2048, 446 + 8);
    mbr[446 + 16 + 4] = 0x82; // swap: not searched
    expect(linuxPartitionOffsets(mbr)).toEqual([1024 * 1024]);
  });
  it('the proof needs every menu title and this boot’s marker', () => {
    const log = `Recover to factory default\nRecover to latest backup (none)\n${PROOF_MARKER} n1\n`;
    expect(proofProblems(log, 'n1', DEFAULT_ENTRIES)).toEqual([]);
    expect(proofProblems(log, 'n2', DEFAULT_ENTRIES)).toHaveLength(1);
    expect(proofProblems('Recover to factory default', 'n1', DEFAULT_ENTRIES)).toHaveLength(2);
  });
});

describe('golden update: the guest side (zshield boot)', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => {
    t = tempDir();
  });
  afterEach(() => t.cleanup());

  function guest(cmdline: string) {
    const sys = path.join(t.dir, 'sys');
    const dev = path.join(t.dir, 'dev');
    for (const d of [`${sys}/vda`, `${sys}/vdb`, dev]) mkdirSync(d, { recursive: true });
    writeFileSync(`${sys}/vda/serial`, 'ZS-GOLDEN-CF\n');
    writeFileSync(`${sys}/vdb/serial`, `${HANDOFF_SERIAL}\n`);
    const cmd = path.join(t.dir, 'cmdline');
    writeFileSync(cmd, cmdline);
    const runner = new RecordingRunner().on('false', { exitCode: 3, stderr: 'it broke' });
    const ctx = testContext({ runner, dir: t.dir, clock: new FakeClock(new Date()) });
    return { ctx, runner, cmd, where: { sysBlock: sys, dev }, disk: path.join(dev, 'vdb') };
  }

  it('the key is zshield_update=1, the last one winning', () => {
    expect(hasUpdateKey('ro zshield_update=1 quiet')).toBe(true);
    expect(hasUpdateKey('ro zshield_update=1 zshield_update=0')).toBe(false);
    expect(hasUpdateKey('ro quiet')).toBe(false);
  });
  it('update boot: remounts / read-write, runs the command, writes its status and output, powers off', async () => {
    const g = guest('root=/dev/vda1 ro zshield_update=1');
    expect(await findHandoffDisk(g.where.sysBlock, g.where.dev)).toBe(g.disk);
    await writeHandoffDisk(g.disk, { mode: 'update', argv: ['false', 'x'], timeoutSeconds: 60 });
    expect(await answerGoldenUpdate(g.ctx, g.cmd, g.where)).toBe(true);
    expect(await readResult(g.disk)).toEqual({ exitCode: 3, output: 'it broke' });
    const argvs = g.runner.calls.map((c) => c.argv.join(' '));
    expect(argvs[0]).toBe('mount -o remount,rw /');
    expect(argvs).toContain('false x');
    expect(argvs.indexOf('mount -o remount,ro /')).toBeGreaterThan(argvs.indexOf('false x'));
    expect(argvs.at(-1)).toBe('poweroff');
  });
  it('a script is written under the run directory and run by /bin/sh', async () => {
    const g = guest('zshield_update=1');
    await writeHandoffDisk(g.disk, { mode: 'update', argv: [], script: 'echo hi\n', timeoutSeconds: 60 });
    await answerGoldenUpdate(g.ctx, g.cmd, g.where);
    const file = path.join(g.ctx.config.paths.runDir, 'golden-update.sh');
    expect(readFileSync(file, 'utf8')).toBe('echo hi\n');
    expect(g.runner.calls.map((c) => c.argv.join(' '))).toContain(`/bin/sh ${file}`);
  });
  it('proof boot: prints the marker with the nonce and powers off; an update request without the key runs nothing', async () => {
    const g = guest('root=/dev/vda1 ro');
    await writeHandoffDisk(g.disk, { mode: 'proof', nonce: 'abc' });
    expect(await answerGoldenUpdate(g.ctx, g.cmd, g.where)).toBe(true);
    expect(g.ctx.printed).toContain(`${PROOF_MARKER} abc`);
    const h = guest('root=/dev/vda1 ro');
    await writeHandoffDisk(h.disk, { mode: 'update', argv: ['false'], timeoutSeconds: 60 });
    expect(await answerGoldenUpdate(h.ctx, h.cmd, h.where)).toBe(false);
    expect(h.runner.calls).toEqual([]);
  });
});

describe('golden update: the whole flow (QEMU and debugfs answered by a recording runner)', () => {
  let t: ReturnType<typeof tempDir>;
  let key: SigningKey;
  let image: string;
  beforeEach(async () => {
    t = tempDir();
    key = await writeNewSigningKey(REAL_WRITES, path.join(t.dir, 'vendor.key'), { writePublic: true });
    rawMedium(path.join(t.dir, 'medium.raw'));
    image = path.join(t.dir, 'box-1.0.img.zst');
    await makeGoldenImage({
      source: path.join(t.dir, 'medium.raw'),
      out: image,
      name: 'box',
      version: '1.0',
      key,
      chunkSize: 1024 * 1024,
    });
  });
  afterEach(() => t.cleanup());

  /** The guest, played by the runner: the update boot changes the image and reports `exitCode`. */
  function vm(opts: { exitCode: number; marker?: boolean; menu?: boolean }) {
    const runner = new RecordingRunner();
    runner.on('debugfs', (argv) => {
      const req = argv[2]!;
      if (req.startsWith('cat ')) return { stdout: GRUB_CFG };
      writeFileSync(req.split(' ')[2]!, 'kernel or initrd');
      return {};
    });
    runner.on('qemu-system-x86_64', (argv) => {
      const handoff = handoffOf(argv);
      if (argv.includes('-kernel')) {
        patch(imageOf(argv), 2 * 1024 * 1024, Buffer.from('UPDATED'));
        patch(handoff, 1024 * 1024, encodeArea({ exitCode: opts.exitCode, output: 'E: no such package' }));
        return {};
      }
      const req = decodeArea<HandoffRequest>(readFileSync(handoff).subarray(0, 1024 * 1024));
      const nonce = req?.mode === 'proof' ? req.nonce : 'none';
      const menu = opts.menu === false ? '' : 'Recover to factory default\nRecover to latest backup (none)\n';
      const marker = opts.marker === false ? '' : `${PROOF_MARKER} ${nonce}\n`;
      writeFileSync(argAfter(argv, '-serial').replace(/^file:/, ''), `${menu}${marker}`);
      return {};
    });
    return runner;
  }

  function patch(file: string, at: number, data: Buffer) {
    const fd = openSync(file, 'r+');
    writeSync(fd, data, 0, data.length, at);
    closeSync(fd);
  }

  async function update(runner: RecordingRunner) {
    const ctx = testContext({
      runner,
      dir: t.dir,
      clock: new FakeClock(new Date()),
      edit: (c) => {
        c.clone.trustedKeys = [key.publicText];
      },
    });
    return runGoldenUpdate(ctx, {
      image,
      argv: ['apt-get', 'install', 'x'],
      keyFile: path.join(t.dir, 'vendor.key'),
      version: '1.1',
      timeoutSeconds: 60,
      accel: 'tcg',
      entries: DEFAULT_ENTRIES,
    });
  }

  const oldBytes = () => [readFileSync(image), readFileSync(manifestPathOf(image))];
  const leftovers = () => readdirSync(t.dir).filter((f) => f.startsWith('.zshield-update-'));

  it('a command that succeeds and a proof boot that shows the menu and the marker: a new signed image beside the old', async () => {
    const before = oldBytes();
    const r = await update(vm({ exitCode: 0 }));
    expect(r!.out).toBe(path.join(t.dir, 'box-1.1.img.zst'));
    const v = await verifyGoldenImage(r!.out, [key.publicText]);
    expect(v.badChunks).toEqual([]);
    expect(v.manifest.version).toBe('1.1');
    expect(v.manifest.name).toBe('box');
    expect(v.manifest.size).toBe(3 * 1024 * 1024);
    expect(oldBytes()).toEqual(before);
    expect((await verifyGoldenImage(image, [key.publicText])).manifest.sha256).not.toBe(v.manifest.sha256);
    expect(leftovers()).toEqual([]);
  });
  it('a failing command: CommandError with its output, the old image as it was, no new image', async () => {
    const before = oldBytes();
    const err = await update(vm({ exitCode: 100 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).code).toBe(100);
    expect((err as CommandError).message).toMatch(/no such package/);
    expect(oldBytes()).toEqual(before);
    expect(existsSync(path.join(t.dir, 'box-1.1.img.zst'))).toBe(false);
    expect(leftovers()).toEqual([]);
  });
  it('a guest that never reports, a proof boot without the marker or without the recovery entries: VerifyError, nothing written', async () => {
    const silent = vm({ exitCode: 0 }).on(/-kernel/, {});
    for (const runner of [silent, vm({ exitCode: 0, marker: false }), vm({ exitCode: 0, menu: false })]) {
      const err = await update(runner).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VerifyError);
      expect(existsSync(path.join(t.dir, 'box-1.1.img.zst'))).toBe(false);
    }
    expect(leftovers()).toEqual([]);
  });
  it('a QEMU that times out: VerifyError saying so', async () => {
    const runner = vm({ exitCode: 0 }).on('qemu-system-x86_64', { exitCode: 124, stderr: 'timed out' });
    await expect(update(runner)).rejects.toThrow(/update boot: QEMU did not end by itself/);
  });
  it('refuses, before booting anything, when the new image file exists', async () => {
    writeFileSync(path.join(t.dir, 'box-1.1.img.zst'), 'x');
    const runner = vm({ exitCode: 0 });
    await expect(update(runner)).rejects.toBeInstanceOf(RefusedError);
    expect(runner.calls).toEqual([]);
  });

  it('dry run: prints the plan, boots nothing, writes nothing', async () => {
    const runner = new RecordingRunner(true);
    const ctx = testContext({
      runner,
      dir: t.dir,
      clock: new FakeClock(new Date()),
      dryRun: true,
      edit: (c) => {
        c.clone.trustedKeys = [key.publicText];
      },
    });
    const r = await runGoldenUpdate(ctx, {
      image,
      argv: ['true'],
      keyFile: path.join(t.dir, 'vendor.key'),
      version: '1.1',
      timeoutSeconds: 60,
      accel: 'auto',
      entries: DEFAULT_ENTRIES,
    });
    expect(r).toBeNull();
    expect(ctx.printed.join('\n')).toMatch(/box-1\.1\.img\.zst/);
    expect(runner.calls).toEqual([]);
    expect(existsSync(path.join(t.dir, 'box-1.1.img.zst'))).toBe(false);
  });
});
