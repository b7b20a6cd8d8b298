import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/** The checkout, the bundle (dist/) and the single executable made from it (build/out/). */
export const REPO = path.resolve(import.meta.dirname, '..');
export const BUNDLE = path.join(REPO, 'dist/zshield.cjs');
export const SEA = path.join(REPO, 'build/out/zshield');

function newestMtime(p: string): number {
  const st = statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...readdirSync(p).map((f) => newestMtime(path.join(p, f))));
}

/**
 * Tests that run the CLI as shipped (the bundle or the single executable, ssh2 inside it) call this
 * first: it runs build/build.sh when either is missing or older than src/ or package.json.
 */
export function ensureBundle(): void {
  const stale =
    !existsSync(BUNDLE) ||
    !existsSync(SEA) ||
    statSync(BUNDLE).mtimeMs <
      Math.max(newestMtime(path.join(REPO, 'src')), newestMtime(path.join(REPO, 'package.json')));
  if (!stale) return;
  const b = spawnSync('bash', ['build/build.sh'], { cwd: REPO, encoding: 'utf8', timeout: 300_000 });
  if (b.status !== 0) throw new Error(`build/build.sh failed (${b.status}):\n${b.stdout}\n${b.stderr}`);
}
