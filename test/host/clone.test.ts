import { spawn, spawnSync } from 'node:child_process';
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
import { encodeHeader } from '../../src/clone/header.js';
import { formatBytes } from '../../src/config/size.js';
import { type GoldenManifest, makeGoldenImage } from '../../src/golden/golden-image.js';
import { loadSigningKey, signDocument, writeNewSigningKey } from '../../src/system/signing.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import { BUNDLE } from '../bundle.js';
import { childNamed, type Lan, makeLan, type Proc, runIn, until } from './netns.js';

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

function zshield(host: string, args: string[], configFile = config): Proc {
  const p = runIn(lan.ns(host), [process.execPath, BUNDLE, '-c', configFile, ...args], ENV);
  procs.push(p);
  return p;
}

function receive(host: string, target: string, extra: string[] = [], configFile = config): Proc {
  return zshield(
    host,
    ['clone', 'receive', '--target-file', target, '--yes', '--name', host, ...extra],
    configFile,
  );
}

/** The config with another receive timeout (udp-receiver's --receive-timeout). */
function withReceiveTimeout(seconds: number): string {
  const file = path.join(dir, `receive-timeout-${seconds}.conf`);
  const c = JSON.parse(readFileSync(config, 'utf8'));
  c.clone.receive.receiveTimeoutSeconds = seconds;
  writeFileSync(file, JSON.stringify(c));
  return file;
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

function flipByte(file: string, at: number): void {
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0]! ^= 0xff;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

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
    // No box gives up on the stream early on a loaded machine (a sender stalled for the 3 s of the
    // shared config made r4's udp-receiver quit, so its chunk 1 came from the repair, not from the
    // stream): this case is about a box killed and a box damaged mid-stream.
    const steady = withReceiveTimeout(120);
    const rx = ['r1', 'r2', 'r3', 'r4'].map((h) => receive(h, t(h), [], steady));
    const sender = zshield('s', ['clone', 'send', image, '--min-receivers', '4', '--max-bitrate', '100m']);
    await until(() => hasChunk(t('r3'), 1) && hasChunk(t('r4'), 1), 'chunk 1 on r3 and r4');
    // Freeze the stream, so what follows happens mid-stream and before any receiver's check.
    const udpSender = udpOf(sender, 'udp-sender');
    process.kill(udpSender, 'SIGSTOP');
    const presentOnR3 = [...Array(CHUNKS).keys()].filter((i) => hasChunk(t('r3'), i));
    expect(presentOnR3.length).toBeLessThan(CHUNKS - 1);
    process.kill(udpOf(rx[2]!, 'udp-receiver'), 'SIGKILL');
    // r4's stream cannot end while its udp-receiver is stopped: its chunk 1, written by the
    // stream, is damaged before its check reads it back, whatever the machine's speed.
    const r4Udp = udpOf(rx[3]!, 'udp-receiver');
    process.kill(r4Udp, 'SIGSTOP');
    expect(rx[3]!.out()).not.toMatch(/\[4\/5\]/);
    flipByte(t('r4'), CHUNK + 12345);
    process.kill(r4Udp, 'SIGCONT');
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
    // Two of four verified: the two that refused count as failed, each named with why.
    expect(await sender.exited, sender.out()).toBe(10);
    expect(sender.out()).toMatch(
      /2 of 4 receiver\(s\) not verified: r3 \(198\.18\.0\.4\) refused: joined session "line-1" but this box expects "another-line".*; r4 \(198\.18\.0\.5\) refused: \S+ \(8\.0 MiB\) is smaller than the image/,
    );
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

  it('a target in use in any way (mounted, active swap, backing a mounted loop device, open for writing) is refused before any session is joined', async () => {
    const backing = path.join(dir, 'mounted.backing');
    const loop = attachLoop(backing, 64 * MiB);
    const mnt = mkdtempSync(path.join(dir, 'mnt-'));
    expect(spawnSync('mkfs.ext4', ['-q', '-F', loop]).status).toBe(0);
    expect(spawnSync('mount', [loop, mnt]).status).toBe(0);
    const swap = attachLoop(path.join(dir, 'swap.backing'), 64 * MiB);
    expect(spawnSync('mkswap', [swap]).status).toBe(0);
    expect(spawnSync('swapon', [swap]).status).toBe(0);
    const held = path.join(dir, 'held.disk');
    writeFileSync(held, Buffer.alloc(MiB, 0x5a));
    const fd = openSync(held, 'a');
    const writer = spawn('sleep', ['60'], { stdio: ['ignore', fd, 'ignore'] });
    closeSync(fd);
    try {
      const cases: [string, RegExp][] = [
        [loop, /is in use \(.*mounted\); nothing was written/],
        [swap, new RegExp(`is in use \\(${swap} is active swap\\); nothing was written`)],
        [backing, new RegExp(`is in use \\(backs ${loop}\\); nothing was written`)],
        [
          held,
          new RegExp(
            `is in use \\(open for writing by sleep \\(pid ${writer.pid}\\)\\); nothing was written`,
          ),
        ],
      ];
      for (const [target, why] of cases) {
        // A mounted ext4 (and its backing file) and an active swap change under us: only the held
        // file is hashed; for the others, no session was joined.
        const before = target === held ? sha(readFileSync(target)) : null;
        const rx = receive('r1', target);
        expect(await rx.exited, rx.out()).toBe(6);
        expect(rx.out()).toMatch(why);
        expect(rx.out()).not.toMatch(/waiting for a clone session/);
        if (before) expect(sha(readFileSync(target))).toBe(before);
      }
    } finally {
      writer.kill('SIGKILL');
      spawnSync('swapoff', [swap]);
      spawnSync('umount', [mnt]);
    }
  });

  it('no receiver joined: the sender exits 11 (nothing sent), not 0', async () => {
    const fast = path.join(dir, 'fast.conf');
    const c = JSON.parse(readFileSync(config, 'utf8'));
    c.clone.send.startTimeoutSeconds = 2;
    writeFileSync(fast, JSON.stringify(c));
    const sender = zshield('s', ['clone', 'send', image], fast);
    expect(await sender.exited, sender.out()).toBe(11);
    expect(sender.out()).toMatch(
      /no receiver joined within 2 s \(clone\.send\.startTimeoutSeconds\): nothing was sent/,
    );
  });

  it('an image with one chunk that no longer matches its manifest: exit 10 naming it before a byte goes out, no box touched', async () => {
    const damaged = path.join(dir, 'damaged.img.zst');
    const buf = readFileSync(image);
    buf[manifest.chunks[7]!.zOffset + 1000]! ^= 0x01;
    writeFileSync(damaged, buf);
    writeFileSync(`${damaged}.manifest.json`, readFileSync(`${image}.manifest.json`));
    const target = path.join(dir, 'untouched.disk');
    const old = randomBytes(2 * MiB);
    writeFileSync(target, old);
    const rx = receive('r1', target);
    await until(() => /waiting for a clone session/.test(rx.out()), 'the receiver to wait');
    const sender = zshield('s', ['clone', 'send', damaged]);
    expect(await sender.exited, sender.out()).toBe(10);
    expect(sender.out()).toMatch(
      /chunk\(s\) 7 do not match the signed manifest: nothing sent, no box touched/,
    );
    expect(sender.out()).not.toMatch(/receiver \S+ joined|sending to/);
    expect(rx.out()).not.toMatch(/session "/);
    expect(readFileSync(target).equals(old)).toBe(true);
  });

  it('a full target file system ends that receive at once (udp-receiver killed, the sender told, first MiB unwritten); the other box verifies, the sender exits 10 naming the failed one', async () => {
    const full = mkdtempSync(path.join(dir, 'full-'));
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', full]).status).toBe(0);
    try {
      const onFull = path.join(full, 'disk');
      const good = path.join(dir, 'good.disk');
      const r1 = receive('r1', onFull);
      const r2 = receive('r2', good);
      const sender = zshield('s', ['clone', 'send', image, '--min-receivers', '2', '--max-bitrate', '100m']);
      expect(await r1.exited, r1.out()).toBe(10);
      expect(r1.out()).toMatch(
        /FAILED: writing \S+ at byte \d+ failed \(ENOSPC.*the receive stopped; the target was left without its first MiB/,
      );
      expect(childNamed(r1.child.pid!, 'udp-receiver')).toBeNull();
      const head = Buffer.alloc(MiB);
      const fd = openSync(onFull, 'r');
      readSync(fd, head, 0, MiB, 0);
      closeSync(fd);
      expect(head.equals(Buffer.alloc(MiB))).toBe(true);
      expect(await r2.exited, r2.out()).toBe(0);
      expect(await sender.exited, sender.out()).toBe(10);
      expect(sender.out()).toMatch(
        /1 of 2 receiver\(s\) not verified: r1 \(198\.18\.0\.2\) failed: writing .*ENOSPC/,
      );
      expect(sha(readFileSync(good))).toBe(manifest.sha256);
    } finally {
      spawnSync('umount', [full]);
    }
  });

  it('a stream that stops decompressing mid-way (a broken zstd frame) ends the receive at once, reported to the sender', async () => {
    // The frame breaks after the sender's checks passed (the image changed on its disk while it
    // waited for receivers): the receiver must fail at once, not wait for a check or hang.
    const at = manifest.chunks[3]!.zOffset;
    // Not dropped early on a loaded machine (a dropped box sees a cut stream, not a broken one),
    // yet dropped soon once its udp-receiver is killed, so the sender ends.
    const sender = zshield('s', [
      'clone',
      'send',
      image,
      '--max-bitrate',
      '100m',
      '--retries-until-drop',
      '60',
    ]);
    const target = path.join(dir, 'broken.disk');
    try {
      await until(
        () => /\[2\/3\] stream the signed header/.test(sender.out()),
        'the sender to start udp-sender',
      );
      flipByte(image, at);
      const rx = receive('r1', target);
      expect(await rx.exited, rx.out()).toBe(10);
      expect(`${rx.out()}\n----\n${sender.out()}`).toMatch(
        /FAILED: the stream did not decompress after \d+\.\d MiB .*the target was left without its first MiB/,
      );
      expect(rx.out()).not.toMatch(/received 100%/);
      const head = readFileSync(target).subarray(0, MiB);
      expect(head.equals(Buffer.alloc(MiB))).toBe(true);
      expect(await sender.exited, sender.out()).toBe(10);
      expect(sender.out()).toMatch(/198\.18\.0\.2\s+r1\s+\S+\s+failed/);
    } finally {
      flipByte(image, at);
    }
  });

  it('a genuine session signed longer ago than clone.maxSessionAgeHours (a replayed capture) writes nothing', async () => {
    const vendor = await loadSigningKey(path.join(dir, 'vendor.key'));
    const signedManifest = JSON.parse(readFileSync(`${image}.manifest.json`, 'utf8'));
    const session = {
      session: 'appl@7',
      imageId: 'appl@7',
      version: '7',
      size: manifest.size,
      rootHash: manifest.rootHash,
      repairUrl: `http://${lan.address('s')}:9780`,
      startedAt: new Date(Date.now() - 3 * 24 * 3600_000).toISOString(),
    };
    const capture = path.join(dir, 'capture.bin');
    writeFileSync(
      capture,
      Buffer.concat([
        encodeHeader({ manifest: signedManifest, session: signDocument(session, vendor) }),
        readFileSync(image),
      ]),
    );
    const target = path.join(dir, 'replay.disk');
    const old = randomBytes(MiB);
    writeFileSync(target, old);
    const rx = receive('r1', target);
    const replay = runIn(
      lan.ns('s'),
      [
        'udp-sender',
        '--nokbd',
        '--interface',
        'eth0',
        '--portbase',
        '9000',
        '--min-receivers',
        '1',
        '--retries-until-drop',
        '3',
        '--file',
        capture,
      ],
      ENV,
    );
    procs.push(replay);
    expect(await rx.exited, rx.out()).toBe(6);
    expect(rx.out()).toMatch(
      /session "appl@7" was signed at .*, 72(\.\d)? h from this box's clock .*clone\.maxSessionAgeHours is 24: a replayed or stale session, nothing written/,
    );
    expect(readFileSync(target).equals(old)).toBe(true);
  });
});
