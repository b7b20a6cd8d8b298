import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A real OpenSSH server for the remote tests and the benchmark: installed with apt when missing,
 * run as root on 127.0.0.1 with its own config, host key and port (`sshd -D -e -f cfg`), never the
 * system's sshd. Two test users: one that logs in with a password, one with a key.
 */

/**
 * The users are the machine's, and several checkouts (worktrees) may run the remote tests at once:
 * each checkout gets its own pair, named from its path, so one run never changes the users (their
 * password, their home) another is logged in as.
 */
const CHECKOUT = createHash('sha256')
  .update(path.resolve(import.meta.dirname, '../..'))
  .digest('hex')
  .slice(0, 8);
export const PASSWORD_USER = `zshield-pw-${CHECKOUT}`;
export const KEY_USER = `zshield-key-${CHECKOUT}`;

function run(file: string, args: string[], input?: string): string {
  const r = spawnSync(file, args, { encoding: 'utf8', input, timeout: 600_000 });
  if (r.status !== 0) {
    throw new Error(`${file} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout}`);
  }
  return r.stdout;
}

function installed(pkg: string): boolean {
  const r = spawnSync('dpkg-query', ['-W', `-f=\${Status}`, pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('ok installed');
}

/** What the remote tests install on the host (the OpenSSH servers, restic, tmux for the terminal). */
export const SSHD_PACKAGES = ['openssh-server', 'openssh-client', 'tmux', 'restic'];

/**
 * Host installs of the tests, one at a time across processes (flock(1) on this file; the bench's
 * setup.sh takes it too): each lends the others its policy-rc.d only while it holds the lock, so
 * none removes it under another's install.
 */
export const HOST_APT_LOCK = '/run/lock/zshield-host-apt.lock';

/** Runs `fn` holding HOST_APT_LOCK (waited for up to 20 minutes: an install with its update). */
function withHostAptLock<T>(fn: () => T): T {
  const fd = openSync(HOST_APT_LOCK, 'a');
  try {
    // flock(1) on an inherited descriptor locks the open file, which stays locked while ours is open.
    const r = spawnSync('flock', ['--wait', '1200', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    if (r.status !== 0) throw new Error(`flock ${HOST_APT_LOCK} failed (${r.status}): ${r.stderr}`);
    return fn();
  } finally {
    closeSync(fd);
  }
}

/**
 * apt-get install what is missing (update first only if the install fails), under the host's
 * install lock: the remote project and an appliance file that starts an RGW may install at the same
 * time (the gate installs both sets first, in test/remote/install-packages.ts, so that its parts
 * never wait here).
 */
export function ensurePackages(pkgs: string[]): void {
  if (pkgs.every(installed)) return;
  withHostAptLock(() => installMissing(pkgs));
}

function installMissing(pkgs: string[]): void {
  // Again under the lock: the install that held it may have brought some of them.
  const missing = pkgs.filter((p) => !installed(p));
  if (!missing.length) return;
  // A package's postinst must not start the system's sshd (on port 22) as a side effect.
  const policy = '/usr/sbin/policy-rc.d';
  const madePolicy = !existsSync(policy);
  if (madePolicy) {
    writeFileSync(policy, '#!/bin/sh\nexit 101\n');
    chmodSync(policy, 0o755);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    // dpkg's own lock too is waited for: an install outside the tests (an operator's apt) may run.
    const wait = ['-o', 'DPkg::Lock::Timeout=600'];
    const args = [...wait, 'install', '-y', '--no-install-recommends', ...missing];
    let r = spawnSync('apt-get', args, { encoding: 'utf8', env, timeout: 1_200_000 });
    if (r.status !== 0) {
      spawnSync('apt-get', [...wait, 'update'], { encoding: 'utf8', env, timeout: 1_200_000 });
      r = spawnSync('apt-get', args, { encoding: 'utf8', env, timeout: 1_200_000 });
    }
    if (r.status !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed:\n${r.stderr}`);
  } finally {
    if (madePolicy) spawnSync('rm', ['-f', policy]);
  }
}

function userExists(user: string): boolean {
  return spawnSync('id', ['-u', user]).status === 0;
}

export function uidOf(user: string): { uid: number; gid: number } {
  return {
    uid: Number(run('id', ['-u', user]).trim()),
    gid: Number(run('id', ['-g', user]).trim()),
  };
}

/**
 * The test users, created when absent, with the machine's test password (chpasswd reads it on
 * stdin). The key user gets one too: with UsePAM no, sshd refuses a locked account (`!` in
 * shadow) even for key logins.
 */
export function ensureUsers(password: string): void {
  // The gate starts the remote tests and the contract suite at the same moment, and both set up
  // these users: one lock (flock(1)) around useradd and chpasswd, and a user the other made while
  // this one waited is taken as made (useradd exit 9). A gate with busy loops beside it lost that
  // race once: "useradd: user 'zshield-pw-…' already exists", and the contract suite did not run.
  const lock = path.join(tmpdir(), 'zshield-test-users.lock');
  const locked = (file: string, args: string[], input?: string) =>
    run('flock', ['--wait', '600', lock, file, ...args], input);
  for (const user of [PASSWORD_USER, KEY_USER]) {
    if (userExists(user)) continue;
    try {
      locked('useradd', ['--create-home', '--shell', '/bin/sh', user]);
    } catch (err) {
      if (!userExists(user)) throw err;
    }
  }
  locked('chpasswd', [], `${PASSWORD_USER}:${password}\n${KEY_USER}:${password} key\n`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function fingerprintOf(pubKeyFile: string): string {
  const out = run('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubKeyFile]);
  const m = /(SHA256:[A-Za-z0-9+/]{43})/.exec(out);
  if (!m) throw new Error(`no fingerprint in: ${out}`);
  return m[1]!;
}

export interface Sshd {
  port: number;
  pid: number;
  hostKey: string;
  fingerprint: string;
  log: string;
  stop(): Promise<void>;
}

/** Start sshd on a free port of 127.0.0.1 with its own host key; resolves when it answers. */
export async function startSshd(opts: {
  dir: string;
  name: string;
  authorizedKeysDir: string;
  extraConfig?: string[];
}): Promise<Sshd> {
  const dir = path.join(opts.dir, opts.name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = path.join(dir, 'ssh_host_ed25519_key');
  if (!existsSync(hostKey))
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', opts.name, '-f', hostKey]);
  const port = await freePort();
  const cfg = path.join(dir, 'sshd_config');
  writeFileSync(
    cfg,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      'UsePAM no',
      'PermitRootLogin no',
      'PasswordAuthentication yes',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      // Keys live in the test's directory, not in the users' homes (root-owned: StrictModes off).
      `AuthorizedKeysFile ${opts.authorizedKeysDir}/%u`,
      'StrictModes no',
      `AllowUsers ${PASSWORD_USER} ${KEY_USER}`,
      'Subsystem sftp internal-sftp',
      'MaxStartups 64',
      'MaxSessions 64',
      'LogLevel VERBOSE',
      'UseDNS no',
      ...(opts.extraConfig ?? []),
      '',
    ].join('\n'),
  );
  const log = path.join(dir, 'sshd.log');
  const out = openSync(log, 'a');
  const child: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', cfg], {
    stdio: ['ignore', out, out],
    detached: false,
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await waitForBanner(port, child, log);
  return {
    port,
    pid: child.pid!,
    hostKey,
    fingerprint: fingerprintOf(`${hostKey}.pub`),
    log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      }
    },
  };
}

async function waitForBanner(port: number, child: ChildProcess, log: string): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`sshd exited (${child.exitCode}):\n${readFileSync(log, 'utf8')}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.setTimeout(1000);
      s.once('data', (d) => {
        s.destroy();
        resolve(d.toString().startsWith('SSH-2.0'));
      });
      s.once('error', () => resolve(false));
      s.once('timeout', () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`sshd did not answer on ${port}:\n${readFileSync(log, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The sshd processes serving connections (children of the listener we started). */
export function sessionPids(sshdPid: number): number[] {
  const r = spawnSync('ps', ['-o', 'pid=', '--ppid', String(sshdPid)], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
}

export interface RemoteEnv {
  base: string;
  password: string;
  clientKey: string;
  serverA: { port: number; pid: number; fingerprint: string; log: string };
  serverB: { port: number; pid: number; fingerprint: string; log: string };
}

const PASSWORD_FILE = '/var/lib/zshield-remote-test/password';

/**
 * The test users' password: made once per machine (root-only file), not per run: a second run
 * from the same checkout, started while one is going, would otherwise fail its every password login. Printable, with characters a shell or a URL
 * would mangle, never ':' (chpasswd's separator).
 */
function testPassword(): string {
  mkdirSync(path.dirname(PASSWORD_FILE), { recursive: true, mode: 0o700 });
  const tmp = `${PASSWORD_FILE}.${process.pid}`;
  writeFileSync(tmp, `pw 'q"$x ${randomBytes(9).toString('base64url')}`, { mode: 0o600 });
  try {
    // link() does not replace: the first run's password stays, whoever races it.
    linkSync(tmp, PASSWORD_FILE);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
  return readFileSync(PASSWORD_FILE, 'utf8');
}

/** Everything the remote tests share: packages, users, a client key, two servers (A and B). */
export async function setUpRemoteEnv(): Promise<{ env: RemoteEnv; stop(): Promise<void> }> {
  ensurePackages(SSHD_PACKAGES);
  const password = testPassword();
  ensureUsers(password);
  const base = mkdtempSync('/tmp/zshield-remote-');
  // sshd reads the authorized keys as the user: the path must be traversable by everyone.
  chmodSync(base, 0o755);
  const keys = path.join(base, 'authorized_keys');
  mkdirSync(keys, { mode: 0o755 });
  const clientKey = path.join(base, 'client_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'zshield-test', '-f', clientKey]);
  writeFileSync(path.join(keys, KEY_USER), readFileSync(`${clientKey}.pub`), { mode: 0o644 });
  const a = await startSshd({ dir: base, name: 'server-a', authorizedKeysDir: keys });
  // B: another host key, and SFTP only (no shell: a remote command cannot run there).
  const b = await startSshd({
    dir: base,
    name: 'server-b',
    authorizedKeysDir: keys,
    extraConfig: ['ForceCommand internal-sftp'],
  });
  const pick = (s: Sshd) => ({ port: s.port, pid: s.pid, fingerprint: s.fingerprint, log: s.log });
  return {
    env: { base, password, clientKey, serverA: pick(a), serverB: pick(b) },
    stop: async () => {
      await a.stop();
      await b.stop();
      spawnSync('rm', ['-rf', base]);
    },
  };
}
