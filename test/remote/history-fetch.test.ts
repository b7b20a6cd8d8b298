import { chmodSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import {
  type HistoryBox,
  historyLog,
  makeHistoryBox,
  passwordOf,
  takeFingerprint,
  writeHistoryConfig,
  zh,
} from './history-lib.js';
import { expectError } from './lib.js';
import { KEY_USER } from './sshd.js';

/**
 * What a restore fetches from a target, and when it stops (issue 21), through the built bundle
 * against the real sshd: `recover offbox` proves the repository password on config and keys before
 * any other file is read; a restore from a target that lacks a data file its index names is
 * refused before anything is fetched or written (exit 10, the file named, a hint that works);
 * `--from` a target that is down is hinted at the history target, not at remote.*; `history
 * verify` says "intact" only of what it checked and counts what is not yet sent.
 */

const env = inject('remote');

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk('');
  return out.sort();
}

function ok(r: ReturnType<typeof zh>): ReturnType<typeof zh> {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

const hintOf = (r: ReturnType<typeof zh>) =>
  r.stderr
    .split('\n')
    .find((l) => l.startsWith('  hint: '))
    ?.slice('  hint: '.length) ?? '';

async function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

describe('history: what a restore fetches from a target, and when it stops', () => {
  let box: HistoryBox;
  let id: string;
  const repoOf = (dest: string) => path.join(dest, 'repo');
  const dataFiles = (dest: string) => filesUnder(repoOf(dest)).filter((f) => f.startsWith('data/'));

  beforeAll(() => {
    box = makeHistoryBox(env, { files: 12, size: 30_000 });
    id = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    ok(zh(box, ['history', 'replicate']));
  });

  it('history verify says "intact" only of the files it checked, and counts what is not yet sent', () => {
    takeFingerprint(zh(box, ['history', 'take', '--device', box.tree, '--reason', 'later']));
    const v = ok(zh(box, ['history', 'verify', '--all']));
    expect(v.stdout).not.toMatch(/every file checked is intact/);
    expect(v.stdout).toMatch(
      /history: the \d+ file\(s\) checked on 2 target\(s\) are intact; not yet sent: a lacks \d+ file\(s\) \([\d.]+ \w+\), b lacks \d+ file\(s\) .*; zshield history replicate sends them/,
    );
    // The summary's hint followed: nothing left to send.
    ok(zh(box, ['history', 'replicate']));
    const after = ok(zh(box, ['history', 'verify', '--all']));
    expect(after.stdout).toMatch(
      /history: every file checked is intact \(\d+ file\(s\) on 2 target\(s\)\); nothing left to send/,
    );
  });

  it('--from a target missing a data file: exit 10 naming it, before a file is fetched or written; its hint works', () => {
    const gone = dataFiles(box.destB)[0]!;
    const kept = path.join(box.dir, 'kept-pack');
    renameSync(path.join(repoOf(box.destB), gone), kept);
    const out = path.join(box.dir, 'restored-b');
    const r = zh(box, ['history', 'restore', id, out, '--from', 'b']);
    expectError(
      r,
      ExitCode.verifyFailed,
      /b \(.*\) lacks 1 file\(s\) of its repository: data\/[0-9a-f]{2}\/[0-9a-f]{64} \(named by its index\)/,
    );
    expect(r.stderr).toContain(gone);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(path.join(box.dir, 'history', 'work'))).toEqual([]);
    // No data file was fetched: the log has the password proven, no fetch progress past the index.
    expect(historyLog(box)).toMatch(
      /b \(.*\): the password opens its repository \(config and keys fetched; no data yet\)/,
    );
    const hint = hintOf(r);
    expect(hint).toMatch(
      /nothing was written; restore from another target \(zshield history restore [0-9a-f]{64} DIR --from OTHER\), or run zshield history replicate/,
    );
    // Followed: another target ...
    ok(zh(box, ['history', 'restore', id, out, '--from', 'a']));
    expect(readdirSync(out).length).toBeGreaterThan(0);
    // ... or replicate from this box, which sends the missing file again; then b serves it.
    const rep = ok(zh(box, ['history', 'replicate']));
    expect(rep.stdout).toMatch(/b: 1 file\(s\) sent/);
    ok(zh(box, ['history', 'restore', id, path.join(box.dir, 'restored-b2'), '--from', 'b']));
    rmSync(kept);
  });

  it('a blank box: the target missing a file is passed over for one that has it; when every holder lacks one, exit 10', () => {
    const repo = path.join(box.dir, 'history', 'repo');
    renameSync(repo, `${repo}.away`);
    const gone = dataFiles(box.destA)[0]!;
    const keptA = path.join(box.dir, 'kept-a');
    const keptB = path.join(box.dir, 'kept-b');
    try {
      renameSync(path.join(repoOf(box.destA), gone), keptA);
      const r = ok(zh(box, ['history', 'restore', id, path.join(box.dir, 'blank-1')]));
      expect(r.stdout).toMatch(/restored into .* from b/);
      expect(historyLog(box)).toMatch(
        /warn: history: a \(.*\): a \(.*\) lacks 1 file\(s\) of its repository/,
      );
      expectError(
        zh(box, ['history', 'restore', id, path.join(box.dir, 'blank-2'), '--from', 'a']),
        ExitCode.verifyFailed,
        /lacks 1 file\(s\) of its repository/,
      );
      renameSync(path.join(repoOf(box.destB), gone), keptB);
      const both = zh(box, ['history', 'restore', id, path.join(box.dir, 'blank-3')]);
      expectError(
        both,
        ExitCode.verifyFailed,
        new RegExp(`fingerprint ${id}: every target that holds it is damaged: a: .*; b: `),
      );
      expect(both.stderr).not.toMatch(/neither the local repository/);
      expect(existsSync(path.join(box.dir, 'blank-2'))).toBe(false);
      expect(existsSync(path.join(box.dir, 'blank-3'))).toBe(false);
    } finally {
      renameSync(`${repo}.away`, repo);
      if (existsSync(keptA)) renameSync(keptA, path.join(repoOf(box.destA), gone));
      if (existsSync(keptB)) renameSync(keptB, path.join(repoOf(box.destB), gone));
    }
  });

  it('--from a target that is down: exit 11, hinted at that history target (not remote.server); the hint works', async () => {
    const port = box.config.history.targets[1]!['port'];
    box.config.history.targets[1]!['port'] = await closedPort();
    writeHistoryConfig(box);
    try {
      const r = zh(box, ['history', 'restore', id, path.join(box.dir, 'down'), '--from', 'b']);
      expectError(r, ExitCode.remoteFailed, /unreachable/);
      const hint = hintOf(r);
      expect(hint).toBe(
        'check the server and port of history target b and that the server is up: zshield history target list shows them',
      );
      expect(r.stderr).not.toMatch(/remote\.server/);
      const list = ok(zh(box, ['history', 'target', 'list']));
      expect(list.stdout).toMatch(
        new RegExp(`^b +${KEY_USER}@127\\.0\\.0\\.1:${box.config.history.targets[1]!['port']}:`, 'm'),
      );
    } finally {
      box.config.history.targets[1]!['port'] = port;
      writeHistoryConfig(box);
    }
  });

  it('recover offbox: a recovery file others can read is refused; a wrong password stops after config and keys', () => {
    const file = path.join(box.dir, 'recovery.json');
    const recovery = (repositoryPassword: string) =>
      JSON.stringify({
        target: {
          server: '127.0.0.1',
          port: env.serverA.port,
          user: KEY_USER,
          hostKey: env.serverA.fingerprint,
          directory: box.destA,
          privateKey: readFileSync(env.clientKey, 'utf8'),
        },
        repositoryPassword,
        publicKey: box.config.history['publicKey'],
        fingerprint: id,
      });
    writeFileSync(file, recovery('not-the-password'));
    chmodSync(file, 0o644);
    // --dry-run throughout: whatever happens, no disk of this machine is touched.
    const offbox = () => zh(box, ['--dry-run', 'recover', 'offbox', '--recovery-file', file]);
    const open = offbox();
    expectError(
      open,
      ExitCode.refused,
      new RegExp(`recovery file ${file} is accessible by group or others \\(mode 0644\\)`),
    );
    expect(hintOf(open)).toMatch(new RegExp(`^chmod 600 ${file} `));
    chmodSync(file, 0o600);
    // Every file of the repository but config and keys made unreadable to the login user: reading
    // one (an index, a snapshot, a data file) would fail the run with a permission error instead.
    const repo = repoOf(box.destA);
    const locked = filesUnder(repo).filter((f) => f !== 'config' && !f.startsWith('keys/'));
    expect(locked.some((f) => f.startsWith('data/'))).toBe(true);
    for (const f of locked) chmodSync(path.join(repo, f), 0);
    try {
      const wrong = offbox();
      expectError(
        wrong,
        ExitCode.config,
        new RegExp(
          `config: recovery file ${file}: repositoryPassword: the password does not open the repository on 127\\.0\\.0\\.1:`,
        ),
      );
      expect(hintOf(wrong)).toBe(
        'set repositoryPassword to what zshield history password prints on the box that made the backup; only its keys were fetched, nothing was written',
      );
      expect(wrong.stdout + wrong.stderr + historyLog(box)).not.toContain('not-the-password');
      expect(existsSync(path.join(box.dir, 'run', 'offbox'))).toBe(false);
      // The hint followed: the password `history password` prints gets past the keys, to the
      // index and snapshots (here unreadable, and fetched side by side: so it is one of them, not
      // the password, that stops it now; no data file is asked for before both are here).
      writeFileSync(file, recovery(passwordOf(box)));
      const right = offbox();
      expect(right.code, right.stderr).toBe(ExitCode.remoteFailed);
      expect(right.stderr).toMatch(/permission denied: open \S+\/repo\/(index|snapshots)\//);
      expect(hintOf(right)).toMatch(/must be able to read and write everything under /);
      expect(historyLog(box)).toMatch(/offbox \(.*\): the password opens its repository/);
    } finally {
      for (const f of locked) chmodSync(path.join(repo, f), 0o600);
    }
  });
});

describe('history retention with a target that stays down', () => {
  it('names the target, when it last took a replication and its last error; keeps what it lacks, forgets the rest', async () => {
    const box = makeHistoryBox(env, { files: 4, size: 20_000 });
    box.config.history['keep'] = { daily: 1, weekly: 0, monthly: 0 };
    writeHistoryConfig(box);
    const s1 = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    ok(zh(box, ['history', 'replicate']));
    // b goes down: the daemon's takes replicate to a only, b's error is recorded each time.
    const port = box.config.history.targets[1]!['port'];
    box.config.history.targets[1]!['port'] = await closedPort();
    writeHistoryConfig(box);
    const s2 = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    expect(zh(box, ['history', 'replicate']).code).toBe(ExitCode.remoteFailed);
    const s3 = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    const p = zh(box, ['history', 'prune']);
    // The replication after it fails on b (exit 11), but the policy was applied to the rest.
    expect(p.code, p.stderr).toBe(ExitCode.remoteFailed);
    expect(p.stdout).toMatch(new RegExp(`forget ${s1}`));
    expect(p.stdout).toMatch(new RegExp(`kept ${s2}: not yet on b`));
    expect(historyLog(box)).toMatch(
      /warn: history: retention is held back by target\(s\) b \(last replicated \S+, [\d.]+ h ago; last error: .*unreachable.*\): 1 snapshot\(s\) past history\.keep are kept/,
    );
    box.config.history.targets[1]!['port'] = port;
    writeHistoryConfig(box);
    ok(zh(box, ['history', 'replicate']));
    ok(zh(box, ['history', 'prune']));
    expect(zh(box, ['history', 'list']).stdout).toMatch(new RegExp(`${s2} .* forgotten`));
    expect(s3).not.toBe(s2);
  });
});
