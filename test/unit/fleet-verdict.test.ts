import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { extendsHead, judgeBox, type BoxFacts } from '../../src/fleet/verdict.js';
import { fileRecord, filesDigest, replayFiles } from '../../src/history/catalog-files.js';
import {
  appendCatalog,
  catalogFile,
  createCatalog,
  type NewEntry,
  verifyCatalog,
} from '../../src/history/catalog.js';
import { generateSigningKey, type SigningKey } from '../../src/system/signing.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import { backupEntry } from './helpers/catalog.js';

const fp = (c: string) => c.repeat(64);
const NOW = new Date('2026-12-07T12:00:00Z');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function catalog(key: SigningKey): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'fleet-verdict-'));
  dirs.push(dir);
  createCatalog(REAL_WRITES, dir, key);
  return dir;
}

const backup = backupEntry;

/** A box with two backups (the second 2 hours before NOW), its target holding every file. */
function box(key = generateSigningKey()) {
  const dir = catalog(key);
  const day1 = ['config', 'keys/k1', 'data/aa/p1', 'index/i1', `snapshots/${fp('a')}`];
  const day2 = [...day1, 'data/bb/p2', 'index/i2', `snapshots/${fp('b')}`];
  appendCatalog(REAL_WRITES, dir, key, [backup(fp('a'), '2026-12-06T10:00:00Z', day1, new Set())]);
  appendCatalog(REAL_WRITES, dir, key, [
    backup(fp('b'), '2026-12-07T10:00:00Z', day2, new Set(day1)),
    { kind: 'replicated', fingerprint: fp('b'), target: 'fleet', time: '2026-12-07T10:05:00Z' },
  ]);
  const verified = verifyCatalog(dir, key.publicText);
  const facts = (over: Partial<BoxFacts> = {}): BoxFacts => ({
    box: 'box1',
    publicKey: key.publicText,
    catalog: { verified },
    files: day2.map((name) => ({ name, size: 100 })),
    catalogBytes: 50,
    remembered: null,
    ...over,
  });
  return { key, dir, day2, facts };
}

describe('fleet status verdict', () => {
  it('a verified, fresh, complete box is ok: newest fingerprint, its age, files and bytes', () => {
    const r = judgeBox(box().facts(), NOW, 48);
    expect(r.ok).toBe(true);
    expect(r.problems).toEqual([]);
    expect(r.newest).toEqual({ fingerprint: fp('b'), time: '2026-12-07T10:00:00Z', ageHours: 2 });
    expect(r.backups).toBe(2);
    expect(r.files).toEqual({ listed: 8, held: 8, missing: [], missingCount: 0 });
    expect(r.bytes).toBe(850);
    expect(r.head?.count).toBe(3);
  });

  it('older than --max-age: stale', () => {
    const r = judgeBox(box().facts(), NOW, 1.5);
    expect(r.ok).toBe(false);
    expect(r.problems.map((p) => p.kind)).toEqual(['stale']);
    expect(r.problems[0]!.message).toMatch(/2 h old \(more than 1.5 h\)/);
  });

  it('a pack the catalog lists is missing from the target: missing, named', () => {
    const b = box();
    const r = judgeBox(b.facts({ files: b.facts().files.filter((f) => f.name !== 'data/aa/p1') }), NOW, 48);
    expect(r.problems.map((p) => p.kind)).toEqual(['missing']);
    expect(r.files.missing).toEqual(['data/aa/p1']);
    expect(r.problems[0]!.message).toMatch(/1 file\(s\) its catalog lists are missing: data\/aa\/p1/);
  });

  it('an edited catalog does not verify; no pinned key and a read failure are failures too', () => {
    const b = box();
    const text = readFileSync(catalogFile(b.dir), 'utf8').replace('"reason":"daily"', '"reason":"dailx"');
    writeFileSync(catalogFile(b.dir), text);
    let error = '';
    try {
      verifyCatalog(b.dir, b.key.publicText);
    } catch (err) {
      error = (err as Error).message;
    }
    expect(error).toMatch(/signature does not match/);
    expect(judgeBox(b.facts({ catalog: { error } }), NOW, 48).problems.map((p) => p.kind)).toEqual([
      'catalog',
    ]);
    expect(judgeBox(b.facts({ catalog: null }), NOW, 48).problems[0]!.message).toBe(
      'no catalog on the target',
    );
    expect(judgeBox(b.facts({ publicKey: null }), NOW, 48).problems.map((p) => p.kind)).toEqual(['key']);
    const unreadable = judgeBox(b.facts({ unreadable: 'fleet: list: unreachable' }), NOW, 48);
    expect(unreadable.problems).toEqual([{ kind: 'unreadable', message: 'fleet: list: unreachable' }]);
  });

  it('a catalog signed by another key (the box replaced) fails against the pinned key', () => {
    const b = box();
    expect(() => verifyCatalog(b.dir, generateSigningKey().publicText)).toThrow(/not a trusted key/);
  });

  it('a head that extends the remembered one passes; a rewritten history (same key) is rewound', () => {
    const b = box();
    const v = verifyCatalog(b.dir, b.key.publicText);
    // The head after the first backup: its line's hash is what entry 2 holds as prev.
    const earlier = { count: 1, last: v.entries[1]!.prev, verifiedAt: '2026-12-06T11:00:00Z' };
    expect(extendsHead(v, earlier)).toBe(true);
    expect(extendsHead(v, { count: v.head.count, last: v.head.last })).toBe(true);
    expect(judgeBox(b.facts({ remembered: earlier }), NOW, 48).ok).toBe(true);
    // The stolen box signs a new history of its own: valid, but not the one seen before.
    const other = box(b.key);
    const rewritten = judgeBox(
      other.facts({ remembered: { count: 3, last: 'f'.repeat(64), verifiedAt: '2026-12-07T11:00:00Z' } }),
      NOW,
      48,
    );
    expect(rewritten.problems.map((p) => p.kind)).toEqual(['rewound']);
    // Fewer entries than seen: newest entries dropped.
    expect(extendsHead(v, { count: 4, last: v.head.last })).toBe(false);
  });

  it('a catalog without file records (an older zshield) checks only the newest snapshot file', () => {
    const key = generateSigningKey();
    const dir = catalog(key);
    const { files: _files, ...old } = backup(fp('c'), '2026-12-07T11:00:00Z', [], new Set()) as NewEntry & {
      files?: unknown;
    };
    appendCatalog(REAL_WRITES, dir, key, [old as NewEntry]);
    const facts: BoxFacts = {
      box: 'old',
      publicKey: key.publicText,
      catalog: { verified: verifyCatalog(dir, key.publicText) },
      files: [{ name: 'config', size: 1 }],
      catalogBytes: 0,
      remembered: null,
    };
    const r = judgeBox(facts, NOW, 48);
    expect(r.files.listed).toBeNull();
    expect(r.files.missing).toEqual([`snapshots/${fp('c')}`]);
  });

  it('a forgotten newest backup is not the newest; a box with no backup is stale', () => {
    const b = box();
    appendCatalog(REAL_WRITES, b.dir, b.key, [
      { kind: 'forgotten', fingerprint: fp('b'), time: '2026-12-07T11:00:00Z' },
    ]);
    const r = judgeBox(b.facts({ catalog: { verified: verifyCatalog(b.dir, b.key.publicText) } }), NOW, 48);
    expect(r.newest?.fingerprint).toBe(fp('a'));
    const empty = catalog(b.key);
    const e = judgeBox(b.facts({ catalog: { verified: verifyCatalog(empty, b.key.publicText) } }), NOW, 48);
    expect(e.problems).toEqual([{ kind: 'stale', message: 'no backup in its catalog' }]);
  });
});

describe('catalog file records', () => {
  it('replaying the records gives the list; a prune drops; the digest proves it whole', () => {
    const r1 = fileRecord(new Set(), ['b', 'a']);
    expect(r1).toEqual({ add: ['a', 'b'], drop: [], count: 2, digest: filesDigest(['a', 'b']) });
    const r2 = fileRecord(new Set(['a', 'b']), ['a', 'c']);
    expect(r2.add).toEqual(['c']);
    expect(r2.drop).toEqual(['b']);
    const replay = replayFiles([{ files: r1 }, {}, { files: r2 }]);
    expect([...replay.files].sort()).toEqual(['a', 'c']);
    expect(replay.complete).toBe(true);
    expect(replay.records).toBe(2);
    // A record lost (a catalog from before records, then a delta): not whole.
    expect(replayFiles([{ files: r2 }]).complete).toBe(false);
    expect(replayFiles([]).complete).toBe(false);
  });
});
