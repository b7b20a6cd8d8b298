// Benchmark (not a test): the history against plain restic, on this host, with the two OpenSSH
// servers of the remote tests on 127.0.0.1, in one run:
//
//   first take+replicate (to both targets)    vs  plain `restic backup` of the same tree
//   second take+replicate after changing 1 % of the files, and the bytes it sent as a share of
//   the first run's (goal: under 5 %)         vs  plain `restic backup` (with its parent)
//   `history restore` of the fingerprint      vs  plain `restic restore`
//   `history replicate` of the first take's repository to a fresh directory on server A (a shell)
//                                             vs  `scp -r` of the same repository files there
//   the same to server B (SFTP only)          vs  `sftp -b` batch `put -r` there
//   (medians of 3 rounds, a fresh target each round)
//
//   npx tsx test/bench/history-bench.ts [files, default 10500] [KiB per file, default 100] [replicate]
//   (a third argument `replicate`: the replication rows only). The default is a repository of about
//   1 GiB, so the per-run fixed costs (process start, restic's key derivation, the connect, the
//   catalog) do not decide the ratios. The rows go to build/bench-results.json, section history.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { type BenchRow, median, medianRow, writeBenchSection } from '../../build/bench-table.js';
import { ensureBundle } from '../bundle.js';
import {
  changeTree,
  type HistoryBox,
  makeHistoryBox,
  passwordOf,
  randomData,
  takeFingerprint,
  writeHistoryConfig,
  zh,
} from '../remote/history-lib.js';
import { KEY_USER, type RemoteEnv, setUpRemoteEnv, uidOf } from '../remote/sshd.js';

const START_LOAD = loadavg();
const files = Number(process.argv[2] ?? 10500);
const kib = Number(process.argv[3] ?? 100);
const replicateOnly = process.argv[4] === 'replicate';
const ROUNDS = 3;

const rows: BenchRow[] = [];
function row(name: string, ours: number[], theirs: number[]): BenchRow {
  const r = medianRow(name, ours, theirs);
  rows.push(r);
  return r;
}

function secs<T>(fn: () => T): [number, T] {
  const t = process.hrtime.bigint();
  const v = fn();
  return [Number(process.hrtime.bigint() - t) / 1e9, v];
}

function sh(file: string, args: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: 3_600_000, maxBuffer: 1 << 28, ...opts });
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function sentOf(stdout: string): number {
  return (JSON.parse(stdout) as { sent: number }[]).reduce((n, r) => n + r.sent, 0);
}

async function main(): Promise<void> {
  ensureBundle();
  const { env, stop } = await setUpRemoteEnv();
  try {
    const mib = Math.ceil((files * kib) / 1024 / 0.8) + 64;
    const box = makeHistoryBox(env, { files, size: kib * 1024, imageMiB: mib });
    const pw = path.join(box.dir, 'plain.pw');
    writeFileSync(pw, passwordOf(box), { mode: 0o600 });
    const plainRepo = path.join(box.dir, 'plain-repo');
    const plain = (args: string[], cwd?: string) =>
      sh(
        'restic',
        ['-r', plainRepo, '--password-file', pw, '--cache-dir', path.join(box.dir, 'plain-cache'), ...args],
        { cwd },
      );
    plain(['init']);
    const mnt = path.join(box.dir, 'plain-mnt');
    mkdirSync(mnt, { recursive: true });
    const plainBackup = () => {
      sh('mount', ['-o', 'ro,noload,loop', box.tree, mnt]);
      try {
        return secs(() => plain(['backup', '--json', '.'], mnt))[0];
      } finally {
        sh('umount', [mnt]);
      }
    };
    const ours = () => {
      const [t1, id] = secs(() => takeFingerprint(zh(box, ['history', 'take', '--device', box.tree])));
      const [t2, r] = secs(() => zh(box, ['history', 'replicate', '--json']));
      if (r.code !== 0) throw new Error(r.stderr);
      return { secs: t1 + t2, take: t1, id, sent: sentOf(r.stdout) };
    };
    console.log(
      `tree: ${files} files of ${kib} KiB (${((files * kib) / 1024).toFixed(0)} MiB) in a ${mib} MiB ext4 image`,
    );
    const first = ours();
    replicationRows(env, box);
    if (replicateOnly) return save();
    const plain1 = plainBackup();
    row(
      `first take + replicate to 2 targets (${(first.sent / 2 ** 20).toFixed(0)} MiB sent) vs restic backup`,
      [first.secs],
      [plain1],
    );
    console.log(
      `first:  take+replicate ${first.secs.toFixed(2)} s (take ${first.take.toFixed(2)} s), ${(first.sent / 2 ** 20).toFixed(1)} MiB sent to 2 targets; plain restic backup ${plain1.toFixed(2)} s`,
    );
    const changed: Record<string, Buffer> = {};
    for (let i = 0; i < Math.max(1, Math.round(files / 100)); i++)
      changed[`f${i * 100}`] = randomData(kib * 1024);
    changeTree(box, changed);
    const second = ours();
    const plain2 = plainBackup();
    console.log(
      `second (1 % of the files changed): take+replicate ${second.secs.toFixed(2)} s, ${(second.sent / 2 ** 20).toFixed(2)} MiB sent = ${((second.sent / first.sent) * 100).toFixed(2)} % of the first (goal < 5 %); plain restic backup ${plain2.toFixed(2)} s`,
    );
    row(
      `second, 1 % changed (${((second.sent / first.sent) * 100).toFixed(2)} % of the first's bytes sent) vs restic backup`,
      [second.secs],
      [plain2],
    );
    const r1s: number[] = [];
    const r2s: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const out1 = path.join(box.dir, `restore-ours-${i}`);
      const [r1, rr] = secs(() => zh(box, ['history', 'restore', second.id, out1]));
      if (rr.code !== 0) throw new Error(rr.stderr);
      const out2 = path.join(box.dir, `restore-plain-${i}`);
      const [r2] = secs(() => plain(['restore', 'latest', '--target', out2]));
      rmSync(out1, { recursive: true, force: true });
      rmSync(out2, { recursive: true, force: true });
      r1s.push(r1);
      r2s.push(r2);
    }
    const rr = row('history restore vs restic restore (same snapshot)', r1s, r2s);
    console.log(
      `restore: history restore ${rr.zshield.toFixed(2)} s; plain restic restore ${rr.plain!.toFixed(2)} s; ratio ${rr.ratio!.toFixed(2)}; ${(rr.zshield - rr.plain!).toFixed(2)} s over (medians of ${ROUNDS})`,
    );
    console.log(
      `ratios: first ${(first.secs / plain1).toFixed(2)}, second ${(second.secs / plain2).toFixed(2)} of plain restic backup (which replicates nothing)`,
    );
    rmSync(pw);
    save();
  } finally {
    await stop();
  }
}

function save(): void {
  writeBenchSection('history', rows, {
    loadBefore: START_LOAD,
    intro: `The history on the host against the two OpenSSH servers of the remote tests on 127.0.0.1, ${files} files of ${kib} KiB in an ext4 image. Replication: \`history replicate\` of the first take's repository to a fresh directory, against OpenSSH's own client copying the same repository files to the same server as the same user (\`scp -r\` to A, which has a shell; \`sftp -b\` put -r to B, SFTP only, where zshield reads each file back to check it); zshield's time includes its process start, the catalog check, the repository password check (\`restic cat config\`), the server-side hash of every file and the catalog. Restore: \`history restore\` of the second fingerprint into an empty directory against \`restic restore\` of the same snapshot. Ratio: zshield's time / the plain tool's (the goals: replication at most 1.25 to A and 1.67 to B, i.e. 0.8 and 0.6 of the plain copy's speed; restore at most 1.2 plus 0.5 s).`,
    note: `medians of ${ROUNDS} rounds (a fresh target each round) for replication and restore; the take rows one round each.`,
  });
}

/** A new empty directory on the servers, owned by the key user. */
function freshDest(env: RemoteEnv, name: string): string {
  const d = path.join(env.base, 'history-dest', name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true, mode: 0o700 });
  const { uid, gid } = uidOf(KEY_USER);
  sh('chown', [`${uid}:${gid}`, d]);
  return d;
}

/**
 * `history replicate` of the repository as it is (after the first take) to a fresh target, against
 * OpenSSH's own clients copying the same files to the same server as the same user: scp -r to A
 * (a shell), sftp -b (a batch put -r) to B (SFTP only). Medians of ROUNDS rounds.
 */
function replicationRows(env: RemoteEnv, box: HistoryBox): void {
  const repo = path.join(box.dir, 'history', 'repo');
  const bytes = Number(sh('du', ['-sb', repo]).split(/\s/)[0]);
  const ssh = ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'];
  const targets = box.config.history.targets;
  const lines: string[] = [];
  for (const [server, label, port] of [
    ['a', 'scp -r', env.serverA.port],
    ['b', 'sftp -b put -r', env.serverB.port],
  ] as const) {
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const name = `bench-${server}${i}`;
      const dest = freshDest(env, `${path.basename(box.dir)}-${name}`);
      const base = targets.find((t) => t.name === server)!;
      box.config.history.targets = [...targets, { ...base, name, directory: dest }];
      writeHistoryConfig(box);
      const [t, r] = secs(() => zh(box, ['history', 'replicate', '--target', name]));
      if (r.code !== 0) throw new Error(r.stderr);
      ours.push(t);
      const plainDest = freshDest(env, `${path.basename(box.dir)}-${name}-plain`);
      const remote = `${KEY_USER}@127.0.0.1`;
      if (server === 'a')
        theirs.push(
          secs(() =>
            sh('scp', [
              ...ssh,
              '-q',
              '-r',
              '-i',
              env.clientKey,
              '-P',
              String(port),
              repo,
              `${remote}:${plainDest}/`,
            ]),
          )[0],
        );
      else {
        const batch = path.join(box.dir, 'sftp-batch');
        writeFileSync(batch, `put -r ${repo} ${plainDest}/repo\n`);
        theirs.push(
          secs(() =>
            sh('sftp', [...ssh, '-q', '-b', batch, '-i', env.clientKey, '-P', String(port), remote]),
          )[0],
        );
      }
      rmSync(dest, { recursive: true, force: true });
      rmSync(plainDest, { recursive: true, force: true });
    }
    box.config.history.targets = targets;
    writeHistoryConfig(box);
    row(
      `replicate to ${server === 'a' ? 'A (shell) vs scp -r' : 'B (SFTP only) vs sftp -b put -r'}`,
      ours,
      theirs,
    );
    const [o, p] = [median(ours), median(theirs)];
    const mibs = (s: number) => (bytes / 2 ** 20 / s).toFixed(1);
    lines.push(
      `replicate to ${server === 'a' ? 'A (shell)' : 'B (SFTP only)'}: ${o.toFixed(2)} s (${mibs(o)} MiB/s); ${label} ${p.toFixed(2)} s (${mibs(p)} MiB/s); ${label} / replicate = ${(p / o).toFixed(2)} (median of ${ROUNDS}, ${(bytes / 2 ** 20).toFixed(1)} MiB, rounds ${ours.map((x) => x.toFixed(2)).join(' ')} vs ${theirs.map((x) => x.toFixed(2)).join(' ')})`,
    );
  }
  for (const l of lines) console.log(l);
}

await main();
