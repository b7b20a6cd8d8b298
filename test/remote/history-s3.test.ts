import { DRY_RUN_DONE } from '../../src/plan/plan.js';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectVersionsCommand,
  PutBucketPolicyCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { ExitCode } from '../../src/errors.js';
import { listLocalRepo } from '../../src/history/repo-store.js';
import type { TargetReport } from '../../src/history/replicate-report.js';
import {
  type HistoryBox,
  changeTree,
  historyLog,
  randomData,
  makeHistoryBox,
  resticOnCopy,
  takeFingerprint,
  writeHistoryConfig,
  zh,
} from './history-lib.js';
import { SEA } from '../bundle.js';
import { waitUntil } from './lib.js';
import { makeS3User, type RgwEnv, type S3User, startOsd, stopOsd } from './rgw.js';
import {
  appendOnlyPolicy,
  copyRepoOut,
  getObject,
  listKeys,
  makeBucket,
  openUploads,
  partsInFlight,
  putObject,
  s3As,
  s3Target,
} from './s3-lib.js';

/**
 * The history on an object store (issue 23), against a real Ceph RADOS Gateway 16 (one node, the
 * remote project's global setup) and through the built binary: an SFTP and an S3 target side by
 * side, a cut multipart upload resumed, a flipped object found and sent again, the OSD stopped
 * mid-run, wrong keys and buckets refused before anything is sent, and the S3 form of `history
 * target add` as a user types it.
 */

const env = inject('remote');
const rgw = inject('rgw') as RgwEnv;

/** What `history replicate --json` prints per target (the document is replicate.ts's reports). */
type Report = TargetReport;

function ok(r: ReturnType<typeof zh>): ReturnType<typeof zh> {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

function replicate(box: HistoryBox, args: string[] = []): Report[] {
  return JSON.parse(ok(zh(box, ['history', 'replicate', '--json', ...args])).stdout) as Report[];
}

/** The boxes sign with the user that owns the buckets (in RGW only a bucket's owner may use it, without a policy). */
const boxUser = (): S3User => rgw.admin;

/** A box whose targets are SFTP server A and a fresh bucket (`s3`), a backup taken. */
async function s3Box(
  opts: { files?: number; size?: number; imageMiB?: number; s3?: Record<string, unknown> } = {},
): Promise<{ box: HistoryBox; bucket: string; id: string }> {
  const box = makeHistoryBox(env, {
    files: opts.files ?? 12,
    size: opts.size ?? 40_000,
    imageMiB: opts.imageMiB ?? 64,
  });
  const bucket = await makeBucket(rgw);
  box.config.history.targets = [
    box.config.history.targets[0]!,
    s3Target(box, rgw, boxUser(), bucket, opts.s3),
  ];
  writeHistoryConfig(box);
  const id = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
  return { box, bucket, id };
}

async function checkS3Copy(box: HistoryBox, bucket: string): Promise<string[]> {
  const copy = mkdtempSync(path.join(box.dir, 's3copy-'));
  try {
    await copyRepoOut(rgw, bucket, 'box1/', copy);
    const c = resticOnCopy(box, copy);
    expect(c.check.code, c.check.stderr).toBe(0);
    return c.snapshots;
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

describe('history on an S3 target (Ceph RGW 16)', () => {
  it('take + replicate to an SFTP and an S3 target: both pass restic check --read-data; a flipped object is found and sent again; restore --from s3', async () => {
    const { box, bucket, id } = await s3Box();
    const r = replicate(box);
    expect(r.map((x) => [x.target, x.ok])).toEqual([
      ['a', true],
      ['s3', true],
    ]);
    expect(r[1]!.uploaded).toBe(r[0]!.uploaded);
    const keys = await listKeys(rgw, bucket, 'box1/');
    expect([...keys.keys()].some((k) => k.startsWith('box1/repo/snapshots/'))).toBe(true);
    expect([...keys.keys()].some((k) => k.startsWith('box1/catalog/'))).toBe(true);
    const a = resticOnCopy(box, box.destA);
    expect(a.check.code, a.check.stderr).toBe(0);
    // One byte of a pack flipped on the store (same size: only reading it back finds it).
    const key = [...keys.keys()].find((k) => k.startsWith('box1/repo/data/'))!;
    const body = await getObject(rgw, bucket, key);
    body[Math.floor(body.length / 2)]! ^= 0xff;
    await putObject(rgw, bucket, key, body);
    const verify = zh(box, ['history', 'verify', '--all']);
    expect(verify.code, verify.stderr).toBe(ExitCode.verifyFailed);
    expect(verify.stderr).toContain(key.slice('box1/repo/'.length));
    // --verify-all reads every file back, finds it and sends it again; nothing else is sent.
    const again = replicate(box, ['--verify-all']);
    expect(again[1]!.uploaded).toBe(0);
    expect(again[1]!.verified).toBe([...keys.keys()].filter((k) => k.startsWith('box1/repo/')).length);
    expect(again[1]!.repaired).toEqual([key.slice('box1/repo/'.length)]);
    ok(zh(box, ['history', 'verify', '--all']));
    expect(await checkS3Copy(box, bucket)).toContain(id);
    // Status: the S3 target's place and no lag.
    const st = JSON.parse(ok(zh(box, ['history', 'status', '--json'])).stdout) as {
      targets: { name: string; where: string; lacks: number }[];
    };
    const t = st.targets.find((x) => x.name === 's3')!;
    expect(t.where).toBe(`s3 ${rgw.endpoint}/${bucket}/box1/`);
    expect(t.lacks).toBe(0);
    // Restore from the object store alone.
    const out = path.join(box.dir, 'restored');
    ok(zh(box, ['history', 'restore', id, out, '--from', 's3']));
    expect(readdirSync(out)).toContain('f0');
  });

  it('a multipart upload cut by a kill resumes from its parts', async () => {
    // One large incompressible file: restic packs of ~16 MiB, sent in parts of 8 MiB above 5 MiB.
    const { box, bucket } = await s3Box({
      files: 1,
      size: 24 * 1024 * 1024,
      imageMiB: 64,
      s3: { multipartAboveMiB: 5 },
    });
    box.config.history.targets = [box.config.history.targets[1]!];
    writeHistoryConfig(box);
    const child = spawn(SEA, ['-c', box.configFile, 'history', 'replicate', '--bwlimit', '4096'], {
      stdio: 'ignore',
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C' },
    });
    const done = new Promise<void>((r) => child.on('close', () => r()));
    // A file of two parts or more with its first part stored: at 4 MiB/s, its next part is 2 s
    // away, time enough to kill the run between its parts.
    const local = (key: string) => statSync(path.join(box.dir, 'history', ...key.split('/').slice(1))).size;
    let cut = false;
    const poll = setInterval(() => {
      // With several files in flight, an upload listed may complete before its parts are asked
      // for (NoSuchKey): the next poll looks again.
      void partsInFlight(rgw, bucket).then(
        (inFlight) => {
          cut ||= inFlight.some((u) => u.parts >= 1 && local(u.key) > 8 * 1024 * 1024);
        },
        () => {},
      );
    }, 150);
    try {
      await waitUntil(() => cut, 'a multipart upload with a part stored', 300_000);
    } finally {
      clearInterval(poll);
    }
    child.kill('SIGKILL');
    await done;
    expect([...(await listKeys(rgw, bucket, 'box1/repo/snapshots/')).keys()]).toEqual([]);
    const r = replicate(box);
    expect(r[0]!.ok).toBe(true);
    expect(r[0]!.resumed).toBeGreaterThanOrEqual(1);
    expect(historyLog(box)).toMatch(/continuing a cut upload \([1-9]\d* part\(s\) there\)/);
    expect(await openUploads(rgw, bucket)).toBe(0);
    await checkS3Copy(box, bucket);
  });

  it('the OSD stopped mid-run: the run ends unreachable within its timeouts, the next completes', async () => {
    const { box, bucket } = await s3Box({ files: 30, size: 200_000, s3: {} });
    box.config.history['connectTimeoutSeconds'] = 4;
    box.config.history['retries'] = 0;
    box.config.history.targets = [box.config.history.targets[1]!];
    writeHistoryConfig(box);
    const child = spawn(SEA, ['-c', box.configFile, 'history', 'replicate', '--bwlimit', '512'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C' },
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const code = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    try {
      await waitUntil(() => historyLog(box).includes('file(s) to send'), 'the upload to start', 120_000);
      stopOsd(rgw);
      const stopped = Date.now();
      // Bounds a hang (the bug this guards against): the run is killed rather than waited for.
      const bound = setTimeout(() => child.kill('SIGKILL'), 100_000);
      const exit = await code;
      clearTimeout(bound);
      expect(exit, stderr).toBe(ExitCode.remoteFailed);
      expect(stderr).toMatch(/unreachable: no answer within the timeout/);
      // 4 s of silence per request (no retry) once the OSD is gone: far from a hang.
      expect(Date.now() - stopped).toBeLessThan(60_000);
    } finally {
      startOsd(rgw);
    }
    const r = replicate(box);
    expect(r[0]!.ok).toBe(true);
    await checkS3Copy(box, bucket);
  }, 300_000);

  it('as a user types it: history target add of an s3 target (a wrong secret, bucket or http:// refused first), then history replicate --json; the secret is nowhere', async () => {
    const box = makeHistoryBox(env, { files: 4, size: 20_000 });
    box.config.history.targets = [];
    writeHistoryConfig(box);
    const bucket = await makeBucket(rgw);
    const user = boxUser();
    const before = readFileSync(box.configFile, 'utf8');
    const add = (where: string, secret: string, extra: string[]) =>
      zh(
        box,
        [
          'history',
          'target',
          'add',
          'obj',
          where,
          '--endpoint',
          rgw.endpoint,
          '--access-key-id',
          user.accessKeyId,
          '--secret-stdin',
          ...extra,
        ],
        { input: `${secret}\n` },
      );
    const where = `s3://${bucket}/site1/box7`;
    // Refused before anything is written anywhere: one clear error each.
    const wrongSecret = add(where, 'not-the-secret', ['--allow-http']);
    expect(wrongSecret.code, wrongSecret.stderr).toBe(ExitCode.remoteFailed);
    expect(wrongSecret.stderr).toMatch(/authentication failed/);
    const noBucket = add('s3://no-such-bucket-zs/box1', user.secretAccessKey, ['--allow-http']);
    expect(noBucket.code, noBucket.stderr).toBe(ExitCode.remoteFailed);
    expect(noBucket.stderr).toMatch(/bucket no-such-bucket-zs does not exist/);
    const http = add(where, user.secretAccessKey, []);
    expect(http.code, http.stderr).toBe(ExitCode.config);
    expect(http.stderr).toMatch(/allowHttp/);
    expect(readFileSync(box.configFile, 'utf8')).toBe(before);
    expect((await listKeys(rgw, bucket)).size).toBe(0);
    // The dry run checks the key and changes nothing; then the real one.
    const dry = add(where, user.secretAccessKey, ['--dry-run', '--allow-http']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(`${dry.stdout}\n${dry.stderr}`).toContain(DRY_RUN_DONE);
    expect(readFileSync(box.configFile, 'utf8')).toBe(before);
    // The command contract for the S3 form (the contract lane has no RGW): its dry run's one JSON
    // document, and a failure's {code, message, hint}.
    const dryJson = add(where, user.secretAccessKey, ['--dry-run', '--allow-http', '--json']);
    expect(dryJson.code, dryJson.stderr).toBe(0);
    const plan = JSON.parse(dryJson.stdout) as { plan?: { title: string; steps: unknown[] } };
    expect(JSON.stringify(plan)).toMatch(/"title":"Add history target obj/);
    const failJson = add(where, 'not-the-secret', ['--allow-http', '--json']);
    expect(failJson.code).toBe(ExitCode.remoteFailed);
    expect(JSON.parse(failJson.stdout)).toMatchObject({
      code: ExitCode.remoteFailed,
      message: expect.any(String),
    });
    expect(readFileSync(box.configFile, 'utf8')).toBe(before);
    expect((await listKeys(rgw, bucket)).size).toBe(0);
    const added = ok(add(where, user.secretAccessKey, ['--allow-http', '--json']));
    expect(JSON.parse(added.stdout)).toEqual({ target: 'obj', added: true });
    // The probe left nothing behind.
    expect((await listKeys(rgw, bucket)).size).toBe(0);
    const t = JSON.parse(readFileSync(box.configFile, 'utf8')).history.targets[0];
    expect(t).toMatchObject({ name: 'obj', type: 's3', bucket, prefix: 'site1/box7/', allowHttp: true });
    expect(t.secretAccessKey).toMatch(/^v1:/);
    takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    const rep = ok(zh(box, ['history', 'replicate', '--json']));
    const r = JSON.parse(rep.stdout) as Report[];
    expect(r).toMatchObject([{ target: 'obj', ok: true }]);
    expect(r[0]!.uploaded).toBeGreaterThan(3);
    expect([...(await listKeys(rgw, bucket, 'site1/box7/repo/snapshots/')).keys()]).toHaveLength(1);
    const list = ok(zh(box, ['history', 'target', 'list']));
    expect(list.stdout).toContain(`obj  s3 ${rgw.endpoint}/${bucket}/site1/box7/  access key`);
    const show = ok(zh(box, ['config', 'show']));
    // A configured target whose secret is wrong: the listing fails, nothing is sent.
    const stored = await listKeys(rgw, bucket);
    takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    box.config = JSON.parse(readFileSync(box.configFile, 'utf8'));
    box.config.history.targets = [
      {
        ...t,
        secretAccessKey: s3Target(box, rgw, { ...user, secretAccessKey: 'wrong-secret-x' }, bucket)[
          'secretAccessKey'
        ],
      },
    ];
    writeHistoryConfig(box);
    const bad = zh(box, ['history', 'replicate', '--json']);
    expect(bad.code, bad.stderr).toBe(ExitCode.remoteFailed);
    expect(bad.stderr).toMatch(/obj: .*authentication failed/);
    expect(await listKeys(rgw, bucket)).toEqual(stored);
    for (const x of [wrongSecret, noBucket, http, dry, dryJson, failJson, added, rep, list, show, bad])
      expect(`${x.stdout}${x.stderr}`).not.toContain(user.secretAccessKey);
    expect(historyLog(box)).not.toContain(user.secretAccessKey);
    expect(readFileSync(box.configFile, 'utf8')).not.toContain(user.secretAccessKey);
  });

  it('append-only by the bucket policy (RGW 16): the box key cannot delete, replication never deletes and says so; the prune credential can', async () => {
    const owner = rgw.admin;
    const boxKey = makeS3User(rgw, `box-ao-${process.pid}`);
    const bucket = await makeBucket(rgw);
    const s3 = s3As(rgw, owner);
    await s3.send(
      new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }),
    );
    await s3.send(
      new PutBucketPolicyCommand({ Bucket: bucket, Policy: appendOnlyPolicy(bucket, 'box1/', boxKey.uid) }),
    );
    const box = makeHistoryBox(env, { files: 6, size: 30_000 });
    box.config.history.targets = [];
    box.config.history['keep'] = { daily: 1, weekly: 0, monthly: 0 };
    writeHistoryConfig(box);
    const added = zh(
      box,
      ['history', 'target', 'add', 'ao', `s3://${bucket}/box1`, '--endpoint', rgw.endpoint].concat([
        '--access-key-id',
        boxKey.accessKeyId,
        '--secret-stdin',
        '--allow-http',
        '--append-only',
      ]),
      { input: `${boxKey.secretAccessKey}\n` },
    );
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/deletes are refused to key/);
    box.config = JSON.parse(readFileSync(box.configFile, 'utf8'));
    const first = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    expect(replicate(box)[0]!.ok).toBe(true);
    changeTree(box, { f0: randomData(30_000), g1: randomData(30_000) });
    takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    // keep.daily 1: the first backup is forgotten and pruned here; the target keeps its files.
    const pruned = JSON.parse(ok(zh(box, ['history', 'prune', '--json'])).stdout) as {
      forgotten: string[];
      replication: Report[];
    };
    expect(pruned.forgotten).toEqual([first]);
    expect(pruned.replication[0]).toMatchObject({ target: 'ao', ok: true, deleted: 0 });
    expect(pruned.replication[0]!.kept).toBeGreaterThan(0);
    expect(historyLog(box)).toMatch(
      /append-only: \d+ file\(s\) the local repository no longer has are left there/,
    );
    const listed = await listKeys(rgw, bucket, 'box1/repo/');
    expect([...listed.keys()]).toContain(`box1/repo/snapshots/${first}`);
    // The box's own key: no delete (with or without a version), no policy or versioning change.
    const asBox = s3As(rgw, boxKey);
    const snapKey = `box1/repo/snapshots/${first}`;
    const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: snapKey }));
    const v0 = versions.Versions![0]!.VersionId!;
    const denied = async (p: Promise<unknown>) => {
      const err = await p.then(
        () => null,
        (e: unknown) => e as { $metadata?: { httpStatusCode?: number } },
      );
      expect(err?.$metadata?.httpStatusCode).toBe(403);
    };
    await denied(asBox.send(new DeleteObjectCommand({ Bucket: bucket, Key: snapKey })));
    await denied(asBox.send(new DeleteObjectCommand({ Bucket: bucket, Key: snapKey, VersionId: v0 })));
    await denied(
      asBox.send(
        new PutBucketPolicyCommand({ Bucket: bucket, Policy: '{"Version":"2012-10-17","Statement":[]}' }),
      ),
    );
    await denied(
      asBox.send(
        new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Suspended' } }),
      ),
    );
    // A PUT over a listed file is allowed, and only adds a version: the earlier one is still there.
    const original = await getObject(rgw, bucket, snapKey);
    await asBox.send(new PutObjectCommand({ Bucket: bucket, Key: snapKey, Body: Buffer.from('garbage') }));
    const old = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: snapKey, VersionId: v0 }));
    expect(Buffer.from(await old.Body!.transformToByteArray())).toEqual(original);
    expect(await listKeys(rgw, bucket, 'box1/repo/')).toEqual(new Map([...listed, [snapKey, 7]]));
    asBox.destroy();
    // The prune credential (the owner, never on the box) removes exactly what the box no longer has.
    const local = new Set(
      listLocalRepo(path.join(box.dir, 'history', 'repo')).map((f) => `box1/repo/${f.name}`),
    );
    const gone = [...listed.keys()].filter((k) => !local.has(k));
    expect(gone.length).toBe(pruned.replication[0]!.kept);
    for (const k of gone) await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: k }));
    s3.destroy();
    expect([...(await listKeys(rgw, bucket, 'box1/repo/')).keys()].sort()).toEqual([...local].sort());
    await checkS3Copy(box, bucket);
  });
});
