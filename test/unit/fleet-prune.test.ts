import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { byKind, selectPrune } from '../../src/fleet/prune-select.js';
import { fileRecord } from '../../src/history/catalog-files.js';
import { appendCatalog, createCatalog, type NewEntry, verifyCatalog } from '../../src/history/catalog.js';
import { ExitCode } from '../../src/errors.js';
import { generateSigningKey } from '../../src/system/signing.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import { backupEntry } from './helpers/catalog.js';

const fp = (c: string) => c.repeat(64);
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const backup = (fingerprint: string, files: string[], before: Set<string>, time: string): NewEntry =>
  backupEntry(fingerprint, time, files, before);

const DAY1 = ['config', 'keys/k1', 'data/aa/p1', 'data/bb/p2', 'index/i1', `snapshots/${fp('a')}`];
const DAY2 = [...DAY1, 'data/cc/p3', 'index/i2', `snapshots/${fp('b')}`];
/** After forgetting backup a, restic's prune repacked p1 and p2 into p4 and rewrote the index. */
const PRUNED = ['config', 'keys/k1', 'data/cc/p3', 'data/dd/p4', 'index/i3', `snapshots/${fp('b')}`];

/** A box's verified catalog: two backups, then (optionally) the first forgotten and the prune's record. */
function entriesOf(opts: { pruned?: boolean; records?: boolean; badCount?: boolean } = {}) {
  const key = generateSigningKey();
  const dir = mkdtempSync(path.join(tmpdir(), 'fleet-prune-'));
  dirs.push(dir);
  createCatalog(REAL_WRITES, dir, key);
  const strip = (e: NewEntry): NewEntry => {
    if (opts.records !== false) return e;
    const { files: _f, ...rest } = e as NewEntry & { files?: unknown };
    return rest as NewEntry;
  };
  appendCatalog(REAL_WRITES, dir, key, [strip(backup(fp('a'), DAY1, new Set(), '2026-12-06T02:00:00Z'))]);
  appendCatalog(REAL_WRITES, dir, key, [
    strip(backup(fp('b'), DAY2, new Set(DAY1), '2026-12-07T02:00:00Z')),
    { kind: 'replicated', fingerprint: fp('b'), target: 'fleet', time: '2026-12-07T02:05:00Z' },
  ]);
  if (opts.pruned) {
    const record = fileRecord(new Set(DAY2), PRUNED);
    if (opts.badCount) record.count++;
    appendCatalog(REAL_WRITES, dir, key, [
      { kind: 'forgotten', fingerprint: fp('a'), time: '2026-12-07T02:10:00Z', files: record },
    ]);
  }
  return verifyCatalog(dir, key.publicText).entries;
}

const held = (names: string[]) => names.map((name) => ({ name, size: name.length }));

describe('fleet prune: which files go', () => {
  it('after a prune the target (append-only) holds both lists: exactly what the box dropped goes, snapshots, then index, then data', () => {
    const there = [...new Set([...DAY2, ...PRUNED])];
    const sel = selectPrune(entriesOf({ pruned: true }), held(there));
    expect(sel.remove.map((f) => f.name)).toEqual([
      `snapshots/${fp('a')}`,
      'index/i1',
      'index/i2',
      'data/aa/p1',
      'data/bb/p2',
    ]);
    expect(sel.kept).toBe(PRUNED.length);
    expect(sel.listed).toBe(PRUNED.length);
    expect(sel.unknown).toEqual([]);
    expect(byKind(sel.remove).map((g) => [g.kind, g.files.length])).toEqual([
      ['snapshots', 1],
      ['index', 2],
      ['data', 2],
    ]);
  });

  it('nothing to remove when the target holds the list (no prune since), or lacks some of it', () => {
    const sel = selectPrune(entriesOf(), held(DAY2));
    expect(sel.remove).toEqual([]);
    expect(sel.kept).toBe(DAY2.length);
    // A file the list names that the target lacks is fleet status's to report, not the prune's.
    expect(selectPrune(entriesOf({ pruned: true }), held(PRUNED.slice(1))).remove).toEqual([]);
  });

  it('files no record ever listed are left (a replication in flight, another box, a stray object)', () => {
    const there = [...DAY2, ...PRUNED, 'data/ee/p5', 'index/i9', `snapshots/${fp('c')}`, 'keys/k2'];
    const sel = selectPrune(entriesOf({ pruned: true }), held([...new Set(there)]));
    expect(sel.unknown.map((f) => f.name)).toEqual([
      'data/ee/p5',
      'index/i9',
      'keys/k2',
      `snapshots/${fp('c')}`,
    ]);
    expect(sel.remove.map((f) => f.name)).not.toContain('data/ee/p5');
    expect(sel.remove).toHaveLength(5);
  });

  it('never config, even when the newest list lacks it; never a name outside the repository layout', () => {
    const record = PRUNED.filter((n) => n !== 'config');
    const key = generateSigningKey();
    const dir = mkdtempSync(path.join(tmpdir(), 'fleet-prune-'));
    dirs.push(dir);
    createCatalog(REAL_WRITES, dir, key);
    appendCatalog(REAL_WRITES, dir, key, [
      backup(fp('a'), [...DAY1, 'locks/l1', 'stray'], new Set(), '2026-12-06T02:00:00Z'),
      backup(fp('b'), record, new Set([...DAY1, 'locks/l1', 'stray']), '2026-12-07T02:00:00Z'),
      { kind: 'forgotten', fingerprint: fp('a'), time: '2026-12-07T02:10:00Z' },
    ]);
    const sel = selectPrune(
      verifyCatalog(dir, key.publicText).entries,
      held([...DAY1, ...record, 'locks/l1', 'stray']),
    );
    const names = sel.remove.map((f) => f.name);
    expect(names).not.toContain('config');
    expect(names).not.toContain('locks/l1');
    expect(names).not.toContain('stray');
    expect(sel.unknown.map((f) => f.name)).toEqual(['config', 'locks/l1', 'stray']);
  });

  it('refuses (exit 10) a catalog without file records, or whose records do not add up', () => {
    const noRecords = () => selectPrune(entriesOf({ records: false }), held(DAY2));
    expect(noRecords).toThrow(/records no file list/);
    const bad = () => selectPrune(entriesOf({ pruned: true, badCount: true }), held(DAY2));
    expect(bad).toThrow(/do not add up/);
    try {
      bad();
    } catch (err) {
      expect((err as { exitCode: number }).exitCode).toBe(ExitCode.verifyFailed);
    }
  });

  it("refuses a list that drops a backup's snapshot the catalog has not forgotten", () => {
    const key = generateSigningKey();
    const dir = mkdtempSync(path.join(tmpdir(), 'fleet-prune-'));
    dirs.push(dir);
    createCatalog(REAL_WRITES, dir, key);
    const day2 = DAY2.filter((n) => n !== `snapshots/${fp('a')}`);
    appendCatalog(REAL_WRITES, dir, key, [
      backup(fp('a'), DAY1, new Set(), '2026-12-06T02:00:00Z'),
      backup(fp('b'), day2, new Set(DAY1), '2026-12-07T02:00:00Z'),
    ]);
    expect(() => selectPrune(verifyCatalog(dir, key.publicText).entries, held(DAY2))).toThrow(
      /drops the snapshot of a backup its catalog has not forgotten: snapshots\/a{64}/,
    );
  });
});
