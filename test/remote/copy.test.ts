import { chownSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import {
  day,
  dirState,
  expectNoSecrets,
  logText,
  ls,
  makeBackup,
  makeBox,
  sha256,
  waitUntil,
  writeConfig,
  zshield,
  zshieldAsync,
} from './lib.js';
import { ExitCode } from '../../src/errors.js';
import { KEY_USER, PASSWORD_USER, sessionPids, uidOf } from './sshd.js';

const env = inject('remote');

const IMAGE = { 'img.zst': 300_000, 'manifest.json': 2_000, sha256: 100 };

describe('remote copy against a real OpenSSH server', () => {
  it('copies with a password, verified, and a second run copies nothing', () => {
    const box = makeBox(env);
    const img = makeBackup(box.backups, 'appliance', day(1), IMAGE);
    const log = makeBackup(box.backups, 'log', day(1), { log: 5_000 });
    const first = zshield(box, ['remote', 'copy']);
    expect(first.code, first.stderr).toBe(0);
    expect(ls(box.dest)).toEqual([...img, ...log].sort());
    for (const n of [...img, ...log])
      expect(sha256(path.join(box.dest, n))).toBe(sha256(path.join(box.backups, n)));
    expect(first.stdout).toMatch(/copied 4 file\(s\)/);
    // Files on the remote are the owner's only: they are a copy of the system.
    expect(statSync(path.join(box.dest, img[0]!)).mode & 0o777).toBe(0o600);
    expect(logText(box)).toMatch(/copied and verified .*by openssl/);

    const before = dirState(box.dest);
    const second = zshield(box, ['remote', 'copy']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/nothing to copy: the remote has all 4 backup file\(s\)/);
    expect(second.stdout).toMatch(/^No changes\.$/m);
    expect(dirState(box.dest)).toEqual(before);
    expectNoSecrets(box, env, [first, second]);
  });

  it('the single executable (ssh2 inside it, its native addons left out) copies too', () => {
    const box = makeBox(env);
    const log = makeBackup(box.backups, 'log', day(4), { log: 50_000 });
    const r = zshield(box, ['remote', 'copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(ls(box.dest)).toEqual(log);
    expect(sha256(path.join(box.dest, log[0]!))).toBe(sha256(path.join(box.backups, log[0]!)));
    expectNoSecrets(box, env, [r]);
  });

  it('copies with a private key', () => {
    const box = makeBox(env, { auth: 'key' });
    const img = makeBackup(box.backups, 'appliance', day(2), IMAGE);
    const r = zshield(box, ['remote', 'copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(ls(box.dest)).toEqual(img.sort());
    for (const n of img) expect(sha256(path.join(box.dest, n))).toBe(sha256(path.join(box.backups, n)));
    expectNoSecrets(box, env, [r]);
  });

  it('an SFTP-only account (no shell for a checksum command) is verified by reading the file back', () => {
    const box = makeBox(env, {
      auth: 'key',
      remote: { port: env.serverB.port, hostKey: env.serverB.fingerprint },
    });
    const img = makeBackup(box.backups, 'appliance', day(2), { 'img.zst': 700_000 });
    const r = zshield(box, ['remote', 'copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(ls(box.dest)).toEqual(img);
    expect(sha256(path.join(box.dest, img[0]!))).toBe(sha256(path.join(box.backups, img[0]!)));
    expect(logText(box)).toMatch(/copied and verified .*by read-back/);
  });

  it('creates a missing destination directory; dry-run changes nothing', () => {
    const box = makeBox(env, { auth: 'key', createDest: false });
    box.config.remote['destination'] = `/home/${KEY_USER}/backups-${box.name}/daily`;
    writeConfig(box);
    makeBackup(box.backups, 'appliance', day(3), { 'img.zst': 1000 });
    const dry = zshield(box, ['--dry-run', 'remote', 'copy']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/would copy: zshield-appliance-20260103T030000Z\.img\.zst/);
    const dest = String(box.config.remote['destination']);
    expect(ls(path.dirname(dest))).toEqual([]);
    const r = zshield(box, ['remote', 'copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(ls(dest)).toEqual(['zshield-appliance-20260103T030000Z.img.zst']);
    expect(statSync(dest).mode & 0o777).toBe(0o700);
  });

  it('retention keeps the newest N of each kind here and there, and leaves other files alone', () => {
    const box = makeBox(env, { remote: { limit: 2 } });
    const foreignLocal = ['notes.txt', 'zshield-appliance-latest.img.zst', 'zshield.conf.bak'];
    for (const f of foreignLocal) makeForeign(box.backups, f);
    const foreignRemote = ['README', 'other-host-20260101.tgz', 'zshield-x.img'];
    for (const f of foreignRemote) makeForeign(box.dest, f, PASSWORD_USER);

    // One backup of each kind per day, a copy after each, as the daemon does.
    const made: Record<number, string[]> = {};
    for (let d = 1; d <= 4; d++) {
      made[d] = [
        ...makeBackup(box.backups, 'appliance', day(d), IMAGE),
        ...makeBackup(box.backups, 'log', day(d), { log: 3_000 }),
      ];
      const r = zshield(box, ['remote', 'copy']);
      expect(r.code, r.stderr).toBe(0);
    }
    const newest = [...made[3]!, ...made[4]!].sort();
    expect(ls(box.backups)).toEqual([...newest, ...foreignLocal].sort());
    expect(ls(box.dest)).toEqual([...newest, ...foreignRemote].sort());
    for (const f of foreignRemote)
      expect(readFileSync(path.join(box.dest, f), 'utf8')).toBe(`not ours: ${f}\n`);
    const log = logText(box);
    expect(log).toMatch(/remote retention: deleted local .*zshield-appliance-20260101T030000Z\.img\.zst/);
    expect(log).toMatch(/remote retention: deleted remote .*zshield-log-20260102T030000Z\.log/);

    // --limit wins over remote.limit: 1 keeps only the newest of each kind.
    const one = zshield(box, ['remote', 'copy', '--limit', '1']);
    expect(one.code, one.stderr).toBe(0);
    expect(ls(box.dest)).toEqual([...made[4]!, ...foreignRemote].sort());
  });

  it('never deletes the only copy of a backup that has not reached the remote', () => {
    const box = makeBox(env, { remote: { limit: 1 } });
    const old = makeBackup(box.backups, 'log', day(1), { log: 1000 });
    const newer = makeBackup(box.backups, 'log', day(2), { log: 1000 });
    const r = zshield(box, ['remote', 'copy']);
    expect(r.code, r.stderr).toBe(0);
    // day 1 is over the limit, so it is not copied; it is not on the remote, so it is not deleted.
    expect(ls(box.dest)).toEqual(newer);
    expect(ls(box.backups)).toEqual([...old, ...newer].sort());
    expect(r.stdout).toMatch(/kept local: log 20260101T030000Z \(not on the remote yet\)/);
  });

  it('an upload cut off half-way (the process killed) resumes and ends verified', async () => {
    const box = makeBox(env, { auth: 'key' });
    const [name] = makeBackup(box.backups, 'appliance', day(5), { 'img.zst': 24 * 1024 * 1024 });
    const part = path.join(box.dest, `${name}.zshield-part`);
    const { child, done } = zshieldAsync(box, ['remote', 'copy', '--bwlimit', '4096']);
    const size = () => statSync(part, { throwIfNoEntry: false })?.size ?? 0;
    await waitUntil(() => size() >= 8 * 1024 * 1024, 'a third of the upload', 60_000);
    child.kill('SIGKILL');
    await done;
    const cut = size();
    expect(cut).toBeGreaterThan(0);
    expect(cut).toBeLessThan(24 * 1024 * 1024);
    expect(ls(box.dest)).toEqual([`${name}.zshield-part`]);

    const r = zshield(box, ['remote', 'copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/resume at \d/);
    expect(logText(box)).toMatch(/resuming zshield-appliance-20260105T030000Z\.img\.zst at/);
    expect(ls(box.dest)).toEqual([name]);
    expect(sha256(path.join(box.dest, name!))).toBe(sha256(path.join(box.backups, name!)));
    const report = /copied 1 file\(s\), ([\d.]+) MiB sent/.exec(r.stdout);
    expect(Number(report?.[1])).toBeLessThan(24 - cut / 1024 / 1024 + 0.5);
  });

  it('a link cut during the upload is retried with backoff and resumes in the same run', async () => {
    const box = makeBox(env, { remote: { retries: 2 } });
    const [name] = makeBackup(box.backups, 'appliance', day(6), { 'img.zst': 16 * 1024 * 1024 });
    const part = path.join(box.dest, `${name}.zshield-part`);
    const before = new Set(sessionPids(env.serverA.pid));
    const { done } = zshieldAsync(box, ['remote', 'copy', '--bwlimit', '4096']);
    const size = () => statSync(part, { throwIfNoEntry: false })?.size ?? 0;
    await waitUntil(() => size() >= 4 * 1024 * 1024, 'a quarter of the upload', 60_000);
    // The server side of our connection: the sshd child that was not there before.
    const ours = sessionPids(env.serverA.pid).filter((p) => !before.has(p));
    expect(ours.length).toBeGreaterThan(0);
    for (const p of ours) process.kill(p, 'SIGKILL');
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    const log = logText(box);
    expect(log).toMatch(/connection lost.*try 2 of 3 in 2\.0 s/);
    expect(log).toMatch(/resuming .* at/);
    expect(log).toMatch(/remote copy: zshield-appliance-20260106T030000Z\.img\.zst \d+% \(/);
    expect(ls(box.dest)).toEqual([name]);
    expect(sha256(path.join(box.dest, name!))).toBe(sha256(path.join(box.backups, name!)));
    expectNoSecrets(box, env, [r]);
  });

  it('SIGINT mid-upload stops it (exit 9), keeps the part and the lock free; the next run resumes', async () => {
    const box = makeBox(env, { auth: 'key' });
    const [name] = makeBackup(box.backups, 'appliance', day(8), { 'img.zst': 12 * 1024 * 1024 });
    const part = path.join(box.dest, `${name}.zshield-part`);
    const { child, done } = zshieldAsync(box, ['remote', 'copy', '--bwlimit', '2048']);
    await waitUntil(
      () => (statSync(part, { throwIfNoEntry: false })?.size ?? 0) >= 2 * 1024 * 1024,
      'the upload',
      60_000,
    );
    child.kill('SIGINT');
    const stopped = await done;
    expect(stopped.code).toBe(ExitCode.interrupted);
    expect(stopped.stderr).toMatch(/^zshield: interrupted/m);
    expect(ls(box.dest)).toEqual([`${name}.zshield-part`]);
    const r = zshield(box, ['remote', 'copy', '--json']);
    expect(r.code, r.stderr).toBe(0);
    // Released, not taken over from a dead holder.
    expect(r.stderr).not.toMatch(/taking over/);
    // With --json the upload's progress goes to the log file only (the rule of every command).
    expect(r.stderr).not.toMatch(/remote copy: \S+ \d+% \(/);
    const report = JSON.parse(r.stdout);
    expect(report.copied).toHaveLength(1);
    expect(report.copied[0].resumedFrom).toBeGreaterThan(0);
    expect(report.copied[0].sha256).toBe(sha256(path.join(box.backups, name!)));
    expect(ls(box.dest)).toEqual([name]);
  });

  it('a part that is not the start of the file fails the checksum and is uploaded again', () => {
    const box = makeBox(env, { remote: { retries: 1 } });
    const [name] = makeBackup(box.backups, 'log', day(9), { log: 200_000 });
    // Garbage of half the size where the resumable part would be.
    makeForeign(box.dest, `${name}.zshield-part`, PASSWORD_USER);
    writeFileSync(path.join(box.dest, `${name}.zshield-part`), Buffer.alloc(100_000, 7));
    const r = zshield(box, ['remote', 'copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/does not match: SHA-256 .*the partial upload was removed; try 2 of 2/);
    expect(ls(box.dest)).toEqual([name]);
    expect(sha256(path.join(box.dest, name!))).toBe(sha256(path.join(box.backups, name!)));
  });

  it('the bandwidth limit holds the upload to the rate', () => {
    const box = makeBox(env, { auth: 'key' });
    makeBackup(box.backups, 'appliance', day(7), { 'img.zst': 3 * 1024 * 1024 });
    const t = Date.now();
    const r = zshield(box, ['remote', 'copy', '--bwlimit', '1024']);
    const secs = (Date.now() - t) / 1000;
    expect(r.code, r.stderr).toBe(0);
    // 3 MiB at 1 MiB/s, less the quarter-second burst.
    expect(secs).toBeGreaterThan(2.5);
  });
});

function makeForeign(dir: string, name: string, owner?: string): void {
  const file = path.join(dir, name);
  writeFileSync(file, `not ours: ${name}\n`);
  if (owner) {
    const { uid, gid } = uidOf(owner);
    chownSync(file, uid, gid);
  }
}
