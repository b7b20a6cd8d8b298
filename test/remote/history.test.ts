import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { SEA } from '../bundle.js';
import {
  changeTree,
  historyLog,
  localSnapshots,
  makeHistoryBox,
  randomData,
  resticOnCopy,
  takeFingerprint,
  writeHistoryConfig,
  zh,
} from './history-lib.js';
import { expectError, waitUntil } from './lib.js';
import { freePort } from './sshd.js';

const env = inject('remote');

interface Report {
  target: string;
  ok: boolean;
  uploaded: number;
  sent: number;
  resumed: number;
  newest: string | null;
}

function replicate(box: Parameters<typeof zh>[0], args: string[] = []): Report[] {
  const r = zh(box, ['history', 'replicate', '--json', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Report[];
}

/** Every file under a directory, recursively (names relative to it). */
function files(dir: string): string[] {
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

describe('history: take and replicate to two real OpenSSH servers', () => {
  it('takes, replicates to both (each a working repository with the catalog); a small change sends only new data', () => {
    const box = makeHistoryBox(env, { files: 60, size: 100_000 });
    const first = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree, '--reason', 'daily']));
    const r1 = replicate(box);
    expect(r1.map((r) => [r.target, r.ok, r.newest])).toEqual([
      ['a', true, first],
      ['b', true, first],
    ]);
    for (const dest of [box.destA, box.destB]) {
      const c = resticOnCopy(box, dest);
      expect(c.check.code, c.check.stderr).toBe(0);
      expect(c.snapshots).toEqual([first]);
      expect(files(path.join(dest, 'catalog'))).toEqual(['catalog.head.json', 'catalog.jsonl']);
      // Files on a target are the owner's only.
      expect(statSync(path.join(dest, 'repo', 'config')).mode & 0o777).toBe(0o600);
    }
    // A second run with nothing new sends nothing.
    expect(replicate(box).map((r) => r.uploaded)).toEqual([0, 0]);

    // 1 of 60 files changed: the second backup's new data is that file (and metadata).
    changeTree(box, { f7: randomData(100_000) });
    const second = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    const r2 = replicate(box);
    for (const i of [0, 1]) {
      expect(r2[i]!.newest).toBe(second);
      expect(r2[i]!.sent).toBeGreaterThan(100_000 * 0.9);
      // First run: 6 MB of data; the second sends the changed file and small index/snapshot files.
      expect(r2[i]!.sent / r1[i]!.sent).toBeLessThan(0.1);
    }
    for (const dest of [box.destA, box.destB]) {
      const c = resticOnCopy(box, dest);
      expect(c.check.code, c.check.stderr).toBe(0);
      expect(c.snapshots).toEqual([first, second].sort());
    }
    const status = JSON.parse(zh(box, ['history', 'status', '--json']).stdout);
    expect(status.publicKey).toMatch(/^ed25519:/);
    for (const t of status.targets) {
      expect(t.newest).toBe(second);
      expect(t.bytesBehind).toBe(0);
      expect(t.lastSuccess).not.toBeNull();
      expect(t.lastError).toBeNull();
    }
    const list = zh(box, ['history', 'list']);
    expect(list.stdout).toMatch(new RegExp(`${first} .* daily .* on: a, b`));
    // The password never shows in the log.
    const pw = zh(box, ['history', 'password', '--yes']).stdout.trim();
    expect(historyLog(box).includes(pw)).toBe(false);
    expect(historyLog(box)).toMatch(/--password-file \S+\/run\/\.restic-pw-/);
  });

  it('a replication cut mid-file resumes where it stopped; both targets pass restic check', async () => {
    const box = makeHistoryBox(env, { files: 2, size: 1000, imageMiB: 64 });
    changeTree(box, { big: randomData(12 * 1024 * 1024) });
    const id = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    const child = spawn(
      SEA,
      ['-c', box.configFile, 'history', 'replicate', '--target', 'a', '--bwlimit', '2048'],
      {
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C' },
      },
    );
    const done = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    const partSize = () => {
      const data = path.join(box.destA, 'repo', 'data');
      let n = 0;
      try {
        for (const f of files(data))
          if (f.endsWith('.zshield-part')) n = Math.max(n, statSync(path.join(data, f)).size);
      } catch {
        // not made yet
      }
      return n;
    };
    // Bounds a hang only: on a loaded host the run may take long to reach the upload.
    await waitUntil(() => partSize() >= 3 * 1024 * 1024, 'part of the pack file', 300_000);
    child.kill('SIGKILL');
    await done;
    const cut = partSize();
    expect(cut).toBeGreaterThan(0);
    // With several files in flight the index and the snapshot may have gone up as parts, verified,
    // waiting for the data: neither is named while a data file is not.
    const named = files(path.join(box.destA, 'repo')).filter((f) => !f.endsWith('.zshield-part'));
    expect(named.some((f) => f.startsWith('snapshots/') || f.startsWith('index/'))).toBe(false);

    const r = replicate(box);
    // The cut pack, and any part that was whole and waiting for its turn to be named.
    expect(r[0]!.resumed).toBeGreaterThanOrEqual(1);
    // Target a got only the rest of the cut file; b got everything.
    expect(r[0]!.sent).toBeLessThan(r[1]!.sent - cut + 64 * 1024);
    expect(historyLog(box)).toMatch(/resuming [0-9a-f]{64} at/);
    for (const dest of [box.destA, box.destB]) {
      const c = resticOnCopy(box, dest);
      expect(c.check.code, c.check.stderr).toBe(0);
      expect(c.snapshots).toEqual([id]);
    }
  });

  it('a target that is down does not stop the other; status shows it; the next run catches up', async () => {
    const box = makeHistoryBox(env);
    const id = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    const port = box.config.history.targets[1]!['port'];
    box.config.history.targets[1]!['port'] = await freePort();
    writeHistoryConfig(box);
    const r = zh(box, ['history', 'replicate']);
    expectError(r, ExitCode.remoteFailed, /1 of 2 target\(s\) not replicated: b: .*unreachable/);
    expect(r.stdout).toMatch(/a: \d+ file\(s\) sent/);
    expect(resticOnCopy(box, box.destA).snapshots).toEqual([id]);
    const s = JSON.parse(zh(box, ['history', 'status', '--json']).stdout);
    expect(s.targets[0].newest).toBe(id);
    expect(s.targets[1].newest).toBeNull();
    expect(s.targets[1].bytesBehind).toBe(0);
    expect(s.targets[1].lastError).toMatch(/unreachable/);
    expect(zh(box, ['history', 'status']).stdout).toMatch(
      /target b .*\n.*newest there: none\n.*\n\s+last error: .*unreachable/,
    );

    box.config.history.targets[1]!['port'] = port;
    writeHistoryConfig(box);
    const again = replicate(box);
    expect(again.map((x) => x.uploaded > 0)).toEqual([false, true]);
    expect(resticOnCopy(box, box.destB).snapshots).toEqual([id]);
  });

  it('retention forgets by policy but keeps what a target lacks; every target stays consistent', () => {
    const box = makeHistoryBox(env, { files: 10, size: 30_000 });
    box.config.history['keep'] = { daily: 1, weekly: 0, monthly: 0 };
    writeHistoryConfig(box);
    const s1 = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    replicate(box);
    changeTree(box, { n2: randomData(200_000) });
    const s2 = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    changeTree(box, { n3: randomData(200_000) });
    const s3 = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    replicate(box, ['--target', 'a']);
    // s2 never reached b: kept although the policy (one a day) would drop it.
    const p = zh(box, ['history', 'prune', '--no-replicate']);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(new RegExp(`kept ${s2}: not yet on b`));
    expect(p.stdout).toMatch(new RegExp(`forget ${s1}`));
    expect(localSnapshots(box)).toEqual([s2, s3].sort());
    // The targets follow: new index first, then the forgotten snapshot, then old index and data.
    replicate(box);
    for (const dest of [box.destA, box.destB]) {
      const c = resticOnCopy(box, dest);
      expect(c.check.code, c.check.stderr).toBe(0);
      expect(c.snapshots).toEqual([s2, s3].sort());
      expect(
        files(path.join(dest, 'repo'))
          .filter((f) => !f.startsWith('keys/'))
          .sort(),
      ).toEqual(
        files(path.join(box.dir, 'history', 'repo'))
          .filter((f) => !f.startsWith('keys/') && !f.startsWith('locks/'))
          .sort(),
      );
    }
    // Now on both: the next prune forgets s2.
    const p2 = zh(box, ['history', 'prune']);
    expect(p2.code, p2.stderr).toBe(0);
    expect(localSnapshots(box)).toEqual([s3]);
    for (const dest of [box.destA, box.destB]) {
      const c = resticOnCopy(box, dest);
      expect(c.check.code, c.check.stderr).toBe(0);
      expect(c.snapshots).toEqual([s3]);
    }
    expect(zh(box, ['history', 'list']).stdout).toMatch(new RegExp(`${s1} .* forgotten`));
  });

  it('a wrong repository password is a config error (exit 3), nothing written', () => {
    const box = makeHistoryBox(env);
    takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    const other = makeHistoryBox(env);
    // The other box's password, encrypted with the other box's key: point this box at both.
    box.config.history['password'] = other.config.history['password'];
    box.config.history['keyFile'] = other.config.history['keyFile'];
    writeHistoryConfig(box);
    const catalog = readFileSync(path.join(box.dir, 'history', 'catalog.jsonl'), 'utf8');
    const r = zh(box, ['history', 'take', '--device', box.tree]);
    expectError(r, ExitCode.config, /history\.password: the repository password does not open .*\/repo/);
    expect(readFileSync(path.join(box.dir, 'history', 'catalog.jsonl'), 'utf8')).toBe(catalog);
    expect(zh(box, ['history', 'replicate']).code).toBe(ExitCode.config);
  });

  it('a corrupted data file on a target is found by verify (exit 10) and replaced by replicate --verify-all', () => {
    const box = makeHistoryBox(env, { files: 20, size: 50_000 });
    takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    replicate(box);
    for (const dest of [box.destA, box.destB]) {
      const data = files(path.join(dest, 'repo')).find((f) => f.startsWith('data/'))!;
      const file = path.join(dest, 'repo', data);
      const buf = readFileSync(file);
      buf[Math.floor(buf.length / 2)]! ^= 0xff;
      writeFileSync(file, buf);
      const v = zh(box, ['history', 'verify', '--all']);
      expectError(
        v,
        ExitCode.verifyFailed,
        new RegExp(`damaged files on ${dest === box.destA ? 'a' : 'b'} \\(1: ${data.replace(/\//g, '\\/')}`),
      );
      const fixed = zh(box, ['history', 'replicate', '--verify-all']);
      expect(fixed.code, fixed.stderr).toBe(0);
      expect(fixed.stdout).toMatch(/1 damaged and sent again/);
      expect(zh(box, ['history', 'verify', '--all']).code).toBe(0);
    }
    expect(resticOnCopy(box, box.destB).check.code).toBe(0);
  });
});
