import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { writeDaemonInfo } from '../../src/state/daemon-info.js';
import { DryRunError, NotFoundError } from '../../src/errors.js';
import { appendCatalog, createCatalog } from '../../src/history/catalog.js';
import { writeHistorySettings } from '../../src/history/init.js';
import { updateTarget, writeState } from '../../src/history/state.js';
import { TargetWriter } from '../../src/golden/target-writer.js';
import { memoryLogger } from '../../src/log/logger.js';
import { CopyRecords } from '../../src/remote/backups.js';
import { writeRemoteSection } from '../../src/remote/config-file.js';
import { newKey, writeKeyFile } from '../../src/system/secrets.js';
import { RemoteSession } from '../../src/ssh/session.js';
import { writeJsonAtomic, writePrivateFileAtomic } from '../../src/system/atomic-file.js';
import { writeEnvFileAtomic } from '../../src/system/grub-env.js';
import { generateSigningKey, writeNewSigningKey } from '../../src/system/signing.js';
import { REAL_WRITES, writesFor } from '../../src/system/writes.js';
import { systemClock } from '../../src/context.js';
import { DRY_RUN_DONE, type Plan } from '../../src/plan/plan.js';
import { runPlan } from '../../src/plan/run.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { tempDir, testContext } from './helpers/context.js';

// A dry run cannot write by construction: every writer zshield has takes the run's `writes` and
// refuses in a dry run with DryRunError (a bug's exit code, 1), before it creates anything.

const DRY = writesFor(true);
let cleanup = () => {};
afterEach(() => cleanup());

function fresh(): string {
  const t = tempDir('zshield-dry-');
  cleanup = t.cleanup;
  return t.dir;
}

describe('in a dry run every writer refuses, and leaves its folder as it was', () => {
  const writers: [string, (dir: string) => unknown][] = [
    ['writePrivateFileAtomic', (d) => writePrivateFileAtomic(DRY, path.join(d, 'secret'), 'x')],
    ['writeKeyFile', (d) => writeKeyFile(DRY, path.join(d, 'secret.key'), newKey())],
    ['writeJsonAtomic (state files)', (d) => writeJsonAtomic(DRY, path.join(d, 'state.json'), { a: 1 })],
    ['writeEnvFileAtomic (the boot menu)', (d) => writeEnvFileAtomic(DRY, path.join(d, 'env'), { a: 'b' })],
    [
      'writeRemoteSection (config)',
      (d) => writeRemoteSection(DRY, path.join(d, 'z.conf'), defaultConfig().remote),
    ],
    ['writeHistorySettings (config)', (d) => writeHistorySettings(DRY, path.join(d, 'z.conf'), { keep: {} })],
    ['writeNewSigningKey', (d) => writeNewSigningKey(DRY, path.join(d, 'vendor.key'), { writePublic: true })],
    ['writeState (history targets.json)', (d) => writeState(DRY, d, {})],
    ['updateTarget (history targets.json)', (d) => updateTarget(DRY, d, 't1', () => {})],
    ['createCatalog', (d) => createCatalog(DRY, d, generateSigningKey())],
    [
      'CopyRecords (remote copy records)',
      (d) =>
        new CopyRecords(DRY, path.join(d, 'r.json'), 'x').set('a', {
          size: 1,
          sha256: '',
          identity: '',
          checkedAt: '',
        }),
    ],
    [
      'writeDaemonInfo',
      (d) =>
        writeDaemonInfo(DRY, d, { pid: 1, startedAt: '', nextRun: null, lastCheck: null, lastHealth: null }),
    ],
    [
      'TargetWriter.open (golden image write, clone receive)',
      (d) => TargetWriter.open(DRY, path.join(d, 'disk'), 4096),
    ],
  ];
  for (const [name, write] of writers) {
    it(name, async () => {
      const dir = fresh();
      const err = await (async () => write(dir))().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DryRunError);
      expect((err as DryRunError).exitCode).toBe(1);
      expect(readdirSync(dir)).toEqual([]);
    });
  }

  it('appendCatalog: checks the catalog, then refuses to append', () => {
    const dir = fresh();
    const key = generateSigningKey();
    createCatalog(REAL_WRITES, dir, key);
    const before = readdirSync(dir).sort();
    expect(() =>
      appendCatalog(DRY, dir, key, [
        { kind: 'backup', fingerprint: 'a'.repeat(64), time: '2026-01-01T00:00:00Z' } as never,
      ]),
    ).toThrow(DryRunError);
    expect(readdirSync(dir).sort()).toEqual(before);
    expect(existsSync(path.join(dir, 'catalog.jsonl'))).toBe(false);
  });

  it('outside a dry run the same writers write', async () => {
    const dir = fresh();
    writeJsonAtomic(REAL_WRITES, path.join(dir, 'state.json'), { a: 1 });
    await writeNewSigningKey(REAL_WRITES, path.join(dir, 'vendor.key'), { writePublic: true });
    expect(readdirSync(dir).sort()).toEqual(['state.json', 'vendor.key', 'vendor.key.pub']);
  });
});

describe('a key written into a folder that does not exist', () => {
  it('is a NotFoundError (exit 5) naming the folder, not a bare ENOENT, and in a dry run too', async () => {
    const dir = fresh();
    const file = path.join(dir, 'no-such-folder', 'vendor.key');
    for (const writes of [REAL_WRITES, DRY]) {
      const err = await writeNewSigningKey(writes, file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect((err as NotFoundError).message).toBe(
        `cannot write the signing key ${file}: the folder ${path.dirname(file)} does not exist`,
      );
    }
  });
});

describe("the SFTP client's writing calls", () => {
  /** A session over a fake SFTP channel that records every request (the constructor is private). */
  function session(writes: ReturnType<typeof writesFor>) {
    const calls: string[] = [];
    const sftp = new Proxy(
      {},
      {
        get:
          (_t, name) =>
          (...args: unknown[]) => {
            calls.push(String(name));
            const cb = args.at(-1) as (err: unknown, v?: unknown) => void;
            if (name === 'stat') cb(Object.assign(new Error('No such file'), { code: 2 }));
            else cb(null, Buffer.alloc(0));
          },
      },
    );
    const s = Object.create(RemoteSession.prototype) as RemoteSession;
    Object.assign(s, {
      sftp,
      endpoint: { host: 'h', port: 22 },
      user: 'u',
      log: memoryLogger(),
      writes,
      closed: false,
      lostReason: null,
    });
    return { s, calls };
  }

  it('mkdir, delete, rename, open for writing and write are refused in a dry run before any request', async () => {
    const { s, calls } = session(DRY);
    await expect(s.mkdirs('/srv/a')).rejects.toThrow(DryRunError);
    await expect(s.unlink('/srv/a/f')).rejects.toThrow(DryRunError);
    await expect(s.rename('/srv/a/f.part', '/srv/a/f')).rejects.toThrow(DryRunError);
    await expect(s.open('/srv/a/f', 'w')).rejects.toThrow(DryRunError);
    await expect(s.open('/srv/a/f', 'r+')).rejects.toThrow(DryRunError);
    expect(() => s.write(Buffer.alloc(0), Buffer.alloc(1), 0, '/srv/a/f')).toThrow(DryRunError);
    // Only the read-only stat of mkdir -p reached the server.
    expect(calls).toEqual(['stat']);
    await s.open('/srv/a/f', 'r');
    expect(calls).toEqual(['stat', 'open']);
  });

  it('outside a dry run they reach the server', async () => {
    const { s, calls } = session(REAL_WRITES);
    await s.unlink('/srv/a/f');
    await s.open('/srv/a/f', 'w');
    expect(calls).toEqual(['unlink', 'open']);
  });
});

describe('runPlan in a dry run', () => {
  const plan = (applied: string[]): Plan => ({
    title: 'Do a thing',
    notes: [],
    checks: [{ title: 'it can be done', run: () => {} }],
    steps: [{ title: 'write it', edit: { files: ['/x'], apply: () => void applied.push('x') } }],
  });

  it('runs the checks, applies nothing, and ends with the one "nothing was changed" line', async () => {
    const t = tempDir('zshield-dry-plan-');
    cleanup = t.cleanup;
    const ctx = testContext({
      runner: new RecordingRunner(true),
      dir: t.dir,
      clock: systemClock,
      dryRun: true,
    });
    const applied: string[] = [];
    expect((await runPlan(ctx, plan(applied), { confirm: 'yes' })).applied).toBe(false);
    expect(applied).toEqual([]);
    expect(ctx.printed.at(-1)).toBe(DRY_RUN_DONE);
    expect(ctx.printed.filter((l) => l === DRY_RUN_DONE)).toHaveLength(1);
  });

  it('with a JSON plan on stdout, the line goes to the log', async () => {
    const t = tempDir('zshield-dry-plan-');
    cleanup = t.cleanup;
    const ctx = testContext({
      runner: new RecordingRunner(true),
      dir: t.dir,
      clock: systemClock,
      dryRun: true,
    });
    await runPlan(ctx, plan([]), { confirm: 'yes', show: 'json' });
    expect(JSON.parse(ctx.printed.join('\n')).title).toBe('Do a thing');
    expect(ctx.log.lines).toContain(`info: ${DRY_RUN_DONE}`);
  });

  it('a failed check fails the dry run as it fails the real one', async () => {
    const t = tempDir('zshield-dry-plan-');
    cleanup = t.cleanup;
    const ctx = testContext({
      runner: new RecordingRunner(true),
      dir: t.dir,
      clock: systemClock,
      dryRun: true,
    });
    const failing: Plan = {
      ...plan([]),
      checks: [
        {
          title: 'x exists',
          run: () => {
            throw new NotFoundError('x not found');
          },
        },
      ],
    };
    await expect(runPlan(ctx, failing, { confirm: 'yes' })).rejects.toThrow(NotFoundError);
    expect(ctx.printed).not.toContain(DRY_RUN_DONE);
  });
});
