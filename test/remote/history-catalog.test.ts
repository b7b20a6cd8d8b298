import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { canonicalJson, generateSigningKey, type Signed, signDocument } from '../../src/system/signing.js';
import { type HistoryBox, makeHistoryBox, takeFingerprint, zh } from './history-lib.js';
import { expectError } from './lib.js';

const env = inject('remote');

/**
 * The catalog of fingerprints against tampering: every way of changing it that does not hold the
 * box's private key is caught by `catalog verify` (exit 10), on the box and on the copies the
 * targets keep.
 */
describe('history catalog: signed, hash-chained, with a signed head', () => {
  let box: HistoryBox;
  let lines: string[];
  let catalogDir: string;

  beforeAll(() => {
    box = makeHistoryBox(env, { files: 5, size: 10_000 });
    takeFingerprint(zh(box, ['history', 'take', '--device', box.tree, '--reason', 'first']));
    takeFingerprint(zh(box, ['history', 'take', '--device', box.tree, '--reason', 'second']));
    const r = zh(box, ['history', 'replicate']);
    expect(r.code, r.stderr).toBe(0);
    catalogDir = path.join(box.dir, 'history');
    lines = readFileSync(path.join(catalogDir, 'catalog.jsonl'), 'utf8').trim().split('\n');
  });

  /** A copy of the catalog, changed by `edit`, checked by the CLI. */
  function verifyChanged(
    edit: (
      lines: string[],
      head: Signed<{ count: number; last: string }>,
    ) => { lines: string[]; head?: unknown },
  ) {
    const dir = mkdtempSync(path.join(box.dir, 'tampered-'));
    const head = JSON.parse(readFileSync(path.join(catalogDir, 'catalog.head.json'), 'utf8'));
    const out = edit([...lines], head);
    writeFileSync(path.join(dir, 'catalog.jsonl'), out.lines.map((l) => `${l}\n`).join(''));
    writeFileSync(path.join(dir, 'catalog.head.json'), JSON.stringify(out.head ?? head));
    return zh(box, ['catalog', 'verify', '--file-dir', dir]);
  }

  it('verifies as written, here and on both targets; the signing key is owner-only', () => {
    expect(lines.length).toBe(6); // two backups, each replicated to a and b
    const r = zh(box, ['catalog', 'verify']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/catalog verified: 6 entries/);
    for (const dest of [box.destA, box.destB]) {
      const t = zh(box, ['catalog', 'verify', '--file-dir', path.join(dest, 'catalog')]);
      expect(t.code, t.stderr).toBe(0);
    }
    expect(statSync(path.join(catalogDir, 'catalog.key')).mode & 0o777).toBe(0o600);
    expect(verifyChanged((l) => ({ lines: l })).code).toBe(0);
  });

  it('an edited entry fails its signature', () => {
    const r = verifyChanged((l) => {
      const doc = JSON.parse(l[0]!);
      doc.payload.reason = 'edited';
      l[0] = canonicalJson(doc);
      return { lines: l };
    });
    expectError(r, ExitCode.verifyFailed, /catalog entry 1: the signature does not match its content/);
  });

  it('a removed entry breaks the chain', () => {
    const r = verifyChanged((l) => ({ lines: l.filter((_, i) => i !== 2) }));
    expectError(r, ExitCode.verifyFailed, /catalog entry 3: holds number 4/);
  });

  it('reordered entries break the chain', () => {
    const r = verifyChanged((l) => ({ lines: [l[1]!, l[0]!, ...l.slice(2)] }));
    expectError(r, ExitCode.verifyFailed, /catalog entry 1: holds number 2/);
  });

  it('dropped newest entries disagree with the signed head', () => {
    const r = verifyChanged((l) => ({ lines: l.slice(0, 4) }));
    expectError(r, ExitCode.verifyFailed, /the head says 6 entries, the file has 4/);
  });

  it('a catalog re-signed whole with another key is refused', () => {
    const other = generateSigningKey();
    const r = verifyChanged((l) => {
      let prev = '';
      const out = l.map((line) => {
        const payload = { ...JSON.parse(line).payload, prev };
        const text = canonicalJson(signDocument(payload, other));
        prev = createHash('sha256').update(text).digest('hex');
        return text;
      });
      return { lines: out, head: signDocument({ count: out.length, last: prev }, other) };
    });
    expectError(
      r,
      ExitCode.verifyFailed,
      new RegExp(`signed by key ${other.keyId}, which is not a trusted key`),
    );
  });
});
