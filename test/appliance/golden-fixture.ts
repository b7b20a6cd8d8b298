import fs from 'node:fs';
import path from 'node:path';
import { type GoldenManifest, makeGoldenImage, manifestPathOf } from '../../src/golden/golden-image.js';
import { type SigningKey, loadSigningKey, writeNewSigningKey } from '../../src/system/signing.js';
import { Appliance } from '../bench/appliance.js';
import { BENCH_DIR } from '../bench/bench-env.js';
import { GOLDEN_SERIAL, SYSTEM_SERIAL } from './lib.js';
import { REAL_WRITES } from '../../src/system/writes.js';

/**
 * The golden medium that `zshield golden prepare` makes in the bench, packaged as a signed golden
 * image (box@1.0). The prepare costs about a minute under TCG, so it is made once per bench (the
 * bench's key covers the kernel, the root and the zshield binary) and kept in BENCH_DIR; each
 * scenario gets its own copy of the image, manifest and key, and may change them.
 */

export const GOLDEN_NAME = 'box';
export const GOLDEN_VERSION = '1.0';
/**
 * The golden medium's disk, so the image's raw size: 1 GiB holds the bench's root (~250 MiB) with
 * room; every MiB more is written and read back by each scenario under emulation.
 */
export const GOLDEN_MEDIUM_MiB = 1024;

const FILES = [`${GOLDEN_NAME}-${GOLDEN_VERSION}.img.zst`, 'vendor.key', 'vendor.key.pub'];
const cacheDir = () => path.join(BENCH_DIR, 'work', 'golden-image');
const stampOf = () =>
  ['initramfs.key', 'bench.env']
    .map((f) => fs.readFileSync(path.join(BENCH_DIR, f), 'utf8').trim())
    .concat(`${GOLDEN_MEDIUM_MiB} MiB`)
    .join('\n');

export interface PackagedGolden {
  image: string;
  manifest: GoldenManifest;
  keyFile: string;
  key: SigningKey;
}

/** Copies the packaged golden image (made first if this bench has none) into `dir`. */
export async function packagedGolden(dir: string): Promise<PackagedGolden> {
  const cache = cacheDir();
  const stampFile = path.join(cache, 'stamp');
  const fresh = () => fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') === stampOf();
  if (!fresh()) {
    // The gate runs two lanes of appliance tests at once, and either may come here first.
    const unlock = await lock(`${cache}.lock`);
    try {
      if (!fresh()) await makePackage(cache);
    } finally {
      unlock();
    }
  }
  fs.mkdirSync(dir, { recursive: true });
  for (const f of [...FILES, path.basename(manifestPathOf(FILES[0]!))]) {
    fs.copyFileSync(path.join(cache, f), path.join(dir, f));
  }
  const image = path.join(dir, FILES[0]!);
  const keyFile = path.join(dir, 'vendor.key');
  const manifest = JSON.parse(fs.readFileSync(manifestPathOf(image), 'utf8')).payload as GoldenManifest;
  return { image, manifest, keyFile, key: await loadSigningKey(keyFile) };
}

/**
 * A lock folder holding its owner's pid: mkdir is atomic, and a lock left by a process that died
 * is taken over. The wait is bounded only against a hang.
 */
async function lock(dir: string): Promise<() => void> {
  const end = Date.now() + 20 * 60_000;
  for (;;) {
    try {
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'pid'), String(process.pid));
      return () => fs.rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = 0; // not written yet, or the lock was just let go: look again
    try {
      owner = Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8'));
    } catch {}
    if (owner > 0 && !alive(owner)) fs.rmSync(dir, { recursive: true, force: true });
    if (Date.now() > end) throw new Error(`${dir}: still held by pid ${owner}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Boots the bench, runs golden prepare onto a blank medium, packages that medium; the stamp last. */
async function makePackage(cache: string): Promise<void> {
  const work = `${cache}.making`;
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  const stamp = stampOf();
  const app = await Appliance.boot({
    workDir: work,
    disks: [
      { name: 'golden', sizeMiB: GOLDEN_MEDIUM_MiB, serial: GOLDEN_SERIAL },
      { name: 'system', sizeMiB: 4096, serial: SYSTEM_SERIAL },
    ],
  });
  try {
    await app.writeFile('/etc/zshield/zshield.conf', JSON.stringify({ recovery: { countdownSeconds: 600 } }));
    const r = await app.sh(`zshield golden prepare --target ${GOLDEN_SERIAL} --yes`, { timeoutMs: 600_000 });
    if (r.code !== 0) throw new Error(`golden prepare failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    await app.poweroff();
  } finally {
    await app.kill();
  }
  const key = await writeNewSigningKey(REAL_WRITES, path.join(work, 'vendor.key'), { writePublic: true });
  await makeGoldenImage({
    source: app.diskPath('golden'),
    out: path.join(work, FILES[0]!),
    name: GOLDEN_NAME,
    version: GOLDEN_VERSION,
    key,
  });
  for (const d of ['golden', 'system']) fs.rmSync(app.diskPath(d));
  fs.rmSync(cache, { recursive: true, force: true });
  fs.renameSync(work, cache);
  fs.writeFileSync(path.join(cache, 'stamp'), stamp);
}
