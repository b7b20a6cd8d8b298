import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeGoldenImage, manifestPathOf } from '../../src/golden/golden-image.js';
import { runGoldenKey, runGoldenMake } from '../../src/golden/golden-make.js';
import { runReceive } from '../../src/clone/receive.js';
import { runSend } from '../../src/clone/send.js';
import { DEFAULT_ENTRIES, runGoldenUpdate } from '../../src/golden/update.js';
import { verifyWrittenDisk } from '../../src/golden/verify-disk.js';
import { runGoldenWrite } from '../../src/golden/image-write.js';
import { NotFoundError, RefusedError, UsageError, VerifyError } from '../../src/errors.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { writeNewSigningKey } from '../../src/system/signing.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import { FakeClock, testContext } from './helpers/context.js';

// Issue 21 (cloning that fails safe) and issue 20 (a dry run makes every check of the real run):
// the golden image and clone commands' checks come before anything is written or sent.

const MiB = 1024 * 1024;
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function fixture() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'zshield-clone-safety-'));
  dirs.push(dir);
  const raw = Buffer.concat([randomBytes(3 * MiB), Buffer.alloc(MiB)]);
  await writeFile(path.join(dir, 'raw'), raw);
  const keyFile = path.join(dir, 'vendor.key');
  const key = await writeNewSigningKey(REAL_WRITES, keyFile);
  const image = path.join(dir, 'appl-1.img.zst');
  const m = await makeGoldenImage({
    source: path.join(dir, 'raw'),
    out: image,
    name: 'appl',
    version: '1',
    key,
    chunkSize: MiB,
  });
  /** Flips one byte inside chunk `i`'s frame: the image keeps its size, the chunk no longer matches. */
  const damage = async (i: number) => {
    const buf = await readFile(image);
    buf[m.chunks[i]!.zOffset + Math.floor(m.chunks[i]!.zLength / 2)]! ^= 0x40;
    await writeFile(image, buf);
  };
  const ctx = (opts: { dryRun?: boolean; runner?: RecordingRunner } = {}) => {
    const c = testContext({
      runner: opts.runner ?? new RecordingRunner(opts.dryRun ?? false),
      dir,
      clock: new FakeClock(new Date('2026-11-29T10:00:00Z')),
      dryRun: opts.dryRun ?? false,
    });
    c.config.clone.trustedKeys = [key.publicText];
    c.config.clone.signingKey = keyFile;
    return c;
  };
  return { dir, raw, keyFile, key, image, m, damage, ctx };
}

const listing = async (dir: string) => (await readdir(dir)).sort();

describe('golden image make', () => {
  it('checks --name and --image-version (letters, digits, .-_+) before anything', async () => {
    const f = await fixture();
    const req = { source: path.join(f.dir, 'raw'), keyFile: f.keyFile, force: false };
    for (const [name, version] of [
      ['a b/c', '1'],
      ['appl', '../x'],
      ['appl', '-1'],
      ['appl', ''],
    ] as const) {
      await expect(
        runGoldenMake(f.ctx(), { ...req, out: path.join(f.dir, 'x.img.zst'), name, version }),
      ).rejects.toThrow(UsageError);
    }
    expect(existsSync(path.join(f.dir, 'x.img.zst'))).toBe(false);
    const ok = await runGoldenMake(f.ctx(), {
      ...req,
      out: path.join(f.dir, 'y.img.zst'),
      name: 'Appl_X-2',
      version: '2.0.1+rc.1',
    });
    expect(ok?.version).toBe('2.0.1+rc.1');
  });

  it('never overwrites a released image (exit 6) unless --force; a dry run refuses the same way and writes nothing', async () => {
    const f = await fixture();
    const before = [await readFile(f.image), await readFile(manifestPathOf(f.image))];
    const req = {
      source: path.join(f.dir, 'raw'),
      out: f.image,
      name: 'appl',
      version: '1',
      keyFile: f.keyFile,
      force: false,
    };
    for (const dryRun of [true, false]) {
      const err = await runGoldenMake(f.ctx({ dryRun }), req).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RefusedError);
      expect((err as Error).message).toMatch(/a released golden image is never overwritten/);
    }
    expect((await readFile(f.image)).equals(before[0]!)).toBe(true);
    expect((await readFile(manifestPathOf(f.image))).equals(before[1]!)).toBe(true);
    const files = await listing(f.dir);
    const dry = f.ctx({ dryRun: true });
    expect(await runGoldenMake(dry, { ...req, force: true })).toBeNull();
    expect(dry.printed.join('\n')).toMatch(/a released image there is replaced \(--force\)/);
    expect(await listing(f.dir)).toEqual(files);
    expect((await runGoldenMake(f.ctx(), { ...req, force: true }))?.name).toBe('appl');
  });

  it('a dry run makes the real run’s checks: an empty source exits 6, a missing folder 5, a missing key 5', async () => {
    const f = await fixture();
    await writeFile(path.join(f.dir, 'empty'), '');
    const req = {
      source: path.join(f.dir, 'empty'),
      out: path.join(f.dir, 'new.img.zst'),
      name: 'appl',
      version: '3',
      keyFile: f.keyFile,
      force: false,
    };
    for (const dryRun of [true, false]) {
      await expect(runGoldenMake(f.ctx({ dryRun }), req)).rejects.toThrow(/holds no golden medium/);
      await expect(runGoldenMake(f.ctx({ dryRun }), req)).rejects.toBeInstanceOf(RefusedError);
      const inMissing = { ...req, source: path.join(f.dir, 'raw'), out: path.join(f.dir, 'no/x.img.zst') };
      await expect(runGoldenMake(f.ctx({ dryRun }), inMissing)).rejects.toBeInstanceOf(NotFoundError);
      const noKey = { ...req, source: path.join(f.dir, 'raw'), keyFile: path.join(f.dir, 'none.key') };
      await expect(runGoldenMake(f.ctx({ dryRun }), noKey)).rejects.toBeInstanceOf(NotFoundError);
    }
    expect(existsSync(req.out)).toBe(false);
  });
});

describe('golden image key', () => {
  it('--dry-run shows the plan and writes no key; an existing key is refused before anything', async () => {
    const f = await fixture();
    const file = path.join(f.dir, 'new.key');
    const dry = f.ctx({ dryRun: true });
    expect(await runGoldenKey(dry, file)).toBeNull();
    expect(dry.printed.join('\n')).toMatch(/Make a new vendor signing key/);
    expect(existsSync(file)).toBe(false);
    expect(existsSync(`${file}.pub`)).toBe(false);
    expect(await runGoldenKey(f.ctx(), file)).toMatch(/^ed25519:/);
    expect(existsSync(`${file}.pub`)).toBe(true);
    for (const dryRun of [true, false])
      await expect(runGoldenKey(f.ctx({ dryRun }), file)).rejects.toThrow(/never overwritten/);
  });
});

describe('golden image write of a damaged image', () => {
  it('the dry run fails like the real write (exit 10 naming the chunk), and the real write wipes nothing', async () => {
    const f = await fixture();
    await f.damage(2);
    const target = path.join(f.dir, 'disk');
    const old = randomBytes(f.raw.length);
    await writeFile(target, old);
    for (const dryRun of [true, false]) {
      const err = await runGoldenWrite(f.ctx({ dryRun }), {
        image: f.image,
        target: { file: target },
        yes: true,
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VerifyError);
      expect((err as Error).message).toMatch(
        /chunk\(s\) 2 do not match the signed manifest: nothing was written/,
      );
    }
    expect((await readFile(target)).equals(old)).toBe(true);
  });
});

describe('golden image verify --target', () => {
  it('checks a written disk against the manifest alone, naming the bad chunks', async () => {
    const f = await fixture();
    const disk = path.join(f.dir, 'disk');
    await writeFile(disk, Buffer.concat([f.raw, Buffer.alloc(MiB, 7)]));
    const ok = await verifyWrittenDisk(f.ctx(), f.image, disk);
    expect(ok.badChunks).toEqual([]);
    expect(ok.keyId).toBe(f.key.keyId);
    const bad = Buffer.from(f.raw);
    bad[1 * MiB + 5]! ^= 1;
    bad[3 * MiB + 9]! = 1; // inside the all-zero chunk
    await writeFile(disk, bad);
    expect((await verifyWrittenDisk(f.ctx(), f.image, disk)).badChunks).toEqual([1, 3]);
    await writeFile(disk, f.raw.subarray(0, 2 * MiB + 10));
    expect((await verifyWrittenDisk(f.ctx(), f.image, disk)).badChunks).toEqual([2, 3]);
    await expect(verifyWrittenDisk(f.ctx(), f.image, path.join(f.dir, 'none'))).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });
});

describe('clone send checks before a byte goes out', () => {
  it('a chunk that no longer matches its manifest: exit 10 naming it, no box powered, no udp-sender; the dry run the same', async () => {
    const f = await fixture();
    await f.damage(1);
    for (const dryRun of [true, false]) {
      const runner = new RecordingRunner(dryRun);
      const c = f.ctx({ dryRun, runner });
      const err = await runSend(c, { image: f.image }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VerifyError);
      expect((err as Error).message).toMatch(
        /chunk\(s\) 1 do not match the signed manifest: nothing sent, no box touched/,
      );
      expect(runner.calls).toEqual([]);
    }
  });

  it('an interface without an address fails before anything runs; the dry run shows the plan and runs nothing', async () => {
    const f = await fixture();
    const runner = new RecordingRunner();
    const c = f.ctx({ runner });
    await expect(runSend(c, { image: f.image, interface: 'zsnone0' })).rejects.toThrow(
      /network interface zsnone0 has no IPv4 address/,
    );
    expect(runner.calls).toEqual([]);
    const dryRunner = new RecordingRunner(true);
    const dry = f.ctx({ dryRun: true, runner: dryRunner });
    const iface = Object.entries(os.networkInterfaces()).find(([, a]) =>
      (a ?? []).some((x) => x.family === 'IPv4' && !x.internal),
    )?.[0];
    if (iface) {
      expect(await runSend(dry, { image: f.image, interface: iface })).toBeNull();
      const text = dry.printed.join('\n');
      expect(text).toMatch(/checks first: every chunk of the image matches its signed manifest/);
      expect(dryRunner.calls).toEqual([]);
    }
  });
});

describe('clone receive', () => {
  it('without --yes: the plan is shown, then refused (exit 6), nothing joined or written', async () => {
    const f = await fixture();
    const runner = new RecordingRunner();
    const c = f.ctx({ runner });
    const target = path.join(f.dir, 'box.img');
    const err = await runReceive(c, { target: { file: target } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RefusedError);
    expect((err as Error).message).toMatch(/The receive was not started: it needs confirmation/);
    expect(runner.calls).toEqual([]);
    expect(existsSync(target)).toBe(false);
  });
});

describe('golden update of a damaged image', () => {
  it('the dry run fails like the real run (exit 10 naming the chunk), before anything boots', async () => {
    const f = await fixture();
    await f.damage(0);
    for (const dryRun of [true, false]) {
      const runner = new RecordingRunner(dryRun);
      const err = await runGoldenUpdate(f.ctx({ dryRun, runner }), {
        image: f.image,
        argv: ['true'],
        keyFile: f.keyFile,
        version: '2',
        timeoutSeconds: 60,
        accel: 'tcg',
        entries: DEFAULT_ENTRIES,
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VerifyError);
      expect((err as Error).message).toMatch(/chunk\(s\) 0 do not match the manifest: not updated/);
      expect(runner.calls).toEqual([]);
    }
    expect(existsSync(path.join(f.dir, 'appl-2.img.zst'))).toBe(false);
  });
});
