import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
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

/** The V8 heap limits the daemon's unit sets (rc/zshield.service), read from the unit itself. */
export const DAEMON_NODE_OPTIONS = (() => {
  const unit = readFileSync(path.join(REPO, 'rc/zshield.service'), 'utf8');
  const m = /^Environment="NODE_OPTIONS=([^"]*)"$/m.exec(unit);
  if (!m?.[1]) throw new Error('rc/zshield.service sets no NODE_OPTIONS');
  return m[1];
})();

/**
 * A bare environment for the single executable: nothing of the test runner's leaks in, nothing
 * secret is in it, and V8's heap is held to the daemon's limits, so every job the tests run
 * (replication, restore, remote copy) is proven to fit in what the daemon gives it.
 */
export const SEA_ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C',
  NODE_OPTIONS: DAEMON_NODE_OPTIONS,
};
