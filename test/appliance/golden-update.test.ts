// `zshield golden update` for real: a golden medium made by `zshield golden prepare` in the bench is
// packaged as a signed golden image on the host; `golden update` (run on the host, QEMU through
// the Runner) boots a copy with the image's own kernel and the update key, runs a command that
// writes a file into the golden root, proves the result by booting the copy through its own GRUB to
// the boot hook's marker with the recovery entries on the menu, and writes a new signed image
// beside the old. A failing command leaves the old image as it was and writes nothing.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { manifestPathOf, verifyGoldenImage } from '../../src/clone/golden-image.js';
import { DEFAULT_ENTRIES, decompressSparse, runGoldenUpdate } from '../../src/clone/update.js';
import { CommandError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log/logger.js';
import { ExecaRunner } from '../../src/system/runner.js';
import type { SigningKey } from '../../src/system/signing.js';
import { FakeClock, testContext } from '../unit/helpers/context.js';
import { packagedGolden } from './golden-fixture.js';
import { freshWorkDir } from './lib.js';

const workDir = freshWorkDir('golden-update');
const oldImage = path.join(workDir, 'box-1.0.img.zst');
const newImage = path.join(workDir, 'box-1.1.img.zst');
const keyFile = path.join(workDir, 'vendor.key');
const PROBE = '/etc/zshield-update-probe';

const fileHash = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const oldState = () => [fileHash(oldImage), fileHash(manifestPathOf(oldImage))];

function update(key: SigningKey, argv: string[], accel: 'auto' | 'tcg') {
  const log = memoryLogger();
  const ctx = testContext({
    runner: new ExecaRunner({ log }),
    dir: path.join(workDir, 'ctx'),
    clock: new FakeClock(new Date()),
    edit: (c) => {
      c.clone.trustedKeys = [key.publicText];
    },
  });
  return {
    ctx,
    run: runGoldenUpdate(ctx, {
      image: oldImage,
      argv,
      keyFile,
      version: '1.1',
      timeoutSeconds: 300,
      accel,
      entries: DEFAULT_ENTRIES,
    }),
  };
}

/** A file of the image's root, read on the host with debugfs from a raw copy. */
async function fileInImage(image: string, key: SigningKey, file: string): Promise<string> {
  const m = (await verifyGoldenImage(image, [key.publicText])).manifest;
  const raw = path.join(workDir, 'check.raw');
  await decompressSparse(image, m, raw);
  try {
    const r = await new ExecaRunner({ log: memoryLogger() }).run({
      file: 'debugfs',
      args: ['-R', `cat ${file}`, `${raw}?offset=${1024 * 1024}`],
      mutates: false,
    });
    return r.stdout;
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

describe('golden update in QEMU', () => {
  let key: SigningKey;
  afterAll(() => {
    for (const f of fs.readdirSync(workDir)) if (f.endsWith('.raw')) fs.rmSync(path.join(workDir, f));
  });

  it('packages a golden medium made by golden prepare as a signed golden image', {
    timeout: 900_000,
  }, async () => {
    // Made once per bench and shared with the clone-net scenario (golden-fixture.ts).
    const g = await packagedGolden(workDir);
    expect(g.image).toBe(oldImage);
    expect(g.keyFile).toBe(keyFile);
    key = g.key;
    expect((await verifyGoldenImage(oldImage, [key.publicText])).badChunks).toEqual([]);
    expect(await fileInImage(oldImage, key, PROBE)).toBe('');
  });

  it('a failing command: CommandError with its exit status and output; the old image as it was, no new image', {
    timeout: 900_000,
  }, async () => {
    const before = oldState();
    const { run } = update(
      key,
      ['/bin/sh', '-c', `echo probe > ${PROBE}; echo cannot install >&2; exit 7`],
      'tcg',
    );
    const err = await run.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).code).toBe(7);
    expect((err as CommandError).message).toContain('cannot install');
    expect(oldState()).toEqual(before);
    expect(fs.existsSync(newImage)).toBe(false);
    expect(fs.readdirSync(workDir).filter((f) => f.startsWith('.zshield-update-'))).toEqual([]);
  });

  it('a command after which GRUB no longer shows "Recover to factory default": the proof boot says so, nothing written', {
    timeout: 900_000,
  }, async () => {
    const before = oldState();
    const rename = "sed -i 's/Recover to factory default/Factory (renamed)/' /boot/grub/grub.cfg";
    const { run } = update(key, ['/bin/sh', '-c', rename], 'tcg');
    await expect(run).rejects.toThrow(
      /proof boot: GRUB's menu did not show "Recover to factory default": not updated/,
    );
    expect(oldState()).toEqual(before);
    expect(fs.existsSync(newImage)).toBe(false);
  });

  it('a command that writes a file into the root: proven by a GRUB boot, a new signed image that has the file', {
    timeout: 900_000,
  }, async () => {
    const before = oldState();
    const { ctx, run } = update(key, ['/bin/sh', '-c', `echo updated > ${PROBE}`], 'auto');
    const r = await run;
    console.log(ctx.printed.join('\n'));
    expect(r!.out).toBe(newImage);
    const v = await verifyGoldenImage(newImage, [key.publicText]);
    expect(v.badChunks).toEqual([]);
    expect(v.manifest).toMatchObject({ name: 'box', version: '1.1' });
    expect(await fileInImage(newImage, key, PROBE)).toBe('updated\n');
    expect(oldState()).toEqual(before);
    expect(await fileInImage(oldImage, key, PROBE)).toBe('');
  });
});
