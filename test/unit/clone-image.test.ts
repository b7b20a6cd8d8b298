import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import {
  loadManifest,
  makeGoldenImage,
  manifestPathOf,
  verifyGoldenImage,
} from '../../src/golden/golden-image.js';
import { encodeHeader, readHeader, verifyHeader } from '../../src/clone/header.js';
import { parseRange } from '../../src/clone/repair-server.js';
import { TargetWriter, matchesHash } from '../../src/golden/target-writer.js';
import { parseSenderLine, receiverCommand, senderCommand } from '../../src/clone/udpcast.js';
import { resolveCloneTarget } from '../../src/golden/write-target.js';
import { runReceive } from '../../src/clone/receive.js';
import { runGoldenWrite } from '../../src/golden/image-write.js';
import { RefusedError, UsageError, VerifyError } from '../../src/errors.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { generateSigningKey, signDocument } from '../../src/system/signing.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { REAL_WRITES } from '../../src/system/writes.js';

const MiB = 1024 * 1024;

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function made(size = 5 * MiB + 123, chunkSize = MiB) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'zshield-clone-'));
  dirs.push(dir);
  const raw = Buffer.concat([randomBytes(size - 2 * MiB), Buffer.alloc(2 * MiB)]);
  await writeFile(path.join(dir, 'raw'), raw);
  const key = generateSigningKey();
  const out = path.join(dir, 'g.img.zst');
  const m = await makeGoldenImage({
    source: path.join(dir, 'raw'),
    out,
    name: 'appl',
    version: '1',
    key,
    chunkSize,
  });
  return { dir, raw, key, out, m };
}

describe('golden image artefact', () => {
  it('is chunked zstd with a signed manifest that verifies, and zero chunks compress', async () => {
    const { raw, key, out, m } = await made();
    expect(m.size).toBe(raw.length);
    expect(m.chunks).toHaveLength(6);
    expect(m.chunks.at(-1)!.zLength).toBeLessThan(1000);
    const r = await verifyGoldenImage(out, [key.publicText]);
    expect(r.badChunks).toEqual([]);
  });

  it('finds a flipped byte in one chunk, and refuses a manifest signed by another key', async () => {
    const { key, out, m } = await made();
    const buf = await readFile(out);
    buf[m.chunks[2]!.zOffset + 100]! ^= 0x01;
    await writeFile(out, buf);
    expect((await verifyGoldenImage(out, [key.publicText])).badChunks).toEqual([2]);
    await expect(loadManifest(out, [generateSigningKey().publicText])).rejects.toThrow(/not a trusted key/);
  });

  it('refuses an edited manifest', async () => {
    const { key, out } = await made();
    const doc = JSON.parse(await readFile(manifestPathOf(out), 'utf8'));
    doc.payload.version = '2';
    await writeFile(manifestPathOf(out), JSON.stringify(doc));
    await expect(loadManifest(out, [key.publicText])).rejects.toThrow(VerifyError);
  });
});

describe('target writer', () => {
  it('holds the first MiB back until commitHead; verify reads the rest back', async () => {
    const { dir, raw, m } = await made(3 * MiB, MiB);
    const file = path.join(dir, 'target');
    await writeFile(file, Buffer.alloc(3 * MiB, 0xee));
    const w = await TargetWriter.open(REAL_WRITES, file, m.size);
    await w.wipeHead();
    await w.write(0, raw);
    expect((await readFile(file)).subarray(0, MiB).every((b) => b === 0)).toBe(true);
    expect(await w.verify(m)).toEqual([]);
    await w.commitHead();
    await w.close();
    expect((await readFile(file)).equals(raw)).toBe(true);
  });

  it('a chunk that should be zeros is compared, not hashed: one byte set in it is still found', async () => {
    const { dir, raw, m } = await made(5 * MiB, MiB);
    // made(): the last 2 MiB are zeros, so chunks 3 and 4 take the comparison path.
    expect(matchesHash(Buffer.alloc(MiB), m.chunks[4]!.sha256)).toBe(true);
    expect(matchesHash(Buffer.alloc(MiB), m.chunks[1]!.sha256)).toBe(false);
    const file = path.join(dir, 'target');
    const w = await TargetWriter.open(REAL_WRITES, file, m.size);
    await w.write(0, raw);
    await w.write(4 * MiB + 777, Buffer.from([1]));
    await w.write(MiB + 5, Buffer.from([raw[MiB + 5]! ^ 0x40]));
    expect(await w.verify(m)).toEqual([1, 4]);
    await w.close();
  });
});

const NOW = new Date('2026-11-29T10:00:00Z');
const rules = (expectSession: string | null, now = NOW) => ({ expectSession, maxAgeHours: 24, now });

describe('stream header', () => {
  const header = async () => {
    const { key, out, m } = await made(2 * MiB, MiB);
    const manifest = JSON.parse(await readFile(manifestPathOf(out), 'utf8'));
    const session = {
      session: 's1',
      imageId: 'appl@1',
      version: '1',
      size: m.size,
      rootHash: m.rootHash,
      repairUrl: 'http://192.0.2.1:9780',
      startedAt: NOW.toISOString(),
    };
    return { key, m, manifest, session };
  };

  it('round-trips through a byte stream split anywhere, the zstd data after it kept', async () => {
    const { key, manifest, session } = await header();
    const bytes = Buffer.concat([
      encodeHeader({ manifest, session: signDocument(session, key) }),
      Buffer.from('DATA'),
    ]);
    const pieces = [bytes.subarray(0, 3), bytes.subarray(3, 500), bytes.subarray(500)];
    const got = await readHeader(Readable.from(pieces)[Symbol.asyncIterator]());
    expect(got!.rest.toString()).toBe('DATA');
    expect(verifyHeader(got!.header, [key.publicText], rules('s1')).session.session).toBe('s1');
  });

  it('refuses another signer, another session, and a session for a different image', async () => {
    const { key, manifest, session } = await header();
    const other = generateSigningKey();
    const trusted = [key.publicText];
    expect(() =>
      verifyHeader({ manifest, session: signDocument(session, other) }, trusted, rules(null)),
    ).toThrow(/not a trusted key/);
    expect(() =>
      verifyHeader({ manifest, session: signDocument(session, key) }, trusted, rules('s2')),
    ).toThrow(/wrong|expects "s2"/);
    const wrong = { ...session, rootHash: '0'.repeat(64) };
    expect(() => verifyHeader({ manifest, session: signDocument(wrong, key) }, trusted, rules(null))).toThrow(
      /different images/,
    );
  });

  it('refuses a genuine session signed longer ago than clone.maxSessionAgeHours (a replayed capture), or as far ahead', async () => {
    const { key, manifest, session } = await header();
    const doc = { manifest, session: signDocument(session, key) };
    const trusted = [key.publicText];
    const at = (hours: number) => new Date(NOW.getTime() + hours * 3_600_000);
    expect(verifyHeader(doc, trusted, rules(null, at(23.9))).session.session).toBe('s1');
    expect(() => verifyHeader(doc, trusted, rules(null, at(24.1)))).toThrow(
      /signed at 2026-11-29T10:00:00\.000Z, 24\.1 h from this box's clock.*clone\.maxSessionAgeHours is 24: a replayed or stale session, nothing written/,
    );
    expect(() => verifyHeader(doc, trusted, rules(null, at(-25)))).toThrow(RefusedError);
    const undated = { manifest, session: signDocument({ ...session, startedAt: 'now' }, key) };
    expect(() => verifyHeader(undated, trusted, rules(null))).toThrow(/an unreadable time/);
  });

  it('a stream that is not a clone stream is refused before anything else', async () => {
    await expect(
      readHeader(Readable.from([Buffer.from('x'.repeat(64))])[Symbol.asyncIterator]()),
    ).rejects.toThrow(/does not start with a zshield clone header/);
  });
});

describe('udpcast', () => {
  it('argv of both programs carries the settings', () => {
    const s = senderCommand(
      {
        interface: 'eth1',
        portbase: 9002,
        minReceivers: 4,
        maxWaitSeconds: 30,
        startTimeoutSeconds: 60,
        maxBitrate: '200m',
        retriesUntilDrop: 20,
      },
      undefined,
    );
    expect(s.args.join(' ')).toBe(
      '--nokbd --interface eth1 --portbase 9002 --min-receivers 4 --max-wait 30 --start-timeout 60 --retries-until-drop 20 --max-bitrate 200m',
    );
    const r = receiverCommand({
      interface: 'eth0',
      portbase: 9000,
      startTimeoutSeconds: 5,
      receiveTimeoutSeconds: 7,
    });
    expect(r.args).toContain('--receive-timeout');
  });

  it("parses udp-sender's lines (captured from udpcast 20120424)", () => {
    expect(parseSenderLine('New connection from 192.0.2.3  (#1) 00000009')).toEqual({
      kind: 'joined',
      address: '192.0.2.3',
      slot: 1,
    });
    expect(parseSenderLine('Dropping client #1 because of timeout')).toEqual({ kind: 'dropped', slot: 1 });
    expect(parseSenderLine('bytes= 12 230 400  re-xmits=0000012 (  0.0%) slice=0112 -   0')).toEqual({
      kind: 'progress',
      bytes: 12230400,
      retransmits: 12,
    });
  });

  it('the repair server accepts one byte range inside the file only', () => {
    expect(parseRange('bytes=10-19', 100)).toEqual({ start: 10, end: 19 });
    expect(parseRange('bytes=10-100', 100)).toBeNull();
    expect(parseRange('bytes=0-1,5-6', 100)).toBeNull();
    expect(parseRange(undefined, 100)).toBeNull();
  });
});

describe('clone target', () => {
  const ctx = (dir: string) =>
    testContext({
      runner: new RecordingRunner(),
      dir,
      clock: new FakeClock(new Date('2026-11-29T10:00:00Z')),
    });

  it('a new file or an existing one is a target of its own size; a directory, both or neither is a usage error', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const c = ctx(dir);
      expect(await resolveCloneTarget(c, { file: path.join(dir, 'new.img') })).toMatchObject({
        sizeBytes: null,
        isBlock: false,
      });
      await writeFile(path.join(dir, 'old.img'), 'x');
      expect((await resolveCloneTarget(c, { file: path.join(dir, 'old.img') })).describe).toMatch(
        /\(file\)$/,
      );
      await expect(resolveCloneTarget(c, { file: dir })).rejects.toThrow(/is a directory/);
      await expect(resolveCloneTarget(c, { file: 'a', serial: 'b' })).rejects.toThrow(UsageError);
      await expect(resolveCloneTarget(c, {})).rejects.toThrow(/no target: give --target SERIAL/);
    } finally {
      cleanup();
    }
  });
});

describe('golden image write (the production line)', () => {
  it('a dry run shows the plan and writes nothing; without --yes it refuses; with it the target equals the image', async () => {
    const { dir, raw, key, out } = await made();
    const target = path.join(dir, 'target.img');
    await writeFile(target, Buffer.alloc(raw.length, 0xee));
    const ctx = (dryRun: boolean) => {
      const c = testContext({
        runner: new RecordingRunner(dryRun),
        dir,
        clock: new FakeClock(new Date('2026-11-29T10:00:00Z')),
        dryRun,
      });
      c.config.clone.trustedKeys = [key.publicText];
      return c;
    };
    const dry = ctx(true);
    expect(await runGoldenWrite(dry, { image: out, target: { file: target }, yes: false })).toBeNull();
    expect(dry.printed.join('\n')).toMatch(
      /1\. wipe the first 1\.0 MiB[\s\S]*4\. only then write the first MiB/,
    );
    expect((await readFile(target)).every((b) => b === 0xee)).toBe(true);
    await expect(
      runGoldenWrite(ctx(false), { image: out, target: { file: target }, yes: false }),
    ).rejects.toThrow(/needs confirmation/);
    expect((await readFile(target)).every((b) => b === 0xee)).toBe(true);
    const r = await runGoldenWrite(ctx(false), { image: out, target: { file: target }, yes: true });
    expect(r?.chunks).toBeGreaterThan(1);
    expect((await readFile(target)).equals(raw)).toBe(true);
  });
});

describe('clone receive --dry-run', () => {
  it('prints the whole plan (join and check the header first, the head written last) and runs nothing', async () => {
    const { dir, key } = await made();
    const runner = new RecordingRunner(true);
    const c = testContext({
      runner,
      dir,
      clock: new FakeClock(new Date('2026-11-29T10:00:00Z')),
      dryRun: true,
    });
    c.config.clone.trustedKeys = [key.publicText];
    const target = path.join(dir, 'box.img');
    expect(await runReceive(c, { target: { file: target } })).toBeNull();
    const text = c.printed.join('\n');
    expect(text).toMatch(
      /1\. join the session and check its signed header.*\n {5}\(in zshield; nothing written\)/,
    );
    expect(text).toMatch(
      /4\. read every chunk back, fetch the bad or missing ones from the sender, then write the first MiB/,
    );
    expect(runner.calls).toEqual([]);
    await expect(readFile(target)).rejects.toThrow(/ENOENT/);
  });
});
