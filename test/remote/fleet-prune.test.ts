import { chownSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  ListObjectVersionsCommand,
  PutBucketPolicyCommand,
  PutBucketVersioningCommand,
} from '@aws-sdk/client-s3';
import { describe, expect, inject, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import type { FleetPruneReport } from '../../src/fleet/prune.js';
import type { BoxResult } from '../../src/fleet/verdict.js';
import { listLocalRepo } from '../../src/history/repo-store.js';
import {
  type HistoryBox,
  changeTree,
  makeHistoryBox,
  randomData,
  resticOnCopy,
  takeFingerprint,
  writeHistoryConfig,
  zh,
} from './history-lib.js';
import { makeS3User, type RgwEnv } from './rgw.js';
import { appendOnlyPolicy, copyRepoOut, listKeys, makeBucket, s3As, s3Target } from './s3-lib.js';
import { KEY_USER, uidOf } from './sshd.js';

/**
 * The vendor's prune of an append-only target (issue 23 pt 2), through the built binary: a box
 * replicates to a bucket whose policy denies its key every delete, prunes, replicates again (what
 * the prune dropped is left there); `fleet prune` on the vendor's machine, with the bucket owner's
 * key, removes exactly those files, and the copy passes `restic check --read-data`.
 */

const env = inject('remote');
const rgw = inject('rgw') as RgwEnv;

function ok(r: ReturnType<typeof zh>): ReturnType<typeof zh> {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

/** The vendor's machine: its own config and state, one target (with the credential that may delete). */
function vendorOf(box: HistoryBox, target: Record<string, unknown>, keys: string) {
  const dir = mkdtempSync(path.join(box.dir, 'vendor-'));
  const vendor: HistoryBox = {
    ...box,
    configFile: path.join(dir, 'zshield.conf'),
    config: {
      ...box.config,
      paths: { stateDir: path.join(dir, 'state'), runDir: path.join(dir, 'run') },
      history: { ...box.config.history, targets: [target] },
    },
  };
  writeHistoryConfig(vendor);
  const name = String(target['name']);
  return {
    prune: (args: string[]) => zh(vendor, ['fleet', 'prune', '--target', name, '--keys', keys, ...args]),
    status: () => zh(vendor, ['fleet', 'status', '--target', name, '--keys', keys, '--json']),
    raw: (args: string[]) => zh(vendor, args),
  };
}

function pinKey(box: HistoryBox, name: string): string {
  const keys = mkdtempSync(path.join(box.dir, 'fleet-keys-'));
  writeFileSync(path.join(keys, `${name}.pub`), `${String(box.config.history['publicKey'])}\n`);
  return keys;
}

/** Two backups, the first forgotten and pruned away locally (keep.daily 1); `--replicate` as given. */
function takeTwiceAndPrune(box: HistoryBox, pruneArgs: string[]): { second: string } {
  takeFingerprint(zh(box, ['history', 'take', '--device', box.tree, '--replicate']));
  changeTree(box, { f0: randomData(30_000), g1: randomData(30_000) });
  const second = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree, '--replicate']));
  ok(zh(box, ['history', 'prune', ...pruneArgs]));
  return { second };
}

const localNames = (box: HistoryBox) =>
  new Set(listLocalRepo(path.join(box.dir, 'history', 'repo')).map((f) => f.name));

describe('fleet prune: the vendor removes what a box dropped from its append-only target', () => {
  it('S3 (bucket policy, versioning on): exactly the files left by the box, after a dry run that changes nothing', async () => {
    const owner = rgw.admin;
    const boxKey = makeS3User(rgw, `box-fp-${process.pid}`);
    const bucket = await makeBucket(rgw);
    const s3 = s3As(rgw, owner);
    await s3.send(
      new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }),
    );
    await s3.send(
      new PutBucketPolicyCommand({ Bucket: bucket, Policy: appendOnlyPolicy(bucket, 'pbox/', boxKey.uid) }),
    );
    const box = makeHistoryBox(env, { files: 6, size: 30_000 });
    box.config.history.targets = [
      s3Target(box, rgw, boxKey, bucket, { name: 'ao', prefix: 'pbox/', appendOnly: true }),
    ];
    box.config.history['keep'] = { daily: 1, weekly: 0, monthly: 0 };
    writeHistoryConfig(box);
    const { second } = takeTwiceAndPrune(box, []);

    const before = await listKeys(rgw, bucket, 'pbox/');
    const local = localNames(box);
    const repoKeys = [...before.keys()].filter((k) => k.startsWith('pbox/repo/'));
    const left = repoKeys.map((k) => k.slice('pbox/repo/'.length)).filter((n) => !local.has(n));
    expect(left.length).toBeGreaterThan(0);
    expect(left.some((n) => n.startsWith('snapshots/'))).toBe(true);
    expect(left.some((n) => n.startsWith('data/'))).toBe(true);

    const keys = pinKey(box, 'pbox');
    const vendor = vendorOf(box, s3Target(box, rgw, owner, bucket, { name: 'fleet', prefix: '' }), keys);
    // The vendor's first look remembers the box's head (fleet prune refuses a history rewritten since).
    const seen = vendor.status();
    expect(seen.code, seen.stderr).toBe(0);

    // Without --yes: refused (exit 6) after the plan, nothing removed.
    const asked = vendor.prune(['--box', 'pbox']);
    expect(asked.code, asked.stderr).toBe(ExitCode.refused);
    expect(asked.stdout).toMatch(/remove \d+ snapshots file\(s\)/);
    // The dry run: the plan, as text and as JSON, and nothing removed.
    const dry = ok(vendor.prune(['--box', 'pbox', '--dry-run']));
    expect(dry.stdout).toContain('dry run: nothing was changed');
    const dryJson = JSON.parse(ok(vendor.prune(['--box', 'pbox', '--dry-run', '--json'])).stdout) as {
      title: string;
      steps: { title: string }[];
    };
    expect(dryJson.steps.map((s) => s.title.replace(/\d+ /, ''))).toEqual([
      'remove snapshots file(s)',
      'remove index file(s)',
      'remove data file(s)',
    ]);
    expect(dryJson.title).toContain(`the ${left.length} file(s) box pbox's repository no longer has`);
    expect(await listKeys(rgw, bucket, 'pbox/')).toEqual(before);

    // The real run with the owner's key: exactly the left files, snapshots first, then index, data.
    const run = vendor.prune(['--box', 'pbox', '--yes', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as FleetPruneReport;
    expect(report.applied).toBe(true);
    expect([...report.removed].sort()).toEqual([...left].sort());
    const rank = (n: string) => ['snapshots', 'index', 'data', 'keys'].indexOf(n.split('/')[0]!);
    expect(report.removed.map(rank)).toEqual([...report.removed.map(rank)].sort());
    expect(report.unknown).toEqual([]);
    const after = await listKeys(rgw, bucket, 'pbox/');
    expect([...after.keys()].filter((k) => k.startsWith('pbox/repo/')).sort()).toEqual(
      [...local].map((n) => `pbox/repo/${n}`).sort(),
    );
    // The catalog is never touched.
    expect([...after.keys()].filter((k) => k.startsWith('pbox/catalog/'))).toEqual(
      [...before.keys()].filter((k) => k.startsWith('pbox/catalog/')),
    );
    // Versioning on: a removed object's bytes stay as a noncurrent version (the bucket's lifecycle
    // rule, or the owner, expires them): the window in which a prune can be undone.
    const gone = `pbox/repo/${left.find((n) => n.startsWith('data/'))!}`;
    const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: gone }));
    expect((versions.Versions ?? []).length).toBe(1);
    expect((versions.DeleteMarkers ?? []).length).toBe(1);
    s3.destroy();

    // A byte copy of what is left is a whole repository, and the box passes fleet status.
    const copy = mkdtempSync(path.join(box.dir, 's3copy-'));
    await copyRepoOut(rgw, bucket, 'pbox/', copy);
    const c = resticOnCopy(box, copy);
    rmSync(copy, { recursive: true, force: true });
    expect(c.check.code, c.check.stderr).toBe(0);
    expect(c.snapshots).toEqual([second]);
    const st = vendor.status();
    expect(st.code, st.stderr).toBe(0);
    const [b] = (JSON.parse(st.stdout) as { boxes: BoxResult[] }).boxes;
    expect(b!.ok).toBe(true);
    expect(b!.files.listed).toBe(b!.files.held);

    // Once more: nothing left to remove.
    const again = JSON.parse(
      ok(vendor.prune(['--box', 'pbox', '--yes', '--json'])).stdout,
    ) as FleetPruneReport;
    expect(again.removed).toEqual([]);

    // The refusals: an unknown target (5), a box not there (5), no pinned key (10), nothing removed.
    const emptyKeys = mkdtempSync(path.join(box.dir, 'no-keys-'));
    const vendorNoKey = vendorOf(
      box,
      s3Target(box, rgw, owner, bucket, { name: 'fleet', prefix: '' }),
      emptyKeys,
    );
    expect(vendorNoKey.prune(['--box', 'pbox', '--yes']).code).toBe(ExitCode.verifyFailed);
    expect(vendor.prune(['--box', 'nobox', '--yes']).code).toBe(ExitCode.notFound);
    expect(vendor.raw(['fleet', 'prune', '--target', 'nope', '--box', 'pbox']).code).toBe(ExitCode.notFound);
    expect(await listKeys(rgw, bucket, 'pbox/')).toEqual(after);
  });

  it('SFTP: the same selection on a box folder (files a prune dropped, the catalog after it there)', () => {
    const root = path.join(env.base, 'history-dest', `fleet-fp-${process.pid}`);
    const { uid, gid } = uidOf(KEY_USER);
    // Its parents are everyone's to walk through (the server's user walks down to it).
    mkdirSync(path.dirname(root), { recursive: true, mode: 0o755 });
    mkdirSync(path.join(root, 'sbox'), { recursive: true, mode: 0o700 });
    chownSync(root, uid, gid);
    chownSync(path.join(root, 'sbox'), uid, gid);
    const box = makeHistoryBox(env, { files: 6, size: 30_000 });
    const a = box.config.history.targets[0]!;
    box.config.history.targets = [{ ...a, name: 'fleet', directory: path.join(root, 'sbox') }];
    box.config.history['keep'] = { daily: 1, weekly: 0, monthly: 0 };
    writeHistoryConfig(box);
    // The prune not replicated (an SFTP target is not append-only: replication would delete), its
    // catalog copied to the target as replication copies it last.
    const { second } = takeTwiceAndPrune(box, ['--no-replicate']);
    for (const name of readdirSync(path.join(box.dir, 'history')).filter((n) => n.startsWith('catalog.'))) {
      if (!['catalog.jsonl', 'catalog.head.json'].includes(name)) continue;
      const dest = path.join(root, 'sbox', 'catalog', name);
      copyFileSync(path.join(box.dir, 'history', name), dest);
      chownSync(dest, uid, gid);
    }
    const list = (dir: string): string[] =>
      readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
        .sort();
    const repo = path.join(root, 'sbox', 'repo');
    const local = localNames(box);
    // What the repack wrote reaches the target as an append-only replication sends it (no deletes).
    const there = new Set(list(repo));
    for (const n of [...local].filter((x) => !there.has(x))) {
      const dest = path.join(repo, n);
      mkdirSync(path.dirname(dest), { recursive: true });
      copyFileSync(path.join(box.dir, 'history', 'repo', n), dest);
      chownSync(dest, uid, gid);
      chownSync(path.dirname(dest), uid, gid);
    }
    const left = list(repo).filter((n) => !local.has(n));
    expect(left.length).toBeGreaterThan(0);
    const vendor = vendorOf(box, { ...a, name: 'fleet', directory: root }, pinKey(box, 'sbox'));
    const r = vendor.prune(['--box', 'sbox', '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect([...(JSON.parse(r.stdout) as FleetPruneReport).removed].sort()).toEqual(left);
    expect(list(repo)).toEqual([...local].sort());
    const c = resticOnCopy(box, path.join(root, 'sbox'));
    expect(c.check.code, c.check.stderr).toBe(0);
    expect(c.snapshots).toEqual([second]);
  });
});
