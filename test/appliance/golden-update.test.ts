// `zshield golden update` for real, run as an operator runs it: the built binary on the host (it
// runs QEMU itself), its options on the command line. A golden medium made by `zshield golden
// prepare` in the bench is packaged as a signed golden image on the host; `golden update IMAGE --
// CMD` boots a copy with the image's own kernel and the update key, runs the command, proves the
// result by booting the copy through its own GRUB to the boot hook's marker with the recovery
// entries on the menu, and writes a new signed image beside the old. A failing command, or one that
// breaks the menu, leaves the old image as it was and writes nothing; a dry run checks and boots
// nothing.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { manifestPathOf, verifyGoldenImage } from '../../src/golden/golden-image.js';
import { decompressSparse } from '../../src/golden/update.js';
import { memoryLogger } from '../../src/log/logger.js';
import { DRY_RUN_DONE } from '../../src/plan/plan.js';
import { ExecaRunner } from '../../src/system/runner.js';
import type { SigningKey } from '../../src/system/signing.js';
import { packagedGolden } from './golden-fixture.js';
import { freshWorkDir } from './lib.js';

const SEA = path.resolve(import.meta.dirname, '../../build/out/zshield');
const workDir = freshWorkDir('golden-update');
const oldImage = path.join(workDir, 'box-1.0.img.zst');
const newImage = path.join(workDir, 'box-1.1.img.zst');
const keyFile = path.join(workDir, 'vendor.key');
const configFile = path.join(workDir, 'zshield.conf');
const PROBE = '/etc/zshield-update-probe';

const fileHash = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const oldState = () => [fileHash(oldImage), fileHash(manifestPathOf(oldImage))];
const leftovers = () => fs.readdirSync(workDir).filter((f) => f.startsWith('.zshield-update-'));

/** The config an operator's host has: the vendor key trusted, state and logs in the scenario. */
function writeConfig(key: SigningKey): void {
  fs.writeFileSync(
    configFile,
    JSON.stringify({
      paths: {
        stateDir: path.join(workDir, 'state'),
        runDir: path.join(workDir, 'run'),
        eventLog: path.join(workDir, 'events.jsonl'),
      },
      log: { file: null },
      clone: { trustedKeys: [key.publicText] },
    }),
  );
}

/**
 * `zshield golden update IMAGE OPTIONS...` as typed in the scenario's folder (relative IMAGE), the
 * new image named 1.1; `after` is what follows (`-- CMD...`).
 */
async function goldenUpdate(options: string[], after: string[] = []) {
  const r = await execa(
    SEA,
    [
      'golden',
      'update',
      path.basename(oldImage),
      '-c',
      configFile,
      '--key',
      path.basename(keyFile),
      '--image-version',
      '1.1',
      '--timeout',
      '300',
      ...options,
      ...after,
    ],
    { cwd: workDir, reject: false, timeout: 850_000 },
  );
  console.log(
    `$ zshield golden update ${options.join(' ')} ${after.join(' ')}: exit ${r.exitCode}\n${r.stderr}`,
  );
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
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

describe('golden update in QEMU, from the command line', () => {
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
    writeConfig(key);
    expect((await verifyGoldenImage(oldImage, [key.publicText])).badChunks).toEqual([]);
    expect(await fileInImage(oldImage, key, PROBE)).toBe('');
  });

  it('--dry-run (text and --json): the checks pass, the plan is shown, nothing booted or written', {
    timeout: 300_000,
  }, async () => {
    const before = oldState();
    const text = await goldenUpdate(['--dry-run'], ['--', '/bin/sh', '-c', `echo updated > ${PROBE}`]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`golden update of box@1.0 into ${newImage}`);
    expect(text.stdout).toContain(`the command run in the image: /bin/sh -c 'echo updated > ${PROBE}'`);
    expect(text.stdout).toMatch(/write the new image and its signed manifest/);
    expect(text.stdout.trim().split('\n').at(-1)).toBe(DRY_RUN_DONE);

    const script = path.join(workDir, 'update.sh');
    fs.writeFileSync(script, `echo updated > ${PROBE}\n`);
    const json = await goldenUpdate(['--dry-run', '--json', '--script', script]);
    expect(json.code).toBe(0);
    const plan = JSON.parse(json.stdout) as { title: string; notes: string[]; steps: unknown[] };
    expect(plan.title).toContain(`into ${newImage}`);
    expect(plan.notes).toContain('the command run in the image: the script (/bin/sh)');
    expect(plan.steps).toHaveLength(4);

    expect(oldState()).toEqual(before);
    expect(fs.existsSync(newImage)).toBe(false);
    expect(fs.existsSync(manifestPathOf(newImage))).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('a failing command (--json): exit 8, its exit status and output in the error; the old image as it was, no new image', {
    timeout: 900_000,
  }, async () => {
    const before = oldState();
    const r = await goldenUpdate(
      ['--accel', 'tcg', '--json'],
      ['--', '/bin/sh', '-c', `echo probe > ${PROBE}; echo cannot install >&2; exit 7`],
    );
    expect(r.code).toBe(8);
    const err = JSON.parse(r.stdout) as { code: number; message: string };
    expect(err.code).toBe(8);
    expect(err.message).toBe('/bin/sh failed (exit 7): cannot install');
    expect(r.stderr).toContain('zshield: /bin/sh failed (exit 7): cannot install');
    expect(oldState()).toEqual(before);
    expect(fs.existsSync(newImage)).toBe(false);
    expect(fs.existsSync(manifestPathOf(newImage))).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('--script after which GRUB no longer shows "Recover to factory default": the proof boot says so (exit 10), nothing written', {
    timeout: 900_000,
  }, async () => {
    const before = oldState();
    const script = path.join(workDir, 'rename.sh');
    fs.writeFileSync(
      script,
      "sed -i 's/Recover to factory default/Factory (renamed)/' /boot/grub/grub.cfg\n",
    );
    const r = await goldenUpdate(['--accel', 'tcg', '--script', script]);
    expect(r.code).toBe(10);
    expect(r.stderr).toMatch(
      /^zshield: proof boot: GRUB's menu did not show "Recover to factory default": not updated$/m,
    );
    expect(oldState()).toEqual(before);
    expect(fs.existsSync(newImage)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('-- CMD writing a file into the root (--json): proven by a GRUB boot, a new signed image beside the old that has the file', {
    timeout: 900_000,
  }, async () => {
    const before = oldState();
    const r = await goldenUpdate(['--json'], ['--', '/bin/sh', '-c', `echo updated > ${PROBE}`]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as {
      out: string;
      accel: string;
      manifest: { name: string; version: string };
    };
    expect(doc.out).toBe(newImage);
    expect(['kvm', 'tcg']).toContain(doc.accel);
    expect(doc.manifest).toMatchObject({ name: 'box', version: '1.1' });
    const v = await verifyGoldenImage(newImage, [key.publicText]);
    expect(v.badChunks).toEqual([]);
    expect(v.manifest).toEqual(doc.manifest);
    expect(await fileInImage(newImage, key, PROBE)).toBe('updated\n');
    expect(oldState()).toEqual(before);
    expect(await fileInImage(oldImage, key, PROBE)).toBe('');
    expect(leftovers()).toEqual([]);
  });
});
