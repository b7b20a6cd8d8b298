import { spawn, spawnSync } from 'node:child_process';
import { chownSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { newKey, writeKeyFile } from '../../src/system/secrets.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import { SEA, SEA_ENV } from '../bundle.js';
import type { Run } from './lib.js';
import { KEY_USER, type RemoteEnv, uidOf } from './sshd.js';

/**
 * A box with a history for the replication tests: a config (0600) whose history section has two
 * SFTP targets (A: a server with a shell, B: the SFTP-only server), an ext4 image as
 * the tree to back up (mounted read-only, noload, by `history take --device`), and helpers to
 * change that tree and to check a target's copy with restic itself.
 */

export interface HistoryBox {
  dir: string;
  configFile: string;
  config: Record<string, unknown> & {
    history: Record<string, unknown> & { targets: Record<string, unknown>[] };
  };
  tree: string;
  /** The targets' directories, seen from here. */
  destA: string;
  destB: string;
  logFile: string;
}

let n = 0;

function sh(file: string, args: string[]): string {
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

export function zh(box: HistoryBox, args: string[], opts: { input?: string } = {}): Run {
  const r = spawnSync(SEA, ['-c', box.configFile, ...args], {
    encoding: 'utf8',
    timeout: 300_000,
    env: SEA_ENV,
    input: opts.input,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** zh without blocking: the SEA as a child process, its result when it ends. */
export function zhAsync(box: HistoryBox, args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(SEA, ['-c', box.configFile, ...args], { env: SEA_ENV, timeout: 300_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export function writeHistoryConfig(box: HistoryBox): void {
  writeFileSync(box.configFile, `${JSON.stringify(box.config, null, 2)}\n`, { mode: 0o600 });
}

function destFor(env: RemoteEnv, name: string, user: string): string {
  const d = path.join(env.base, 'history-dest', name);
  mkdirSync(d, { recursive: true, mode: 0o700 });
  const { uid, gid } = uidOf(user);
  chownSync(d, uid, gid);
  return d;
}

/** A box, `history init` done. `files` random files of `size` bytes make the tree. */
export function makeHistoryBox(
  env: RemoteEnv,
  opts: { files?: number; size?: number; imageMiB?: number } = {},
): HistoryBox {
  const box = newHistoryBox(env, opts);
  const r = zh(box, ['history', 'init']);
  expect(r.code, r.stderr).toBe(0);
  // init wrote the password and the public key into the config: read them back.
  box.config = JSON.parse(sh('cat', [box.configFile]));
  return box;
}

/** makeHistoryBox, `history init` run without blocking (many boxes made side by side). */
export async function makeHistoryBoxAsync(
  env: RemoteEnv,
  opts: { files?: number; size?: number; imageMiB?: number } = {},
): Promise<HistoryBox> {
  const box = newHistoryBox(env, opts);
  const r = await zhAsync(box, ['history', 'init']);
  expect(r.code, r.stderr).toBe(0);
  box.config = JSON.parse(readFileSync(box.configFile, 'utf8'));
  return box;
}

/** A box's folders, config and tree, before `history init`. */
function newHistoryBox(
  env: RemoteEnv,
  opts: { files?: number; size?: number; imageMiB?: number } = {},
): HistoryBox {
  const name = `hbox${n++}-${process.pid}`;
  const dir = path.join(env.base, 'hboxes', name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  mkdirSync(path.join(env.base, 'history-dest'), { recursive: true, mode: 0o755 });
  const keyFile = path.join(dir, 'history.key');
  const key = newKey();
  writeKeyFile(REAL_WRITES, keyFile, key);
  const destA = destFor(env, `${name}-a`, KEY_USER);
  const destB = destFor(env, `${name}-b`, KEY_USER);
  const box: HistoryBox = {
    dir,
    configFile: path.join(dir, 'zshield.conf'),
    tree: path.join(dir, 'tree.img'),
    destA,
    destB,
    logFile: path.join(dir, 'zshield.log'),
    config: {
      paths: { stateDir: path.join(dir, 'state'), runDir: path.join(dir, 'run') },
      log: { file: path.join(dir, 'zshield.log'), level: 'debug' },
      history: {
        dir: path.join(dir, 'history'),
        keyFile,
        mountPoint: path.join(dir, 'mnt'),
        cacheDir: path.join(dir, 'run', 'cache'),
        retries: 1,
        connectTimeoutSeconds: 10,
        targets: [
          {
            name: 'a',
            server: '127.0.0.1',
            port: env.serverA.port,
            // The key user on both: another session's remote tests may reset the password user's
            // password at any time (their global setup does). The password path is the remote
            // copy's loadCredentials, which history uses as it is.
            user: KEY_USER,
            privateKey: env.clientKey,
            hostKey: env.serverA.fingerprint,
            directory: destA,
          },
          {
            name: 'b',
            server: '127.0.0.1',
            port: env.serverB.port,
            user: KEY_USER,
            privateKey: env.clientKey,
            hostKey: env.serverB.fingerprint,
            directory: destB,
          },
        ],
      },
    },
  };
  writeHistoryConfig(box);
  makeTree(box, opts.files ?? 40, opts.size ?? 50_000, opts.imageMiB ?? 64);
  return box;
}

function makeTree(box: HistoryBox, files: number, size: number, mib: number): void {
  const src = path.join(box.dir, 'tree-src');
  mkdirSync(path.join(src, 'etc'), { recursive: true });
  writeFileSync(path.join(src, 'etc', 'fstab'), '/dev/vgroup/lv-root / ext4 defaults 0 1\n');
  for (let i = 0; i < files; i++) writeFileSync(path.join(src, `f${i}`), randomData(size));
  sh('truncate', ['-s', `${mib}M`, box.tree]);
  sh('mkfs.ext4', ['-q', '-F', '-d', src, box.tree]);
  rmSync(src, { recursive: true, force: true });
}

export function randomData(size: number): Buffer {
  return Buffer.from(spawnSync('head', ['-c', String(size), '/dev/urandom'], { maxBuffer: size + 1 }).stdout);
}

/**
 * Change the tree (mounted read-write for a moment): write these files. On a loop device of its
 * own: `mount -o loop` reuses a loop device already attached to the same file, and the read-only
 * one of the take before (`history take --device` mounts the tree ro) may still be attached for a
 * moment after its unmount (the kernel clears an autoclear loop device asynchronously): the mount
 * then came back read-only and the write failed with EROFS, once on a loaded machine.
 */
export function changeTree(box: HistoryBox, files: Record<string, Buffer>): void {
  const mnt = path.join(box.dir, 'edit');
  mkdirSync(mnt, { recursive: true });
  const dev = sh('losetup', ['--find', '--show', box.tree]).trim();
  try {
    sh('mount', [dev, mnt]);
    try {
      for (const [name, data] of Object.entries(files)) writeFileSync(path.join(mnt, name), data);
    } finally {
      sh('umount', [mnt]);
    }
  } finally {
    sh('losetup', ['-d', dev]);
  }
}

/** The repository password, as `history password --yes` prints it. */
export function passwordOf(box: HistoryBox): string {
  const r = zh(box, ['history', 'password', '--yes']);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.replace(/\n$/, '');
}

/** restic on a copy of a target's repository (fetched, as a restore would): check --read-data, snapshots. */
export function resticOnCopy(box: HistoryBox, dest: string): { check: Run; snapshots: string[] } {
  const copy = path.join(box.dir, `copy-${path.basename(dest)}`);
  rmSync(copy, { recursive: true, force: true });
  cpSync(path.join(dest, 'repo'), copy, { recursive: true });
  for (const d of ['locks', 'snapshots', 'index', 'keys']) mkdirSync(path.join(copy, d), { recursive: true });
  const pw = path.join(box.dir, 'pw');
  writeFileSync(pw, passwordOf(box), { mode: 0o600 });
  const base = ['-r', copy, '--password-file', pw, '--no-cache'];
  const c = spawnSync('restic', [...base, 'check', '--read-data'], { encoding: 'utf8', env: SEA_ENV });
  const s = spawnSync('restic', [...base, 'snapshots', '--json'], { encoding: 'utf8', env: SEA_ENV });
  rmSync(pw);
  rmSync(copy, { recursive: true, force: true });
  const ids = s.status === 0 ? (JSON.parse(s.stdout) as { id: string }[]).map((x) => x.id).sort() : [];
  return { check: { code: c.status, stdout: c.stdout, stderr: c.stderr }, snapshots: ids };
}

export function localSnapshots(box: HistoryBox): string[] {
  const pw = path.join(box.dir, 'pw');
  writeFileSync(pw, passwordOf(box), { mode: 0o600 });
  const s = spawnSync(
    'restic',
    ['-r', path.join(box.dir, 'history', 'repo'), '--password-file', pw, '--no-cache', 'snapshots', '--json'],
    {
      encoding: 'utf8',
      env: SEA_ENV,
    },
  );
  rmSync(pw);
  return (JSON.parse(s.stdout) as { id: string }[]).map((x) => x.id).sort();
}

export function takeFingerprint(r: Run): string {
  expect(r.code, r.stderr).toBe(0);
  const m = /history: ([0-9a-f]{64}) /.exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  return m![1]!;
}

export function historyLog(box: HistoryBox): string {
  return spawnSync('cat', [box.logFile], { encoding: 'utf8' }).stdout;
}
