import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type GoldenManifest, makeGoldenImage } from '../../src/clone/golden-image.js';
import { formatBytes } from '../../src/config/size.js';
import { loadSigningKey, writeNewSigningKey } from '../../src/system/signing.js';
import { BUNDLE } from '../remote/lib.js';
import { type Lan, type Proc, childNamed, makeLan, runIn, until } from './netns.js';
import { REAL_WRITES } from '../../src/system/writes.js';

/**
 * Multicast cloning end to end: the real bundle, real udp-sender and udp-receiver, in network
 * namespaces made here (one sender, four receivers). Targets are files standing for disks.
 */

const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;
const CHUNKS = 10;
const ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C',
};
const HOSTS = ['s', 'r1', 'r2', 'r3', 'r4'];

let lan: Lan;
let dir: string;
let raw: Buffer;
let image: string;
let manifest: GoldenManifest;
let config: string;
const procs: Proc[] = [];

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function zshield(host: string, args: string[]): Proc {
  const p = runIn(lan.ns(host), [process.execPath, BUNDLE, '-c', config, ...args], ENV);
  procs.push(p);
  return p;
}

function receive(host: string, target: string, extra: string[] = []): Proc {
  return zshield(host, ['clone', 'receive', '--target-file', target, '--yes', '--name', host, ...extra]);
}

/** Is chunk `i` of the image already in `file` (written by the stream)? */
function hasChunk(file: string, i: number): boolean {
  if (!existsSync(file)) return false;
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(CHUNK);
    const n = readSync(fd, buf, 0, CHUNK, i * CHUNK);
    return n === CHUNK && buf.equals(raw.subarray(i * CHUNK, (i + 1) * CHUNK));
  } finally {
    closeSync(fd);
  }
}

const udpOf = (p: Proc, comm: string) => {
  const pid = childNamed(p.child.pid!, comm);
  if (pid === null) throw new Error(`no ${comm} under ${p.child.pid}`);
  return pid;
};

function reportOf(p: Proc): {
  result: string;
  repairedChunks: number[];
  bytesFetched: number;
} {
  const line = p
    .out()
    .split('\n')
    .find((l) => l.startsWith('REPORT '));
  if (!line) throw new Error(`no report in:\n${p.out()}`);
  return JSON.parse(line.slice('REPORT '.length));
}

const zBytes = (chunks: number[]) => chunks.reduce((n, i) => n + manifest.chunks[i]!.zLength, 0);

beforeAll(async () => {
  lan = makeLan(HOSTS);
  dir = mkdtempSync(path.join(os.tmpdir(), 'zshield-clone-host-'));
  raw = randomBytes(CHUNKS * CHUNK);
  writeFileSync(path.join(dir, 'raw.img'), raw);
  const vendor = await writeNewSigningKey(REAL_WRITES, path.join(dir, 'vendor.key'));
  await writeNewSigningKey(REAL_WRITES, path.join(dir, 'other.key'));
  image = path.join(dir, 'golden.img.zst');
  manifest = await makeGoldenImage({
    source: path.join(dir, 'raw.img'),
    out: image,
    name: 'appl',
    version: '7',
    key: vendor,
  });
  config = path.join(dir, 'zshield.conf');
  writeFileSync(
    config,
    JSON.stringify({
      log: { file: null },
      clone: {
        trustedKeys: [vendor.publicText],
        signingKey: path.join(dir, 'vendor.key'),
        send: { maxWaitSeconds: 60, retriesUntilDrop: 10, repairWindowSeconds: 120 },
        receive: { startTimeoutSeconds: 60, receiveTimeoutSeconds: 3 },
      },
    }),
  );
});

// A test that failed half-way leaves a sender or receivers behind: none may meet the next test.
afterEach(async () => {
  const live = procs.filter((p) => p.child.exitCode === null && p.child.signalCode === null);
  for (const p of live) process.kill(-p.child.pid!, 'SIGKILL');
  await Promise.all(live.map((p) => p.exited));
  procs.length = 0;
});

const loops: string[] = [];

function attachLoop(backing: string, size: number): string {
  writeFileSync(backing, Buffer.alloc(0));
  truncateSync(backing, size);
  const r = spawnSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`losetup: ${r.stderr}`);
  loops.push(r.stdout.trim());
  return r.stdout.trim();
}

afterAll(() => {
  for (const l of loops) spawnSync('losetup', ['-d', l]);
  lan?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('clone send/receive over udpcast in network namespaces', () => {
  it('four receivers end verified and identical; one killed mid-stream and one with a flipped bit fetch only their bad chunks', async () => {
    // r1 writes to a loop device (a block device: sized by blockdev, its cache flushed before the
    // read-back), the others to files.
    const loop = attachLoop(path.join(dir, 'r1.backing'), raw.length + MiB);
    const t = (h: string) => (h === 'r1' ? loop : path.join(dir, `${h}.disk`));
    const rx = ['r1', 'r2', 'r3', 'r4'].map((h) => receive(h, t(h)));
    const sender = zshield('s', ['clone', 'send', image, '--min-receivers', '4', '--max-bitrate', '100m']);
    await until(() => hasChunk(t('r3'), 1) && hasChunk(t('r4'), 1), 'chunk 1 on r3 and r4');
    // Freeze the stream, so what follows happens mid-stream and before any receiver's check.
    const udpSender = udpOf(sender, 'udp-sender');
    process.kill(udpSender, 'SIGSTOP');
    const presentOnR3 = [...Array(CHUNKS).keys()].filter((i) => hasChunk(t('r3'), i));
    expect(presentOnR3.length).toBeLessThan(CHUNKS - 1);
    process.kill(udpOf(rx[2]!, 'udp-receiver'), 'SIGKILL');
    const fd = openSync(t('r4'), 'r+');
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, CHUNK + 12345);
    b[0]! ^= 0x10;
    writeSync(fd, b, 0, 1, CHUNK + 12345);
    closeSync(fd);
    process.kill(udpSender, 'SIGCONT');

    const codes = await Promise.all(rx.map((p) => p.exited));
    expect(codes, rx.map((p) => p.out()).join('\n----\n')).toEqual([0, 0, 0, 0]);
    expect(await sender.exited, sender.out()).toBe(0);
    for (const h of ['r1', 'r2', 'r3', 'r4']) {
      expect(sha(readFileSync(t(h)).subarray(0, raw.length))).toBe(manifest.sha256);
    }
    expect(rx[0]!.out()).toMatch(/target \/dev\/loop\d+ \(41\.0 MiB\)/);

    const r3 = reportOf(rx[2]!);
    expect(r3.repairedChunks.length).toBeGreaterThan(0);
    for (const i of presentOnR3) expect(r3.repairedChunks).not.toContain(i);
    expect(r3.bytesFetched).toBe(zBytes(r3.repairedChunks));
    expect(r3.bytesFetched).toBeLessThan(manifest.compressedSize);
    const r4 = reportOf(rx[3]!);
    expect(r4.repairedChunks).toContain(1);
    expect(r4.bytesFetched).toBe(zBytes(r4.repairedChunks));
    // The sender's table: four verified rows, and what it served r3 is what r3 fetched.
    const table = sender.out();
    expect(table.match(/^198\.18\.0\.\d+\s+r\d\s+\S+\s+verified\s/gm), table).toHaveLength(4);
    const served = new RegExp(`^${lan.address('r3').replaceAll('.', '\\.')}\\s+r3\\s.*\\s(\\S+ \\S+)$`, 'm');
    expect(table.match(served)?.[1]).toBe(formatBytes(r3.bytesFetched));
  });

  it('a receiver that stops answering is dropped, then recovered by unicast; one expecting another session and one too small write nothing', async () => {
    const t = (h: string) => path.join(dir, `slow-${h}.disk`);
    const old = randomBytes(2 * MiB);
    writeFileSync(t('r3'), old);
    const fast = receive('r1', t('r1'));
    const slow = receive('r2', t('r2'));
    const other = receive('r3', t('r3'), ['--session', 'another-line']);
    const small = attachLoop(path.join(dir, 'small.backing'), 8 * MiB);
    writeFileSync(small, Buffer.alloc(MiB, 0xab));
    const tooSmall = receive('r4', small);
    const sender = zshield('s', [
      'clone',
      'send',
      image,
      '--session',
      'line-1',
      '--min-receivers',
      '4',
      '--max-bitrate',
      '100m',
    ]);
    await until(() => hasChunk(t('r2'), 1), 'chunk 1 on r2');
    const stopped = udpOf(slow, 'udp-receiver');
    process.kill(stopped, 'SIGSTOP');
    await until(() => /receiver 198\.18\.0\.3 dropped/.test(sender.out()), 'the sender to drop r2');
    await until(() => /stream sent/.test(sender.out()), 'the end of the stream');
    process.kill(stopped, 'SIGCONT');

    expect(await fast.exited, fast.out()).toBe(0);
    expect(await slow.exited, slow.out()).toBe(0);
    expect(await other.exited, other.out()).toBe(6);
    expect(other.out()).toMatch(/expects "another-line": nothing written/);
    expect(await tooSmall.exited, tooSmall.out()).toBe(6);
    expect(tooSmall.out()).toMatch(/is smaller than the image \(40\.0 MiB\): nothing written/);
    expect(readFileSync(small).subarray(0, MiB).equals(Buffer.alloc(MiB, 0xab))).toBe(true);
    expect(await sender.exited, sender.out()).toBe(0);
    expect(sha(readFileSync(t('r2')))).toBe(manifest.sha256);
    expect(sha(readFileSync(t('r1')))).toBe(manifest.sha256);
    expect(readFileSync(t('r3')).equals(old)).toBe(true);
    const r2 = reportOf(slow);
    expect(r2.repairedChunks.length).toBeGreaterThan(0);
    expect(r2.bytesFetched).toBe(zBytes(r2.repairedChunks));
    expect(sender.out()).toMatch(/198\.18\.0\.3\s+r2\s+dropped\s+verified/);
    expect(sender.out()).toMatch(/198\.18\.0\.4\s+r3\s+\S+\s+refused/);
    expect(sender.out()).toMatch(/198\.18\.0\.5\s+r4\s+\S+\s+refused/);
  });

  it('a stream signed with a key the receivers do not trust writes nothing', async () => {
    const target = path.join(dir, 'forged.disk');
    const old = randomBytes(MiB);
    writeFileSync(target, old);
    const other = await loadSigningKey(path.join(dir, 'other.key'));
    const rx = receive('r1', target);
    const sender = zshield('s', [
      'clone',
      'send',
      image,
      '--key',
      path.join(dir, 'other.key'),
      '--repair-window',
      '2',
    ]);
    expect(await rx.exited, rx.out()).toBe(10);
    expect(rx.out()).toMatch(new RegExp(`signed by key ${other.keyId}, which is not a trusted key`));
    expect(readFileSync(target).equals(old)).toBe(true);
    expect(await sender.exited, sender.out()).toBe(10);
    expect(sender.out()).toMatch(/198\.18\.0\.2\s+\?\s+\S+\s+no report/);
  });

  it('a target in use (a mounted loop device) is refused before any session is joined', async () => {
    const loop = attachLoop(path.join(dir, 'mounted.backing'), 64 * MiB);
    const mnt = mkdtempSync(path.join(dir, 'mnt-'));
    expect(spawnSync('mkfs.ext4', ['-q', '-F', loop]).status).toBe(0);
    expect(spawnSync('mount', [loop, mnt]).status).toBe(0);
    try {
      const rx = receive('r1', loop);
      expect(await rx.exited, rx.out()).toBe(6);
      expect(rx.out()).toMatch(/is in use \(.*mounted\); nothing was written/);
      expect(rx.out()).not.toMatch(/waiting for a clone session/);
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});
