import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, mkdirSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import {
  type Box,
  day,
  dirState,
  expectError,
  logText,
  ls,
  makeBackup,
  makeBox,
  sha256,
  waitUntil,
  zshield,
  zshieldAsync,
} from './lib.js';
import { PASSWORD_USER, uidOf } from './sshd.js';

const env = inject('remote');
const MiB = 1024 * 1024;

/**
 * An off-box copy that differs from its source must never look good: a local file rewritten in
 * place while it is sent, a remote copy corrupted under its final name, a remote disk that fills.
 * Each case ends with the remote identical to the local file, or with a clear error and nothing
 * under a backup's final name that differs from it.
 */

/** Overwrite a file in place (same size, same inode), as a writer that rewrites it would. */
function rewriteInPlace(file: string): void {
  const size = statSync(file).size;
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, randomBytes(size), 0, size, 0);
  } finally {
    closeSync(fd);
  }
}

/** Run an upload at 1 MiB/s and call `act` once the server holds `atLeast` bytes of its part. */
async function duringUpload(
  box: Box,
  name: string,
  size: number,
  args: string[],
  act: () => void,
): Promise<ReturnType<typeof zshield>> {
  const part = path.join(box.dest, `${name}.zshield-part`);
  const partSize = () => statSync(part, { throwIfNoEntry: false })?.size ?? 0;
  const { done } = zshieldAsync(box, ['remote', 'copy', '--bwlimit', '1024', ...args]);
  await waitUntil(() => partSize() >= MiB, 'the first MiB of the upload on the server', 60_000);
  // The upload is under way: part only, not all of it sent, nothing under the final name.
  expect(partSize()).toBeLessThan(size);
  expect(ls(box.dest)).toEqual([`${name}.zshield-part`]);
  act();
  return done;
}

function expectSame(box: Box, names: string[]): void {
  expect(ls(box.dest)).toEqual([...names].sort());
  for (const n of names) expect(sha256(path.join(box.dest, n)), n).toBe(sha256(path.join(box.backups, n)));
}

describe('remote copy: a copy that differs from its source never looks good', () => {
  it('a local file rewritten in place during its upload is not kept, and is sent again', async () => {
    const box = makeBox(env, { remote: { retries: 2 } });
    const size = 4 * MiB;
    const [name] = makeBackup(box.backups, 'appliance', day(1), { 'img.zst': size });
    const local = path.join(box.backups, name!);
    const r = await duringUpload(box, name!, size, [], () => rewriteInPlace(local));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      new RegExp(
        `${local.replaceAll('.', '\\.')} changed while being copied \\(rewritten during the upload\\); the remote copy was not kept; try 2 of 3`,
      ),
    );
    expectSame(box, [name!]);
    // The second try started over (the part held bytes of the old content).
    expect(logText(box)).toMatch(
      /zshield-appliance-20260101T030000Z\.img\.zst copied and verified \(4\.0 MiB/,
    );
    const again = zshield(box, ['remote', 'copy']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/nothing to copy: the remote has all 1 backup file\(s\)/);
  });

  it('a local file rewritten in place after its copy is checked by the next run and copied again', () => {
    const box = makeBox(env, { remote: { verifyCycle: 366 } });
    const names = [
      ...makeBackup(box.backups, 'log', day(1), { log: 100_000 }),
      ...makeBackup(box.backups, 'log', day(2), { log: 100_000 }),
    ];
    expect(zshield(box, ['remote', 'copy']).code).toBe(0);
    // Day 2 is checked because it changed here, day 1 as this run's share (1 of 2).
    rewriteInPlace(path.join(box.backups, names[1]!));
    const r = zshield(box, ['remote', 'copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`check by SHA-256: ${names[1]} (changed here since its copy was checked)`);
    expect(r.stdout).toContain(
      `differs: ${names[1]} (the remote copy does not match by SHA-256): copying it again`,
    );
    expect(r.stdout).toMatch(/checked 2 file\(s\) already on the remote by SHA-256: 1 matched, 1 differed/);
    expectSame(box, names);
  });

  it('a remote file corrupted under its final name is found by --verify-all and copied again', () => {
    const box = makeBox(env, { remote: { verifyCycle: 366 } });
    const names = [
      ...makeBackup(box.backups, 'appliance', day(3), { 'img.zst': 300_000, sha256: 100 }),
      ...makeBackup(box.backups, 'log', day(3), { log: 20_000 }),
    ];
    expect(zshield(box, ['remote', 'copy']).code).toBe(0);
    const bad = names[1]!;
    rewriteInPlace(path.join(box.dest, bad));
    const r = zshield(box, ['remote', 'copy', '--verify-all', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.checked.map((c: { name: string; matches: boolean }) => [c.name, c.matches]).sort()).toEqual(
      names.map((n) => [n, n !== bad]).sort(),
    );
    expect(
      report.copied.map((c: { name: string; replacedDiffering: boolean }) => [c.name, c.replacedDiffering]),
    ).toEqual([[bad, true]]);
    expect(logText(box)).toMatch(/remote check: the remote copy of \S+\.sha256 differs from the local file/);
    expectSame(box, names);
    const again = zshield(box, ['remote', 'copy', '--verify-all']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(
      /checked 3 file\(s\) already on the remote by SHA-256: 3 matched, 0 differed$/m,
    );
    expect(again.stdout).toMatch(/^No changes\.$/m);
  });

  it('the rotating share checks 1/verifyCycle of the files per run and finds every corrupted copy within the cycle', () => {
    const box = makeBox(env, { remote: { verifyCycle: 3 } });
    const names = [1, 2, 3].flatMap((d) => makeBackup(box.backups, 'log', day(d), { log: 50_000 }));
    expect(zshield(box, ['remote', 'copy']).code).toBe(0);
    for (const n of names) rewriteInPlace(path.join(box.dest, n));
    const found: string[] = [];
    for (let run = 1; run <= 3; run++) {
      const r = zshield(box, ['remote', 'copy', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout);
      // ceil(3/3) = 1 file a run, each one found to differ and copied again.
      expect(report.checked).toHaveLength(1);
      expect(report.checked[0].matches).toBe(false);
      expect(report.copied.map((c: { name: string }) => c.name)).toEqual([report.checked[0].name]);
      found.push(report.checked[0].name);
    }
    expect(found.sort()).toEqual([...names].sort());
    expectSame(box, names);
  });

  it('a corrupted copy whose re-upload fails stays known: nothing is pruned for it, the next run copies it', () => {
    const box = makeBox(env, { remote: { verifyCycle: 366, limit: 2, retries: 0 } });
    const old = makeBackup(box.backups, 'log', day(1), { log: 30_000 });
    const mid = makeBackup(box.backups, 'log', day(2), { log: 30_000 });
    expect(zshield(box, ['remote', 'copy']).code).toBe(0);
    rewriteInPlace(path.join(box.dest, mid[0]!));
    const newest = makeBackup(box.backups, 'log', day(3), { log: 30_000 });
    // Something on the server stands where day 2's upload would go: its re-upload fails.
    const blocker = path.join(box.dest, `${mid[0]}.zshield-part`);
    mkdirSync(blocker);
    const failed = zshield(box, ['remote', 'copy', '--verify-all']);
    expectError(
      failed,
      ExitCode.remoteFailed,
      /open .*zshield-log-20260102T030000Z\.log\.zshield-part failed/,
    );
    expect(failed.stdout).toContain(
      `differs: ${mid[0]} (the remote copy does not match by SHA-256): copying it again`,
    );
    // Day 1 is over the limit, but day 2's remote copy is bad: neither side prunes it.
    expect(ls(box.backups)).toEqual([...old, ...mid, ...newest].sort());
    expect(ls(box.dest).filter((n) => !n.endsWith('.zshield-part'))).toEqual(
      [...old, ...mid, ...newest].sort(),
    );

    rmSync(blocker, { recursive: true });
    // No check needed this time: the copy is known to differ, so it is planned as an upload.
    const r = zshield(box, ['remote', 'copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /replace: zshield-log-20260102T030000Z\.log \(29\.3 KiB, its remote copy differs\)/,
    );
    expect(r.stdout).not.toMatch(/nothing to copy/);
    expect(ls(box.backups)).toEqual([...mid, ...newest].sort());
    expectSame(box, [...mid, ...newest]);
  });

  it('"local file shrank while being copied" names the file (exit 10)', async () => {
    const box = makeBox(env, { remote: { retries: 0 } });
    const size = 4 * MiB;
    const [name] = makeBackup(box.backups, 'appliance', day(4), { 'img.zst': size });
    const local = path.join(box.backups, name!);
    const r = await duringUpload(box, name!, size, [], () => {
      const fd = openSync(local, 'r+');
      ftruncateSync(fd, 0);
      closeSync(fd);
    });
    expectError(
      r,
      ExitCode.verifyFailed,
      new RegExp(`local file ${local.replaceAll('.', '\\.')} shrank while being copied`),
    );
    expect(ls(box.dest).filter((n) => !n.endsWith('.zshield-part'))).toEqual([]);
  });
});

/** A remote destination on a tmpfs of `size`, owned by the remote user; unmounted by the returned call. */
function smallDestination(box: Box, size: string): () => void {
  const { uid, gid } = uidOf(PASSWORD_USER);
  const m = spawnSync(
    'mount',
    ['-t', 'tmpfs', '-o', `size=${size},mode=0700,uid=${uid},gid=${gid}`, 'tmpfs', box.dest],
    {
      encoding: 'utf8',
    },
  );
  if (m.status !== 0) throw new Error(`mount tmpfs on ${box.dest} failed: ${m.stderr}`);
  return () => {
    spawnSync('umount', [box.dest]);
  };
}

/** Fill a file system to the last byte (as root, which tmpfs does not reserve anything for). */
function fill(dir: string): string {
  const file = path.join(dir, 'filler');
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(4096, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return file;
}

describe('remote copy: a full remote disk', () => {
  it('too little room for the files is refused before uploading: "no space on the remote" (exit 6), not retried', () => {
    const box = makeBox(env, { remote: { retries: 3 } });
    const umount = smallDestination(box, '1m');
    try {
      makeBackup(box.backups, 'appliance', day(5), { 'img.zst': 2 * MiB });
      const local = dirState(box.backups);
      const r = zshield(box, ['remote', 'copy']);
      expectError(
        r,
        ExitCode.refused,
        new RegExp(
          `no space on the remote ${PASSWORD_USER}@127\\.0\\.0\\.1:\\d+: .* has 1\\.0 MiB free, 1 file\\(s\\) needs 2\\.0 MiB`,
        ),
      );
      expect(r.stderr).not.toMatch(/try 2 of/);
      expect(dirState(box.backups)).toEqual(local);
      expect(ls(box.dest)).toEqual([]);
    } finally {
      umount();
    }
  });

  it('a disk that fills during the upload: "no space on the remote" (exit 6), not retried; the next run resumes', async () => {
    const box = makeBox(env, { remote: { retries: 3 } });
    const umount = smallDestination(box, '6m');
    try {
      const size = 4 * MiB;
      const [name] = makeBackup(box.backups, 'appliance', day(6), { 'img.zst': size });
      let filler = '';
      const r = await duringUpload(box, name!, size, [], () => {
        filler = fill(box.dest);
      });
      expectError(
        r,
        ExitCode.refused,
        new RegExp(`no space on the remote ${PASSWORD_USER}@127\\.0\\.0\\.1:\\d+: .* needs [\\d.]+ MiB`),
      );
      expect(r.stderr).not.toMatch(/try 2 of/);
      expect(r.stderr).not.toMatch(/\(Failure\)/);
      expect(ls(box.dest)).toEqual(['filler', `${name}.zshield-part`]);
      rmSync(filler);
      const again = zshield(box, ['remote', 'copy']);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toMatch(/resume at \d/);
      expectSame(box, [name!]);
    } finally {
      umount();
    }
  });
});
