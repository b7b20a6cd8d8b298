import {
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import type { BoxResult } from '../../src/fleet/verdict.js';
import {
  appendCatalog,
  CATALOG_FILES,
  createCatalog,
  type NewEntry,
  verifyCatalog,
} from '../../src/history/catalog.js';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { loadSigningKey } from '../../src/system/signing.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import {
  type HistoryBox,
  changeTree,
  makeHistoryBox,
  makeHistoryBoxAsync,
  randomData,
  takeFingerprint,
  writeHistoryConfig,
  zh,
  zhAsync,
} from './history-lib.js';
import type { RgwEnv } from './rgw.js';
import { getObject, listKeys, makeBucket, putObject, s3As, s3Target } from './s3-lib.js';
import { KEY_USER, uidOf } from './sshd.js';

const env = inject('remote');
const rgw = inject('rgw') as RgwEnv;

const BOXES = 16;
const STALE = 'box03';
const EDITED = 'box07';
const LOST_PACK = 'box11';
/** Boxes made at once. */
const LANES = 4;

function ownedByKeyUser(dir: string): string {
  // Its parents are everyone's to walk through (the server's user walks down to it).
  mkdirSync(path.dirname(dir), { recursive: true, mode: 0o755 });
  mkdirSync(dir, { mode: 0o700 });
  const { uid, gid } = uidOf(KEY_USER);
  chownSync(dir, uid, gid);
  return dir;
}

/**
 * A box's catalog rewritten and signed with its own key (what a stolen box can do), each entry's
 * time moved by `shiftHours`, `keep` entries of it: written over the box's folder on the target.
 */
async function resigned(box: HistoryBox, shiftHours: number, keep?: number): Promise<Map<string, Buffer>> {
  const hdir = String(box.config.history['dir']);
  const key = await loadSigningKey(path.join(hdir, 'catalog.key'));
  const { entries } = verifyCatalog(hdir, String(box.config.history['publicKey']));
  const dir = mkdtempSync(path.join(box.dir, 'resign-'));
  createCatalog(REAL_WRITES, dir, key);
  const moved = entries.slice(0, keep).map(({ seq: _s, prev: _p, ...e }) => ({
    ...e,
    time: new Date(Date.parse(e.time) + shiftHours * 3_600_000).toISOString(),
  }));
  appendCatalog(REAL_WRITES, dir, key, moved as NewEntry[]);
  const out = new Map(CATALOG_FILES.map((name) => [name as string, readFileSync(path.join(dir, name))]));
  rmSync(dir, { recursive: true, force: true });
  return out;
}

/** resigned, written over the box's folder on the SFTP target (each file's owner, the server's user, kept). */
async function resign(box: HistoryBox, dest: string, shiftHours: number, keep?: number): Promise<void> {
  for (const [name, data] of await resigned(box, shiftHours, keep))
    writeFileSync(path.join(dest, 'catalog', name), data);
}

interface Failure {
  code: number;
  message: string;
  hint: string | null;
  result: { failing: string[]; boxes: BoxResult[] };
}

interface Fleet {
  root: string;
  bucket: string;
  keys: string;
  boxes: Map<string, HistoryBox>;
}

let fleetMade: Promise<Fleet> | null = null;

/**
 * The 16 boxes, made once for both cases, each replicating to its own folder on the SFTP target
 * (`<root>/<box>`) and to its own prefix in one bucket (`<box>/`).
 */
function fleet(): Promise<Fleet> {
  fleetMade ??= (async () => {
    const root = ownedByKeyUser(path.join(env.base, 'history-dest', `fleet-${process.pid}`));
    const keys = path.join(env.base, 'hboxes', `fleet-keys-${process.pid}`);
    mkdirSync(keys, { recursive: true });
    const bucket = await makeBucket(rgw);
    // Made side by side, a few at a time (each is mostly waiting: restic, the server).
    const names = Array.from({ length: BOXES }, (_, i) => `box${String(i).padStart(2, '0')}`);
    const made = new Map<string, HistoryBox>();
    const makeBox = async (name: string) => {
      const box = await makeHistoryBoxAsync(env, { files: 3, size: 4000, imageMiB: 8 });
      const a = box.config.history.targets[0]!;
      box.config.history.targets = [
        { ...a, name: 'fleet', directory: ownedByKeyUser(path.join(root, name)) },
        s3Target(box, rgw, rgw.admin, bucket, { name: 'fleet-s3', prefix: `${name}/` }),
      ];
      writeHistoryConfig(box);
      takeFingerprint(await zhAsync(box, ['history', 'take', '--device', box.tree, '--reason', 'daily']));
      const r = await zhAsync(box, ['history', 'replicate']);
      expect(r.code, r.stderr).toBe(0);
      writeFileSync(path.join(keys, `${name}.pub`), `${String(box.config.history['publicKey'])}\n`);
      made.set(name, box);
    };
    const queue = [...names];
    await Promise.all(
      Array.from({ length: LANES }, async () => {
        for (let name = queue.shift(); name !== undefined; name = queue.shift()) await makeBox(name);
      }),
    );
    return { root, bucket, keys, boxes: new Map(names.map((n) => [n, made.get(n)!])) };
  })();
  return fleetMade;
}

/** The vendor's machine: one target (the fleet's folder or bucket), its own state folder. */
function vendorOf(f: Pick<Fleet, 'boxes' | 'keys'>, target: Record<string, unknown>) {
  const first = [...f.boxes.values()][0]!;
  const vendorDir = mkdtempSync(path.join(first.dir, 'vendor-'));
  const vendor: HistoryBox = {
    ...first,
    configFile: path.join(vendorDir, 'zshield.conf'),
    config: {
      ...first.config,
      paths: { stateDir: path.join(vendorDir, 'state'), runDir: path.join(vendorDir, 'run') },
      history: { ...first.config.history, targets: [target] },
    },
  };
  writeHistoryConfig(vendor);
  return (extra: string[] = [], maxAge = 24) =>
    zh(vendor, [
      'fleet',
      'status',
      '--target',
      String(target['name']),
      '--keys',
      f.keys,
      '--max-age',
      String(maxAge),
      ...extra,
    ]);
}

describe('fleet status over 16 boxes on one SFTP target and one bucket', () => {
  it('SFTP: reports exactly the stale box, the edited catalog and the lost pack; then a rewritten history', async () => {
    const f = await fleet();
    const { root, boxes } = f;
    const first = boxes.get('box00')!;
    const status = vendorOf(f, { ...first.config.history.targets[0]!, name: 'fleet', directory: root });

    // The stale box: its catalog re-signed with its own key, three days back (before the first
    // look, which remembers every head: a rewrite after it is a fault of its own, below).
    await resign(boxes.get(STALE)!, path.join(root, STALE), -72);
    const healthy = status(['--json'], 1000);
    expect(healthy.code, healthy.stderr).toBe(0);
    const all = JSON.parse(healthy.stdout) as { boxes: BoxResult[]; failing: string[] };
    expect(all.boxes.map((b) => b.box)).toEqual([...boxes.keys()]);
    expect(all.failing).toEqual([]);
    for (const b of all.boxes) {
      expect(b.files.missingCount).toBe(0);
      expect(b.files.listed).toBe(b.files.held);
      expect(b.bytes).toBeGreaterThan(0);
      expect(b.newest?.ageHours).toBeLessThan(b.box === STALE ? 73 : 1);
    }

    // The other two faults: an entry edited on the target, a data file removed from the target.
    const edited = path.join(root, EDITED, 'catalog', 'catalog.jsonl');
    const text = readFileSync(edited, 'utf8');
    expect(text).toContain('"reason":"daily"');
    writeFileSync(edited, text.replace('"reason":"daily"', '"reason":"dailx"'));
    const dataDir = path.join(root, LOST_PACK, 'repo', 'data');
    const sub = readdirSync(dataDir)[0]!;
    const pack = readdirSync(path.join(dataDir, sub))[0]!;
    unlinkSync(path.join(dataDir, sub, pack));

    const failed = status(['--json']);
    expect(failed.code, failed.stderr).toBe(ExitCode.verifyFailed);
    const doc = JSON.parse(failed.stdout) as Failure;
    expect(doc.code).toBe(ExitCode.verifyFailed);
    expect(doc.result.failing).toEqual([STALE, EDITED, LOST_PACK]);
    const kinds = (name: string) => doc.result.boxes.find((b) => b.box === name)!.problems.map((p) => p.kind);
    expect(kinds(STALE)).toEqual(['stale']);
    expect(kinds(EDITED)).toEqual(['catalog']);
    expect(kinds(LOST_PACK)).toEqual(['missing']);
    expect(doc.result.boxes.find((b) => b.box === LOST_PACK)!.files.missing).toEqual([`data/${sub}/${pack}`]);
    expect(doc.message).toMatch(
      /3 of 16 box\(es\) on fleet need attention: box03 \(stale\), box07 \(catalog\), box11 \(missing\)/,
    );

    // A stolen box rewrites its history with its own key: valid signatures, but not the head
    // this machine verified before.
    await resign(boxes.get('box05')!, path.join(root, 'box05'), 0, 0);
    // Without --json this time: the table on stdout, one error line (and its hint) on stderr.
    const plain = status();
    expect(plain.code, plain.stderr).toBe(ExitCode.verifyFailed);
    expect(plain.stdout).toMatch(/^box05\s+FAIL\s.*does not extend the head verified on/m);
    expect(plain.stdout).toMatch(/^box11\s+FAIL\s.*1 file\(s\) its catalog lists are missing/m);
    expect(plain.stdout).toMatch(/^box12\s+ok\s/m);
    const errors = plain.stderr.split('\n').filter((l) => l.startsWith('zshield: '));
    expect(errors).toEqual([
      expect.stringMatching(
        /4 of 16 box\(es\) on fleet need attention: box03 \(stale\), box05 \(rewound, stale\), box07/,
      ),
    ]);
    expect(plain.stderr).toMatch(/hint: .*fleet-heads-fleet\.json/);
  });

  it('S3: the same three faults in the bucket reported, exactly', async () => {
    const f = await fleet();
    const { bucket, boxes } = f;
    const first = boxes.get('box00')!;
    const status = vendorOf(f, { ...first.config.history.targets[1]!, prefix: '' });
    // The stale box as on SFTP: re-signed three days back before the first look.
    for (const [name, data] of await resigned(boxes.get(STALE)!, -72))
      await putObject(rgw, bucket, `${STALE}/catalog/${name}`, data);
    const healthy = status(['--json'], 1000);
    expect(healthy.code, healthy.stderr).toBe(0);
    const all = JSON.parse(healthy.stdout) as { boxes: BoxResult[]; failing: string[] };
    expect(all.boxes.map((b) => b.box)).toEqual([...boxes.keys()]);
    for (const b of all.boxes) expect(b.files.listed).toBe(b.files.held);

    const editedKey = `${EDITED}/catalog/catalog.jsonl`;
    const text = (await getObject(rgw, bucket, editedKey)).toString('utf8');
    await putObject(
      rgw,
      bucket,
      editedKey,
      Buffer.from(text.replace('"reason":"daily"', '"reason":"dailx"')),
    );
    const pack = [...(await listKeys(rgw, bucket, `${LOST_PACK}/repo/data/`)).keys()][0]!;
    const s3 = s3As(rgw);
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: pack }));
    s3.destroy();

    const failed = status(['--json']);
    expect(failed.code, failed.stderr).toBe(ExitCode.verifyFailed);
    const doc = JSON.parse(failed.stdout) as Failure;
    expect(doc.result.failing).toEqual([STALE, EDITED, LOST_PACK]);
    const kinds = (name: string) => doc.result.boxes.find((b) => b.box === name)!.problems.map((p) => p.kind);
    expect(kinds(STALE)).toEqual(['stale']);
    expect(kinds(EDITED)).toEqual(['catalog']);
    expect(kinds(LOST_PACK)).toEqual(['missing']);
    expect(doc.result.boxes.find((b) => b.box === LOST_PACK)!.files.missing).toEqual([
      pack.slice(`${LOST_PACK}/repo/`.length),
    ]);
  });

  it('after a prune (restic repacks, replication removes what the box dropped) the box still passes', async () => {
    const root = ownedByKeyUser(path.join(env.base, 'history-dest', `fleet-prune-${process.pid}`));
    const box = makeHistoryBox(env, { files: 3, size: 4000, imageMiB: 8 });
    const keys = mkdtempSync(path.join(box.dir, 'fleet-keys-'));
    const a = box.config.history.targets[0]!;
    box.config.history.targets = [
      { ...a, name: 'fleet', directory: ownedByKeyUser(path.join(root, 'pbox')) },
    ];
    box.config.history['keep'] = { daily: 1, weekly: 0, monthly: 0 };
    writeHistoryConfig(box);
    takeFingerprint(zh(box, ['history', 'take', '--device', box.tree, '--replicate']));
    changeTree(box, { f0: randomData(4000), g1: randomData(4000) });
    const second = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree, '--replicate']));
    const pruned = zh(box, ['history', 'prune']);
    expect(pruned.code, pruned.stderr).toBe(0);
    writeFileSync(path.join(keys, 'pbox.pub'), `${String(box.config.history['publicKey'])}\n`);
    const status = vendorOf(
      { boxes: new Map([['pbox', box]]), keys },
      {
        ...a,
        name: 'fleet',
        directory: root,
      },
    );
    const r = status(['--json']);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const [b] = (JSON.parse(r.stdout) as { boxes: BoxResult[] }).boxes;
    expect(b!.newest?.fingerprint).toBe(second);
    expect(b!.backups).toBe(1);
    expect(b!.files.missingCount).toBe(0);
    // The catalog's list is the pruned repository's: what the target holds, nothing more.
    expect(b!.files.listed).toBe(b!.files.held);
  });
});
