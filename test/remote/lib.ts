import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { backupFileName } from '../../src/names/backup-files.js';
import { encryptPassword, newKey } from '../../src/system/secrets.js';
import { SEA, SEA_ENV } from '../bundle.js';
import { KEY_USER, PASSWORD_USER, type RemoteEnv, uidOf } from './sshd.js';

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The single executable (build/build.sh makes it with the bundle). */

export function zshield(box: Box, args: string[], opts: { timeoutMs?: number } = {}): Run {
  const r = spawnSync(SEA, ['-c', box.configFile, ...args], {
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 110_000,
    env: SEA_ENV,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The CLI in the background, for tests that cut it off. */
export function zshieldAsync(box: Box, args: string[]): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(SEA, ['-c', box.configFile, ...args], { env: SEA_ENV });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<Run>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}

export interface Box {
  name: string;
  dir: string;
  configFile: string;
  keyFile: string;
  key: Buffer;
  /** Local backup directory (remote.sources). */
  backups: string;
  /** The remote destination, seen from here (the server is this machine). */
  dest: string;
  logFile: string;
  config: { remote: Record<string, unknown> } & Record<string, unknown>;
}

let boxes = 0;

/**
 * A box: a config (0600) pointing at server A as the password user (or the key user), a key file
 * with the password encrypted by it, a local backup directory and a remote destination directory
 * owned by the remote user.
 */
export function makeBox(
  env: RemoteEnv,
  opts: { auth?: 'password' | 'key'; remote?: Record<string, unknown>; createDest?: boolean } = {},
): Box {
  const name = `box${boxes++}-${process.pid}`;
  const dir = path.join(env.base, 'boxes', name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const backups = path.join(dir, 'diskbackup');
  mkdirSync(backups);
  const user = opts.auth === 'key' ? KEY_USER : PASSWORD_USER;
  const destParent = path.join(env.base, 'dest');
  mkdirSync(destParent, { recursive: true, mode: 0o755 });
  const dest = path.join(destParent, name);
  if (opts.createDest !== false) {
    mkdirSync(dest, { mode: 0o700 });
    const { uid, gid } = uidOf(user);
    chownSync(dest, uid, gid);
  }
  const key = newKey();
  const keyFile = path.join(dir, 'remote.key');
  writeFileSync(keyFile, `${key.toString('base64')}\n`, { mode: 0o600 });
  const configFile = path.join(dir, 'zshield.conf');
  const logFile = path.join(dir, 'zshield.log');
  const config = {
    paths: { stateDir: path.join(dir, 'state'), runDir: path.join(dir, 'run') },
    log: { file: logFile, level: 'debug' },
    remote: {
      server: '127.0.0.1',
      port: env.serverA.port,
      user,
      destination: dest,
      keyFile,
      hostKey: env.serverA.fingerprint,
      sources: [backups],
      retries: 1,
      connectTimeoutSeconds: 10,
      ...(opts.auth === 'key'
        ? { privateKey: env.clientKey }
        : { password: encryptPassword(env.password, key) }),
      ...opts.remote,
    },
  };
  const box: Box = { name, dir, configFile, keyFile, key, backups, dest, logFile, config };
  writeConfig(box);
  return box;
}

export function writeConfig(box: Box): void {
  writeFileSync(box.configFile, `${JSON.stringify(box.config, null, 2)}\n`, { mode: 0o600 });
}

/** Write one backup (all its files) with random content; returns the names. */
export function makeBackup(dir: string, kind: string, time: Date, files: Record<string, number>): string[] {
  const names: string[] = [];
  for (const [ext, size] of Object.entries(files)) {
    const name = backupFileName(kind, time, ext);
    writeFileSync(path.join(dir, name), randomBytes(size));
    names.push(name);
  }
  return names;
}

export const day = (n: number) => new Date(Date.UTC(2026, 0, n, 3, 0, 0));

export function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** name -> sha256 of every file in a directory: to show it was left untouched. */
export function dirState(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  for (const n of readdirSync(dir).sort()) out[n] = sha256(path.join(dir, n));
  return out;
}

export const ls = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);

/**
 * No secret anywhere we can see: the CLI's output, the log file. The secrets are the password, the
 * encryption key, the private key's body, and the ciphertext (not a secret alone, but never shown).
 */
export function expectNoSecrets(box: Box, env: RemoteEnv, runs: Run[]): void {
  const texts = [
    ...runs.flatMap((r) => [r.stdout, r.stderr]),
    existsSync(box.logFile) ? readFileSync(box.logFile, 'utf8') : '',
  ];
  const secrets = [env.password, box.key.toString('base64'), ...privateKeyLines(env.clientKey)];
  const cipher = box.config.remote['password'];
  if (typeof cipher === 'string') secrets.push(cipher, cipher.slice(12, 40));
  for (const t of texts)
    for (const s of secrets) expect(t.includes(s), `a secret leaked: ${s.slice(0, 6)}…`).toBe(false);
}

function privateKeyLines(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('-----'));
}

/** A one-line error: `zshield: ...` (and optionally an indented hint), exit `code`. */
export function expectError(r: Run, code: number, message: RegExp): void {
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('zshield: ') || l.startsWith('  hint: '));
  expect(r.code, `stderr: ${r.stderr}`).toBe(code);
  const err = lines.find((l) => l.startsWith('zshield: '));
  expect(err, r.stderr).toBeDefined();
  expect(err).toMatch(message);
}

export function logText(box: Box): string {
  return existsSync(box.logFile) ? readFileSync(box.logFile, 'utf8') : '';
}

export async function waitUntil(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
