// Benchmark (not a test): upload throughput of `zshield remote copy` against `scp` to the same
// OpenSSH server on 127.0.0.1, same user, same key, same 1 GiB file, in the same run.
//
//   npx tsx test/bench/remote-bench.ts [size in MiB, default 1024] [rounds, default 3]
//
// It starts its own sshd (test/remote/sshd.ts: installs openssh-server when missing), builds the
// bundle when stale, and prints one line per run and the ratio zshield / scp (> 1: zshield is
// faster). zshield's time includes what scp does not do: the remote SHA-256 of the whole file and
// the rename; the transfer alone is shown too (from its log's timestamps). The medians go to the
// `remote` section of build/bench-results.json (a run with another size or fewer rounds does not).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { medianRow, writeBenchSection } from '../../build/bench-table.js';
import { backupFileName } from '../../src/names/backup-files.js';
import { BUNDLE, ensureBundle } from '../bundle.js';
import { day, makeBox, sha256 } from '../remote/lib.js';
import { KEY_USER, setUpRemoteEnv, uidOf } from '../remote/sshd.js';

const sizeMiB = Number(process.argv[2] ?? 1024);
const rounds = Number(process.argv[3] ?? 3);
const START_LOAD = loadavg();
const MiB = 1024 * 1024;

function writeRandomFile(file: string, bytes: number): void {
  const fd = openSync(file, 'w');
  const chunk = 8 * MiB;
  // Random data: compression anywhere on the way would flatter either side.
  for (let done = 0; done < bytes; done += chunk) writeSync(fd, randomBytes(Math.min(chunk, bytes - done)));
  closeSync(fd);
}

function timed(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): { secs: number; code: number | null; err: string } {
  const t = process.hrtime.bigint();
  const r = spawnSync(file, args, { encoding: 'utf8', env, timeout: 1_800_000 });
  return { secs: Number(process.hrtime.bigint() - t) / 1e9, code: r.status, err: r.stderr };
}

/** Seconds from the connection to the last write acknowledged, from the log's timestamps. */
function transferSecs(log: string): number | null {
  const at = (re: RegExp) => {
    const line = log.split('\n').find((l) => re.test(l));
    return line ? Date.parse(line.slice(0, 24)) : null;
  };
  const start = at(/debug: remote: connected to/);
  const end = at(/remote copy: \S+ 100% \(/);
  return start !== null && end !== null ? (end - start) / 1000 : null;
}

async function main(): Promise<void> {
  ensureBundle();
  const { env, stop } = await setUpRemoteEnv();
  try {
    const box = makeBox(env, { auth: 'key' });
    const name = backupFileName('bench', day(1), 'img.zst');
    const local = path.join(box.backups, name);
    process.stdout.write(`writing ${sizeMiB} MiB of random data to ${local}\n`);
    writeRandomFile(local, sizeMiB * MiB);
    const sum = sha256(local);

    // scp with the same key, the server's key pinned in a known_hosts of its own.
    const knownHosts = path.join(box.dir, 'known_hosts');
    const pub = readFileSync(path.join(env.base, 'server-a', 'ssh_host_ed25519_key.pub'), 'utf8').split(' ');
    writeFileSync(knownHosts, `[127.0.0.1]:${env.serverA.port} ${pub[0]} ${pub[1]}\n`);
    const scpDest = path.join(env.base, 'dest', `${box.name}-scp`);
    mkdirSync(scpDest, { mode: 0o700 });
    const { uid, gid } = uidOf(KEY_USER);
    spawnSync('chown', [`${uid}:${gid}`, scpDest]);
    const bare = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/root', LANG: 'C' };

    const results: { tool: string; secs: number; transfer: number | null }[] = [];
    for (let round = 1; round <= rounds; round++) {
      // zshield: the CLI as shipped (the bundle), a fresh destination each time.
      rmSync(path.join(box.dest, name), { force: true });
      rmSync(box.logFile, { force: true });
      const z = timed(process.execPath, [BUNDLE, '-c', box.configFile, 'remote', 'copy'], bare);
      if (z.code !== 0) throw new Error(`zshield remote copy failed (${z.code}): ${z.err}`);
      if (sha256(path.join(box.dest, name)) !== sum) throw new Error('zshield: the remote copy differs');
      results.push({
        tool: 'zshield',
        secs: z.secs,
        transfer: transferSecs(readFileSync(box.logFile, 'utf8')),
      });

      rmSync(path.join(scpDest, name), { force: true });
      const s = timed(
        'scp',
        [
          '-q',
          '-i',
          env.clientKey,
          '-P',
          String(env.serverA.port),
          '-o',
          'BatchMode=yes',
          '-o',
          `UserKnownHostsFile=${knownHosts}`,
          '-o',
          'StrictHostKeyChecking=yes',
          local,
          `${KEY_USER}@127.0.0.1:${scpDest}/`,
        ],
        bare,
      );
      if (s.code !== 0) throw new Error(`scp failed (${s.code}): ${s.err}`);
      if (sha256(path.join(scpDest, name)) !== sum) throw new Error('scp: the remote copy differs');
      results.push({ tool: 'scp', secs: s.secs, transfer: null });
    }

    writeSection(results);
    const rate = (secs: number) => sizeMiB / secs;
    for (const r of results) {
      const extra = r.transfer
        ? `, transfer alone ${r.transfer.toFixed(2)} s = ${rate(r.transfer).toFixed(1)} MiB/s`
        : '';
      process.stdout.write(
        `${r.tool.padEnd(8)} ${sizeMiB} MiB in ${r.secs.toFixed(2)} s = ${rate(r.secs).toFixed(1)} MiB/s${extra}\n`,
      );
    }
    const best = (tool: string) => Math.min(...results.filter((r) => r.tool === tool).map((r) => r.secs));
    const bestTransfer = Math.min(...results.filter((r) => r.transfer).map((r) => r.transfer!));
    const z = rate(best('zshield'));
    const s = rate(best('scp'));
    process.stdout.write(
      `\nbest of ${rounds}: zshield ${z.toFixed(1)} MiB/s (verified end to end), scp ${s.toFixed(1)} MiB/s\n` +
        `ratio zshield/scp: ${(z / s).toFixed(2)} (transfer alone: ${(rate(bestTransfer) / s).toFixed(2)})\n`,
    );
  } finally {
    await stop();
  }
}

/** The medians, as the `remote` section (only for the default size and at least 3 rounds). */
function writeSection(results: { tool: string; secs: number; transfer: number | null }[]): void {
  if (sizeMiB !== 1024 || rounds < 3) return;
  const of = (tool: string) => results.filter((r) => r.tool === tool).map((r) => r.secs);
  const transfers = results.flatMap((r) => (r.transfer === null ? [] : [r.transfer]));
  const detail = `${sizeMiB} MiB of random data; ratio = time / scp's (0.8 of scp's speed is 1.25)`;
  writeBenchSection(
    'remote',
    [
      medianRow('remote copy, verified end to end (vs scp)', of('zshield'), of('scp'), { detail }),
      medianRow('remote copy, the transfer alone (vs scp)', transfers, of('scp'), {
        detail: 'from the connection to the last write acknowledged (its log)',
      }),
    ],
    {
      loadBefore: START_LOAD,
      intro:
        "`zshield remote copy` of one backup file to the remote tests' OpenSSH server on 127.0.0.1 against `scp` of the same file, same user, same key, in the same run. zshield's time includes its process start, the server-side SHA-256 of the whole file and the rename; the transfer alone is timed from its log.",
    },
  );
}

main().catch((err) => {
  process.stderr.write(`remote-bench: ${err?.stack ?? err}\n`);
  process.exit(1);
});
