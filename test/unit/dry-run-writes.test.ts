import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { writeDaemonInfo } from '../../src/daemon/info.js';
import { DryRunError, NotFoundError } from '../../src/errors.js';
import { appendCatalog, createCatalog } from '../../src/history/catalog.js';
import { writeHistorySettings } from '../../src/history/init.js';
import { updateTarget, writeState } from '../../src/history/state.js';
import { TargetWriter } from '../../src/clone/target-writer.js';
import { CopyRecords } from '../../src/remote/backups.js';
import { writeRemoteSection } from '../../src/remote/config-file.js';
import { newKey, writeKeyFile, writePrivateFileAtomic } from '../../src/remote/secrets.js';
import { writeJsonAtomic } from '../../src/state/store.js';
import { writeEnvFileAtomic } from '../../src/system/grub-env.js';
import { generateSigningKey, writeNewSigningKey } from '../../src/system/signing.js';
import { REAL_WRITES, writesFor } from '../../src/system/writes.js';
import { tempDir } from './helpers/context.js';

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
