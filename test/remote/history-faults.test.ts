import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { encryptPassword, readKeyFile } from '../../src/system/secrets.js';
import {
  type HistoryBox,
  localSnapshots,
  makeHistoryBox,
  passwordOf,
  takeFingerprint,
  writeHistoryConfig,
  zh,
} from './history-lib.js';
import { expectError, waitUntil } from './lib.js';
import { KEY_USER, PASSWORD_USER, uidOf } from './sshd.js';

/**
 * The history's promises under faults (issue 21), each through the built bundle against the real
 * sshd: target setup, damage a listing shows, catalogs tampered or rolled back on the targets,
 * locks left by a cut take, a catalog broken before a take, status that fails, init's password,
 * short IDs, dry runs that change nothing.
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

/** Every file under a directory with its content, to compare before and after. */
function contents(dir: string): Record<string, string> {
  return Object.fromEntries(
    filesUnder(dir).map((f) => [f, readFileSync(path.join(dir, f)).toString('base64')]),
  );
}

function ok(r: ReturnType<typeof zh>): ReturnType<typeof zh> {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

function boxWithBackup(): { box: HistoryBox; id: string } {
  const box = makeHistoryBox(env, { files: 12, size: 30_000 });
  const id = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
  return { box, id };
}

const historyDir = (box: HistoryBox) => path.join(box.dir, 'history');

describe('history target add | trust | remove | list', () => {
  it('pins the confirmed host key, checks login and write access, writes the config; dry run changes nothing', () => {
    const box = makeHistoryBox(env, { files: 2, size: 1000 });
    box.config.history.targets = [];
    writeHistoryConfig(box);
    const dest = path.join(env.base, 'history-dest', `added-${process.pid}-${Date.now()}`);
    mkdirSync(dest, { recursive: true, mode: 0o700 });
    const { uid, gid } = uidOf(KEY_USER);
    spawnSync('chown', [`${uid}:${gid}`, dest]);
    const where = `${KEY_USER}@127.0.0.1:${dest}/repo-here`;
    const add = [
      'history',
      'target',
      'add',
      'site-a',
      where,
      '--port',
      String(env.serverA.port),
      '--key',
      env.clientKey,
    ];
    // Not on a terminal, no --fingerprint: nothing is trusted blindly.
    expectError(zh(box, add), ExitCode.usage, /not on a terminal.*--fingerprint/);
    // A fingerprint that is not the server's: refused.
    expectError(
      zh(box, [...add, '--fingerprint', env.serverB.fingerprint]),
      ExitCode.refused,
      /not the expected/,
    );
    const before = readFileSync(box.configFile, 'utf8');
    const dry = ok(zh(box, [...add, '--fingerprint', env.serverA.fingerprint, '--dry-run']));
    expect(dry.stdout).toMatch(/Add history target site-a/);
    expect(dry.stdout).toContain(env.serverA.fingerprint);
    expect(readFileSync(box.configFile, 'utf8')).toBe(before);
    expect(readdirSync(dest)).toEqual([]);
    const r = ok(zh(box, [...add, '--fingerprint', env.serverA.fingerprint]));
    expect(r.stdout).toMatch(/history target site-a added/);
    const cfg = JSON.parse(readFileSync(box.configFile, 'utf8'));
    expect(cfg.history.targets).toEqual([
      {
        name: 'site-a',
        server: '127.0.0.1',
        port: env.serverA.port,
        user: KEY_USER,
        hostKey: env.serverA.fingerprint,
        directory: `${dest}/repo-here`,
        privateKey: env.clientKey,
      },
    ]);
    expect(statSync(box.configFile).mode & 0o777).toBe(0o600);
    // The write check left nothing behind.
    expect(readdirSync(path.join(dest, 'repo-here'))).toEqual([]);
    // Adding the same name again is refused.
    expectError(
      zh(box, [...add, '--fingerprint', env.serverA.fingerprint]),
      ExitCode.refused,
      /exists already/,
    );
    // It works: a replication fills it.
    takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    ok(zh(box, ['history', 'replicate']));
    expect(filesUnder(path.join(dest, 'repo-here'))).toContain('repo/config');
    // A password target: the password read from stdin, stored encrypted, never in the config as typed.
    const pwDest = `/tmp/zshield-hist-pw-${process.pid}`;
    const pwAdd = zh(
      box,
      [
        'history',
        'target',
        'add',
        'site-b',
        `${PASSWORD_USER}@127.0.0.1:${pwDest}`,
        '--port',
        String(env.serverB.port),
        '--password-stdin',
        '--fingerprint',
        env.serverB.fingerprint,
      ],
      { input: `${env.password}\n` },
    );
    ok(pwAdd);
    const text = readFileSync(box.configFile, 'utf8');
    expect(text.includes(env.password)).toBe(false);
    expect(JSON.parse(text).history.targets[1].password).toMatch(/^v1:/);
    const list = ok(zh(box, ['history', 'target', 'list']));
    expect(list.stdout).toMatch(/site-a .* key +SHA256:/);
    expect(list.stdout).toMatch(/site-b .* password +SHA256:/);
    spawnSync('rm', ['-rf', pwDest]);
    // trust: a changed key (here: the pinned key is made wrong) gets the history's own hint, and trust pins it.
    const wrong = JSON.parse(readFileSync(box.configFile, 'utf8'));
    wrong.history.targets[0].hostKey = env.serverB.fingerprint;
    writeFileSync(box.configFile, `${JSON.stringify(wrong, null, 2)}\n`, { mode: 0o600 });
    const changed = zh(box, ['history', 'replicate', '--target', 'site-a']);
    expectError(changed, ExitCode.remoteFailed, /host key of history target site-a .* has CHANGED/);
    expect(changed.stderr).toMatch(/zshield history target trust site-a --fingerprint SHA256:/);
    expect(changed.stderr).not.toMatch(/remote trust/);
    ok(zh(box, ['history', 'target', 'trust', 'site-a', '--fingerprint', env.serverA.fingerprint]));
    ok(zh(box, ['history', 'replicate', '--target', 'site-a']));
    // remove: the config forgets it; its copy stays.
    ok(zh(box, ['history', 'target', 'remove', 'site-b']));
    expect(
      JSON.parse(readFileSync(box.configFile, 'utf8')).history.targets.map((t: { name: string }) => t.name),
    ).toEqual(['site-a']);
    expectError(
      zh(box, ['history', 'target', 'remove', 'nope']),
      ExitCode.notFound,
      /no history target named nope/,
    );
    rmSync(dest, { recursive: true, force: true });
  });
});

describe('history: damage a listing shows, dry runs', () => {
  it('a file deleted or truncated on a target is damage (exit 10, named, behind); replicate sends it again', () => {
    const { box } = boxWithBackup();
    // Dry run: the targets stay empty, the state and the catalog untouched.
    const hist = contents(historyDir(box));
    const dry = ok(zh(box, ['history', 'replicate', '--dry-run']));
    expect(dry.stdout).toMatch(/a: would send \d+ file\(s\)/);
    expect(readdirSync(box.destA)).toEqual([]);
    expect(contents(historyDir(box))).toEqual(hist);
    ok(zh(box, ['history', 'replicate']));
    const data = filesUnder(path.join(box.destA, 'repo')).filter((f) => f.startsWith('data/'));
    rmSync(path.join(box.destA, 'repo', data[0]!));
    const cut = path.join(box.destB, 'repo', data[0]!);
    truncateSync(cut, Math.floor(statSync(cut).size / 2));
    // verify --dry-run checks, and writes no state.
    const state = readFileSync(path.join(historyDir(box), 'targets.json'), 'utf8');
    expectError(
      zh(box, ['history', 'verify', '--all', '--dry-run']),
      ExitCode.verifyFailed,
      /damaged files on a/,
    );
    expect(readFileSync(path.join(historyDir(box), 'targets.json'), 'utf8')).toBe(state);
    const v = zh(box, ['history', 'verify', '--all']);
    expectError(v, ExitCode.verifyFailed, /damaged files on a \(1: .*\), b \(1: /);
    expect(v.stdout).toMatch(/missing, though the last successful replication sent it/);
    expect(v.stdout).toMatch(/bytes there, \d+ here/);
    const s = JSON.parse(zh(box, ['history', 'status', '--json']).stdout);
    expect(s.targets[0].bytesBehind).toBeGreaterThan(0);
    expect(s.targets[1].bytesBehind).toBeGreaterThan(0);
    const fixed = ok(zh(box, ['history', 'replicate']));
    expect(fixed.stdout).toMatch(/a: .*1 damaged and sent again/);
    expect(readFileSync(box.logFile, 'utf8')).toMatch(/is damaged \(missing, though/);
    ok(zh(box, ['history', 'verify', '--all']));
  });
});

describe('history catalog on the targets', () => {
  it('tampered on every target: a restore on a blank box says so (exit 10, each target and its fault)', () => {
    const { box, id } = boxWithBackup();
    ok(zh(box, ['history', 'replicate']));
    const lines = readFileSync(path.join(box.destA, 'catalog', 'catalog.jsonl'), 'utf8');
    writeFileSync(path.join(box.destA, 'catalog', 'catalog.jsonl'), lines.replace('"manual"', '"evil"'));
    writeFileSync(path.join(box.destB, 'catalog', 'catalog.jsonl'), lines.slice(0, 40));
    // A blank box: the history folder is gone; the config (keys, public key, targets) is kept.
    rmSync(historyDir(box), { recursive: true, force: true });
    const out = path.join(box.dir, 'restored');
    const r = zh(box, ['history', 'restore', id, out]);
    expectError(r, ExitCode.verifyFailed, /catalog fails verification on every target that holds/);
    expect(r.stderr).toMatch(/a: catalog entry 1: .*signature/);
    expect(r.stderr).toMatch(/b: /);
    expect(r.stderr).not.toMatch(/neither the local repository/);
  });

  it('heads disagree: the newest valid one is used; an older copy is a rollback for catalog verify', () => {
    const { box, id } = boxWithBackup();
    ok(zh(box, ['history', 'replicate']));
    const old = path.join(box.dir, 'old-catalog');
    mkdirSync(old);
    for (const f of ['catalog.jsonl', 'catalog.head.json'])
      writeFileSync(path.join(old, f), readFileSync(path.join(box.destA, 'catalog', f)));
    // A second backup: the catalog grows on both targets.
    const id2 = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree, '--reason', 'second']));
    ok(zh(box, ['history', 'replicate']));
    expectError(
      zh(box, ['catalog', 'verify', '--file-dir', old]),
      ExitCode.verifyFailed,
      /rolled back: its signed head has \d+ entries, this box has seen \d+/,
    );
    // Target a's catalog put back to the older head: a blank box uses b's (newer) and names a's.
    for (const f of ['catalog.jsonl', 'catalog.head.json'])
      writeFileSync(path.join(box.destA, 'catalog', f), readFileSync(path.join(old, f)));
    rmSync(historyDir(box), { recursive: true, force: true });
    const r = ok(zh(box, ['history', 'restore', id2.slice(0, 8), path.join(box.dir, 'r2')]));
    expect(r.stdout).toMatch(new RegExp(`${id2} restored .* from b`));
    expect(readFileSync(box.logFile, 'utf8')).toMatch(/the catalog on a is older \(\d+ entries\) than b's/);
    expect(id).not.toBe(id2);
  });
});

describe('history: a take cut off, a broken catalog, status, init, short IDs', () => {
  it('a restic lock left by a killed run is removed before the next job; prune then works', async () => {
    const { box } = boxWithBackup();
    const pw = path.join(box.dir, 'pw');
    writeFileSync(pw, passwordOf(box), { mode: 0o600 });
    // restic holding the repository's exclusive lock (as prune does), then killed: its lock stays.
    const big = path.join(box.dir, 'big');
    mkdirSync(big);
    for (let i = 0; i < 30; i++) writeFileSync(path.join(big, `f${i}`), Buffer.alloc(1 << 20, i));
    const child = spawn(
      'restic',
      ['-r', path.join(historyDir(box), 'repo'), '--password-file', pw, 'backup', big],
      {
        env: { PATH: '/usr/bin:/bin', HOME: '/root' },
      },
    );
    const locks = path.join(historyDir(box), 'repo', 'locks');
    // A lock file under its ID: restic writes it as ID-tmp-RANDOM first and renames it.
    const isLock = (f: string): boolean => /^[0-9a-f]{64}$/.test(f);
    await waitUntil(() => readdirSync(locks).some(isLock), 'restic to take its lock');
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    rmSync(pw);
    expect(readdirSync(locks).filter(isLock)).toHaveLength(1);
    const p = ok(zh(box, ['history', 'prune', '--no-replicate']));
    expect(p.stdout).toMatch(/nothing to forget/);
    expect(readFileSync(box.logFile, 'utf8')).toMatch(/removed 1 stale restic lock/);
  });

  it('take checks the catalog first (exit 10, no snapshot made); status fails on it; replicate sends no uncataloged snapshot', () => {
    const { box, id } = boxWithBackup();
    const file = path.join(historyDir(box), 'catalog.jsonl');
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, good.replace('"manual"', '"other"'));
    expectError(zh(box, ['history', 'take', '--device', box.tree]), ExitCode.verifyFailed, /catalog entry 1/);
    expect(localSnapshots(box)).toEqual([id]);
    const st = zh(box, ['history', 'status']);
    expectError(st, ExitCode.verifyFailed, /the catalog does not verify/);
    expect(st.stdout).toMatch(/catalog: NOT VERIFIED/);
    writeFileSync(file, good);
    // A snapshot restic made that the catalog never listed (a take cut between the two).
    const pw = path.join(box.dir, 'pw');
    writeFileSync(pw, passwordOf(box), { mode: 0o600 });
    spawnSync('restic', ['-r', path.join(historyDir(box), 'repo'), '--password-file', pw, 'backup', pw], {
      env: { PATH: '/usr/bin:/bin', HOME: '/root' },
    });
    rmSync(pw);
    expect(localSnapshots(box)).toHaveLength(2);
    ok(zh(box, ['history', 'replicate']));
    expect(readdirSync(path.join(box.destA, 'repo', 'snapshots'))).toEqual([id]);
    expect(readFileSync(box.logFile, 'utf8')).toMatch(/is not in the catalog: not replicated/);
    // Status: fine now; a target lacking a backup older than history.maxLagHours fails it (exit 11).
    ok(zh(box, ['history', 'status']));
    box.config = JSON.parse(readFileSync(box.configFile, 'utf8'));
    box.config.history['maxLagHours'] = 0.0001;
    writeHistoryConfig(box);
    const id2 = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree, '--reason', 'later']));
    const late = zh(box, ['history', 'status']);
    expectError(late, ExitCode.remoteFailed, /a is [\d.]+ h behind \(lacks 1 backup/);
    // Short IDs: restic's 8 hex digits work where a fingerprint is asked for.
    const r = ok(zh(box, ['history', 'restore', id2.slice(0, 8), path.join(box.dir, 'short')]));
    expect(r.stdout).toContain(`${id2} restored`);
    expectError(
      zh(box, ['history', 'restore', 'ffffffff', path.join(box.dir, 'x')]),
      ExitCode.notFound,
      /no fingerprint begins with ffffffff/,
    );
  });

  it('init with a given password proves it opens the repository before storing it', () => {
    const box = makeHistoryBox(env, { files: 1, size: 100 });
    const before = readFileSync(box.configFile, 'utf8');
    const wrong = zh(box, ['history', 'init', '--password-stdin'], { input: 'not-the-password\n' });
    expectError(wrong, ExitCode.config, /the repository password does not open/);
    expect(readFileSync(box.configFile, 'utf8')).toBe(before);
    // Its hint, followed with the right password: accepted (and stored again).
    expect(wrong.stderr).toMatch(/zshield history init --password-stdin/);
    ok(zh(box, ['history', 'init', '--password-stdin'], { input: `${passwordOf(box)}\n` }));
    ok(zh(box, ['history', 'take', '--device', box.tree]));
  });

  it('replicate: a wrong repository password is a config error before anything moves, after a run that proved the right one too', () => {
    const box = makeHistoryBox(env, { files: 1, size: 100 });
    ok(zh(box, ['history', 'take', '--device', box.tree]));
    ok(zh(box, ['history', 'replicate', '--target', 'a']));
    // The right password is remembered as proven (password-proof.ts): a salted hash, 0600.
    const proof = path.join(String(box.config.history['dir']), 'password-proof');
    expect(statSync(proof).mode & 0o777).toBe(0o600);
    expect(readFileSync(proof, 'utf8')).not.toContain(passwordOf(box));
    ok(zh(box, ['history', 'take', '--device', box.tree, '--reason', 'second']));
    const right = box.config.history['password'];
    const keyFile = String(box.config.history['keyFile']);
    box.config.history['password'] = encryptPassword('not-the-password', readKeyFile(keyFile));
    writeHistoryConfig(box);
    const before = readdirSync(path.join(box.destA, 'repo', 'snapshots'));
    const wrong = zh(box, ['history', 'replicate', '--target', 'a']);
    expect(wrong.code, wrong.stderr).toBe(ExitCode.config);
    expect(readdirSync(path.join(box.destA, 'repo', 'snapshots'))).toEqual(before);
    box.config.history['password'] = right;
    writeHistoryConfig(box);
    ok(zh(box, ['history', 'replicate', '--target', 'a']));
    expect(readdirSync(path.join(box.destA, 'repo', 'snapshots'))).toHaveLength(before.length + 1);
  });
});
