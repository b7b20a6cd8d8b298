// Benchmark (not a test): a fleet replicating to one Ceph RADOS Gateway at once (issue 23 pt 5).
// N boxes (processes with their own restic repositories and history keys), each a tree of FILES
// files of KIB KiB, replicate to one bucket (a prefix each) at the same moment, as the built
// binary; then 1 % of each box's files change, each takes a backup and all replicate again.
// Against it, in the same run: a plain upload of the very repository files zshield sent (packs,
// index, snapshots, config, keys), with the same AWS SDK and the same files in flight per box
// (S3Store's 2), one process per box, all at once. One round per day (each is the whole fleet).
//
//   npx tsx test/bench/fleet-bench.ts [boxes, default 16] [files, default 2000] [KiB per file, default 100]
//
// Rows (section `fleet` of build/bench-results.json): each day's throughput, zshield against the
// plain upload (goal: at least 0.8 of it), and the second day's bytes as a share of the first's
// (goal: under 5 %).
import { spawn } from 'node:child_process';
import { statfsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { type BenchRow, writeBenchSection } from '../../build/bench-table.js';
import { listLocalRepo } from '../../src/history/repo-store.js';
import { ensureBundle } from '../bundle.js';
import {
  changeTree,
  type HistoryBox,
  makeHistoryBoxAsync,
  randomData,
  takeFingerprint,
  writeHistoryConfig,
  zhAsync,
} from '../remote/history-lib.js';
import { type RgwEnv, startRgw } from '../remote/rgw.js';
import { listKeys, makeBucket, s3As, s3Target } from '../remote/s3-lib.js';
import { setUpRemoteEnv } from '../remote/sshd.js';

/** S3Store.filesInFlight: the plain upload keeps as many files in flight per box. */
const IN_FLIGHT = 2;
/** Boxes set up (tree, init, take) at once: the machine's cores, not the store, bound this part. */
const SETUP_LANES = 2;
/**
 * The RGW's OSD is an 8 GiB sparse file (ceph-rgw.sh): day 1's plain upload goes first and is
 * removed before zshield's, so the OSD holds one fleet's repositories at a time.
 */
const OSD_BYTES = 8 * 2 ** 30;

interface PlainJob {
  endpoint: string;
  bucket: string;
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  repo: string;
  names: string[];
}

/** The plain upload of one box (a child process of this script: `--plain`, the job on stdin). */
async function plainChild(): Promise<void> {
  const { PutObjectCommand } = await import('@aws-sdk/client-s3');
  // Loaded: the parent starts its clock when every child is, then hands out the jobs.
  process.stdout.write('ready\n');
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const job = JSON.parse(input) as PlainJob;
  const s3 = s3As({ endpoint: job.endpoint } as RgwEnv, {
    uid: '',
    accessKeyId: job.accessKeyId,
    secretAccessKey: job.secretAccessKey,
  });
  let next = 0;
  let bytes = 0;
  const lane = async () => {
    for (let i = next++; i < job.names.length; i = next++) {
      const name = job.names[i]!;
      const body = await readFile(path.join(job.repo, name));
      await s3.send(
        new PutObjectCommand({
          Bucket: job.bucket,
          Key: `${job.prefix}${name}`,
          Body: body,
          ContentLength: body.length,
        }),
      );
      bytes += body.length;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  s3.destroy();
  process.stdout.write(`${JSON.stringify({ bytes })}\n`);
}

async function inLanes<T>(items: readonly T[], lanes: number, fn: (x: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      for (let x = queue.shift(); x !== undefined; x = queue.shift()) await fn(x);
    }),
  );
}

const secsSince = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e9;
const mib = (b: number) => b / 2 ** 20;

/** Every box replicates at once: wall time from the first start to the last end, bytes sent. */
async function replicateAll(boxes: HistoryBox[]): Promise<{ secs: number; bytes: number }> {
  const t = process.hrtime.bigint();
  const runs = await Promise.all(boxes.map((b) => zhAsync(b, ['history', 'replicate', '--json'])));
  const secs = secsSince(t);
  let bytes = 0;
  for (const [i, r] of runs.entries()) {
    if (r.code !== 0) throw new Error(`box ${i}: history replicate -> ${r.code}\n${r.stderr}`);
    bytes += (JSON.parse(r.stdout) as { sent: number }[]).reduce((n, x) => n + x.sent, 0);
  }
  return { secs, bytes };
}

/** The plain upload of each box's given files to the plain bucket, all boxes at once. */
async function plainAll(
  rgw: RgwEnv,
  bucket: string,
  jobs: { box: HistoryBox; names: string[]; prefix: string }[],
): Promise<{ secs: number; bytes: number }> {
  const self = import.meta.filename;
  const tsx = path.join(path.dirname(self), '..', '..', 'node_modules', '.bin', 'tsx');
  // Each child loads tsx and the SDK first (not what is measured); the clock starts when all are ready.
  const children = jobs.map(() => spawn(tsx, [self, '--plain'], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const results = children.map(
    (c) =>
      new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
        let stdout = '';
        c.stdout.on('data', (b: Buffer) => {
          stdout += b.toString();
        });
        c.on('error', reject);
        c.on('close', (code) => resolve({ code, stdout }));
      }),
  );
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve, reject) => {
          const onData = (b: Buffer) => {
            if (b.toString().includes('ready')) {
              c.stdout.off('data', onData);
              resolve();
            }
          };
          c.stdout.on('data', onData);
          c.on('close', () => reject(new Error('a plain upload ended before it was ready')));
        }),
    ),
  );
  const t = process.hrtime.bigint();
  for (const [i, c] of children.entries()) {
    const j = jobs[i]!;
    c.stdin.end(
      JSON.stringify({
        endpoint: rgw.endpoint,
        bucket,
        prefix: j.prefix,
        accessKeyId: rgw.admin.accessKeyId,
        secretAccessKey: rgw.admin.secretAccessKey,
        repo: path.join(j.box.dir, 'history', 'repo'),
        names: j.names,
      } satisfies PlainJob),
    );
  }
  const runs = await Promise.all(results);
  const secs = secsSince(t);
  let bytes = 0;
  for (const r of runs) {
    if (r.code !== 0) throw new Error(`plain upload -> ${r.code}`);
    bytes += (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { bytes: number }).bytes;
  }
  return { secs, bytes };
}

/** The plain upload's objects removed (the OSD holds one fleet at a time), 8 deletes in flight. */
async function emptyBucket(rgw: RgwEnv, bucket: string): Promise<void> {
  const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
  const keys = [...(await listKeys(rgw, bucket)).keys()];
  const s3 = s3As(rgw);
  await inLanes(keys, 8, async (Key) => {
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
  });
  s3.destroy();
}

/** Disk for the trees (ext4 images), the repositories and the store's OSD (both uploads of day 1). */
function checkDisk(dir: string, boxes: number, treeBytes: number, imageMiB: number): void {
  // The images, the repositories, the OSD's file (one fleet's repositories), and 1 GiB to spare.
  const need = boxes * (imageMiB * 2 ** 20 + treeBytes * 1.1) + boxes * treeBytes * 1.15 + 2 ** 30;
  const st = statfsSync(dir);
  const free = st.bavail * st.bsize;
  if (free < need)
    throw new Error(
      `fleet bench: ${(need / 2 ** 30).toFixed(1)} GiB needed under ${dir}, ${(free / 2 ** 30).toFixed(1)} GiB free`,
    );
  const osd = boxes * treeBytes * 1.15;
  if (osd > OSD_BYTES * 0.75)
    throw new Error(
      `fleet bench: the fleet's repositories (${(osd / 2 ** 30).toFixed(1)} GiB) would fill the RGW's 8 GiB OSD past 75 %: fewer boxes or files`,
    );
  console.log(
    `disk: ${(need / 2 ** 30).toFixed(1)} GiB needed, ${(free / 2 ** 30).toFixed(1)} GiB free; the OSD takes about ${(osd / 2 ** 30).toFixed(1)} GiB of its 8`,
  );
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 16);
  const files = Number(process.argv[3] ?? 2000);
  const kib = Number(process.argv[4] ?? 100);
  const treeBytes = files * kib * 1024;
  const imageMiB = Math.ceil(treeBytes / 2 ** 20 / 0.8) + 64;
  const loadBefore = loadavg();
  ensureBundle();
  const { env, stop } = await setUpRemoteEnv();
  let cluster: Awaited<ReturnType<typeof startRgw>> | null = null;
  try {
    checkDisk(env.base, n, treeBytes, imageMiB);
    cluster = await startRgw();
    const rgw = cluster.env;
    console.log(`RGW up in ${rgw.startSeconds.toFixed(1)} s at ${rgw.endpoint}`);
    const bucket = await makeBucket(rgw);
    const plainBucket = await makeBucket(rgw);
    const names = Array.from({ length: n }, (_, i) => `box${String(i).padStart(2, '0')}`);
    const boxes = new Map<string, HistoryBox>();
    const tSetup = process.hrtime.bigint();
    await inLanes(names, SETUP_LANES, async (name) => {
      const box = await makeHistoryBoxAsync(env, { files, size: kib * 1024, imageMiB });
      box.config.history.targets = [
        s3Target(box, rgw, rgw.admin, bucket, { name: 'fleet', prefix: `${name}/` }),
      ];
      box.config.history['verifyPercent'] = 0;
      writeHistoryConfig(box);
      takeFingerprint(await zhAsync(box, ['history', 'take', '--device', box.tree, '--reason', 'daily']));
      boxes.set(name, box);
    });
    const fleet = names.map((x) => boxes.get(x)!);
    console.log(
      `${n} boxes of ${files} files of ${kib} KiB (${mib(treeBytes).toFixed(0)} MiB each) made and backed up in ${secsSince(tSetup).toFixed(0)} s`,
    );

    // Day 1: every repository whole.
    const day1Files = fleet.map((b) => listLocalRepo(path.join(b.dir, 'history', 'repo')).map((f) => f.name));
    const plain1 = await plainAll(
      rgw,
      plainBucket,
      fleet.map((box, i) => ({ box, names: day1Files[i]!, prefix: `${names[i]}/repo/` })),
    );
    await emptyBucket(rgw, plainBucket);
    const ours1 = await replicateAll(fleet);
    console.log(
      `day 1: zshield ${ours1.secs.toFixed(1)} s, ${mib(ours1.bytes).toFixed(0)} MiB (${(mib(ours1.bytes) / ours1.secs).toFixed(1)} MiB/s); plain upload ${plain1.secs.toFixed(1)} s, ${mib(plain1.bytes).toFixed(0)} MiB (${(mib(plain1.bytes) / plain1.secs).toFixed(1)} MiB/s)`,
    );

    // Day 2: 1 % of each box's files rewritten, a backup, then all at once again.
    const changed = Math.max(1, Math.round(files / 100));
    await inLanes(fleet, SETUP_LANES, async (box) => {
      const edit: Record<string, Buffer> = {};
      for (let i = 0; i < changed; i++)
        edit[`f${Math.floor((i * files) / changed)}`] = randomData(kib * 1024);
      changeTree(box, edit);
      takeFingerprint(await zhAsync(box, ['history', 'take', '--device', box.tree, '--reason', 'daily']));
    });
    const day2Files = fleet.map((b, i) => {
      const before = new Set(day1Files[i]);
      return listLocalRepo(path.join(b.dir, 'history', 'repo'))
        .map((f) => f.name)
        .filter((x) => !before.has(x));
    });
    const ours2 = await replicateAll(fleet);
    const plain2 = await plainAll(
      rgw,
      plainBucket,
      fleet.map((box, i) => ({ box, names: day2Files[i]!, prefix: `${names[i]}/repo/` })),
    );
    const share = ours2.bytes / ours1.bytes;
    console.log(
      `day 2 (${changed} of ${files} files changed per box): zshield ${ours2.secs.toFixed(1)} s, ${mib(ours2.bytes).toFixed(1)} MiB = ${(share * 100).toFixed(2)} % of day 1 (goal < 5 %); plain upload of the same files ${plain2.secs.toFixed(1)} s, ${mib(plain2.bytes).toFixed(1)} MiB`,
    );

    const what = `${n} boxes x ${files} files x ${kib} KiB`;
    const tput = (
      name: string,
      ours: { secs: number; bytes: number },
      plain: { secs: number; bytes: number },
      detail: string,
    ): BenchRow => {
      const z = mib(ours.bytes) / ours.secs;
      const p = mib(plain.bytes) / plain.secs;
      return {
        name,
        zshield: z,
        plain: p,
        ratio: z / p,
        rounds: 1,
        unit: 'MiB/s',
        zshieldRuns: [ours.secs],
        plainRuns: [plain.secs],
        detail,
      };
    };
    const rows: BenchRow[] = [
      tput(
        `day 1: ${n} boxes replicate at once to one RGW`,
        ours1,
        plain1,
        `${mib(ours1.bytes).toFixed(0)} MiB in ${ours1.secs.toFixed(1)} s vs ${plain1.secs.toFixed(1)} s (goal: ratio >= 0.8)`,
      ),
      tput(
        `day 2 (1 % changed): ${n} boxes at once`,
        ours2,
        plain2,
        `${mib(ours2.bytes).toFixed(1)} MiB in ${ours2.secs.toFixed(1)} s vs ${plain2.secs.toFixed(1)} s`,
      ),
      {
        name: 'day 2 bytes / day 1 bytes',
        zshield: mib(ours2.bytes),
        plain: null,
        ratio: share,
        rounds: 1,
        unit: 'MiB',
        detail: `${(share * 100).toFixed(2)} % of day 1's ${mib(ours1.bytes).toFixed(0)} MiB (goal: under 5 %)`,
      },
    ];
    writeBenchSection('fleet', rows, {
      loadBefore,
      note: `${what}; each box a process (the built binary) with its own repository and keys, one bucket, a prefix each, history.verifyPercent 0 (no read-back: day 1 has nothing to check, day 2 would read 10 % of each repository); the plain upload is the AWS SDK's PutObject of the same repository files, ${IN_FLIGHT} in flight per box, one process per box, its clock started once every process had loaded (zshield's time includes its process start, the repository password check (restic cat config) and the catalog); day 1's plain upload ran before zshield's and was removed; day 2's after. One round per day; Ceph 16 RGW, one OSD on a sparse file, on this host`,
    });
  } finally {
    await cluster?.stop();
    await stop();
  }
}

if (process.argv[2] === '--plain') await plainChild();
else await main();
