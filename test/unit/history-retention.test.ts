import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { afterDailyBackup } from '../../src/daemon/jobs.js';
import { appendCatalog, catalogView, createCatalog, verifyCatalog } from '../../src/history/catalog.js';
import { updateTarget } from '../../src/history/state.js';
import { encryptPassword, newKey, writeKeyFile } from '../../src/system/secrets.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { type SigningKey, writeNewSigningKey } from '../../src/system/signing.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import { FakeClock, type TestContext, tempDir, testContext } from './helpers/context.js';

// The daemon's retention (daemon/jobs.ts afterDailyBackup -> history/prune.ts retentionAfterTake):
// history.keep applied after the daily take without anyone running prune, and a target that stays
// down named in the log (when it last took a replication, its last error) instead of holding the
// retention back in silence. restic answers from the recording runner; the targets are a closed
// port on 127.0.0.1 (refused at once), as a server that is down.

const S1 = '1'.repeat(64);
const S2 = '2'.repeat(64);
const NOW = new Date('2026-03-10T04:00:00.000Z');
const THREE_DAYS_AGO = '2026-03-07T04:00:00.000Z';

async function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

describe('the daemon applies history.keep after the daily take', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
  });
  afterEach(() => cleanup());

  /** A box whose history holds S1 and S2, both cataloged; restic's policy would forget S1. */
  async function box(): Promise<{ ctx: TestContext; runner: RecordingRunner; key: SigningKey }> {
    const port = await closedPort();
    const hdir = path.join(dir, 'history');
    mkdirSync(path.join(hdir, 'repo'), { recursive: true });
    writeFileSync(path.join(hdir, 'repo', 'config'), 'x');
    const keyFile = path.join(dir, 'history.key');
    const secret = newKey();
    writeKeyFile(REAL_WRITES, keyFile, secret);
    const key = await writeNewSigningKey(REAL_WRITES, path.join(hdir, 'catalog.key'));
    createCatalog(REAL_WRITES, hdir, key);
    const sizes = { bytes: 1, files: 1, added: 1 };
    appendCatalog(REAL_WRITES, hdir, key, [
      {
        kind: 'backup',
        fingerprint: S1,
        time: '2026-03-01T03:00:00.000Z',
        host: 'box',
        reason: 'daily',
        version: '1',
        sizes,
      },
      {
        kind: 'backup',
        fingerprint: S2,
        time: '2026-03-09T03:00:00.000Z',
        host: 'box',
        reason: 'daily',
        version: '1',
        sizes,
      },
    ]);
    const target = (name: string) => ({
      name,
      type: 'sftp' as const,
      server: '127.0.0.1',
      port,
      user: 'zs',
      password: encryptPassword('login', secret),
      privateKey: null,
      hostKey: `SHA256:${'A'.repeat(43)}`,
      directory: `/srv/${name}`,
    });
    const runner = new RecordingRunner()
      .on(/^restic .* cat config/, { stdout: '{}' })
      .on(/^restic .* forget --dry-run/, { stdout: JSON.stringify([{ remove: [{ id: S1 }] }]) })
      .on(/^restic .* snapshots/, {
        stdout: JSON.stringify([
          { id: S1, time: '2026-03-01T03:00:00Z', tree: 'x', paths: ['/'], hostname: 'box', tags: [] },
          { id: S2, time: '2026-03-09T03:00:00Z', tree: 'y', paths: ['/'], hostname: 'box', tags: [] },
        ]),
      })
      // The take's own probe: no volume group here, so the take fails (logged) and retention still runs.
      .on(/^vgs/, { exitCode: 5, stderr: '  Volume group "vgroup" not found' });
    const ctx = testContext({
      runner,
      dir,
      clock: new FakeClock(NOW),
      edit: (c) => {
        c.history = {
          ...c.history,
          enabled: true,
          dir: hdir,
          keyFile,
          password: encryptPassword('repo-secret-pw', secret),
          publicKey: key.publicText,
          mountPoint: path.join(dir, 'mnt'),
          cacheDir: path.join(dir, 'cache'),
          retries: 0,
          connectTimeoutSeconds: 2,
          keep: { daily: 1, weekly: 0, monthly: 0 },
          targets: [target('a'), target('b')],
        };
      },
    });
    return { ctx, runner, key };
  }

  const forgets = (runner: RecordingRunner) =>
    runner.calls.filter(
      (c) => c.argv[0] === 'restic' && c.argv.includes('forget') && !c.argv.includes('--dry-run'),
    );

  it('a snapshot every target holds is forgotten and pruned, and the catalog says so', async () => {
    const { ctx, runner, key } = await box();
    for (const t of ['a', 'b'])
      updateTarget(REAL_WRITES, ctx.config.history.dir, t, (s) => {
        s.snapshots = [S1, S2];
        s.lastSuccess = THREE_DAYS_AGO;
      });
    await afterDailyBackup(ctx, new AbortController().signal, 0);
    expect(ctx.log.lines).toContain('info: daemon: history retention');
    expect(forgets(runner).map((c) => c.argv.slice(-2))).toEqual([['forget', S1]]);
    expect(runner.calls.some((c) => c.argv[0] === 'restic' && c.argv.at(-1) === 'prune')).toBe(true);
    const view = catalogView(verifyCatalog(ctx.config.history.dir, key.publicText).entries);
    expect(view.find((v) => v.fingerprint === S1)?.forgotten).toBe(true);
    expect(view.find((v) => v.fingerprint === S2)?.forgotten).toBe(false);
    expect(ctx.log.lines.join('\n')).not.toMatch(/held back/);
  });

  it('a target that stays down is named every day with how long and why; what it lacks is kept; nothing blocks', async () => {
    const { ctx, runner } = await box();
    updateTarget(REAL_WRITES, ctx.config.history.dir, 'a', (s) => {
      s.snapshots = [S1, S2];
      s.lastSuccess = THREE_DAYS_AGO;
    });
    updateTarget(REAL_WRITES, ctx.config.history.dir, 'b', (s) => {
      s.snapshots = [];
      s.lastSuccess = THREE_DAYS_AGO;
      s.lastError = `${THREE_DAYS_AGO}: remote zs@127.0.0.1: unreachable: connection refused`;
    });
    const started = Date.now();
    await afterDailyBackup(ctx, new AbortController().signal, 0);
    // The take failed on its own (no volume group): logged, and retention ran all the same.
    expect(ctx.log.lines.join('\n')).toMatch(/error: daemon: history take failed: /);
    const warn = ctx.log.lines.find((l) => /retention is held back/.test(l));
    expect(warn).toMatch(
      new RegExp(
        `^warn: history: retention is held back by target\\(s\\) b \\(last replicated ${THREE_DAYS_AGO}, 72\\.0 h ago; last error: .*unreachable: connection refused\\): 1 snapshot\\(s\\) past history.keep are kept`,
      ),
    );
    expect(warn).not.toMatch(/target\(s\) a/);
    // Nothing b lacks is forgotten.
    expect(forgets(runner)).toEqual([]);
    // The replication after it fails on the targets being down: said, not thrown, not waited on.
    expect(ctx.log.lines.join('\n')).toMatch(
      /error: daemon: history retention failed: history: 2 of 2 target\(s\) not replicated: a: .*unreachable.*; b: .*unreachable.*tried again after the next daily backup/,
    );
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('history.enabled false: no retention', async () => {
    const { ctx, runner } = await box();
    ctx.config.history.enabled = false;
    await afterDailyBackup(ctx, new AbortController().signal, 0);
    expect(runner.calls.filter((c) => c.argv[0] === 'restic')).toEqual([]);
    expect(ctx.log.lines).not.toContain('info: daemon: history retention');
  });
});
