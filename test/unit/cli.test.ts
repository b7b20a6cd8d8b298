import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { memoryLogger } from '../../src/log/logger.js';
import { runKeygen } from '../../src/remote/keygen.js';
import {
  decryptPassword,
  encryptPassword,
  newKey,
  readKeyFile,
  writeKeyFile,
} from '../../src/system/secrets.js';
import { acquireLvmLock } from '../../src/system/lock.js';
import { StreamPrompter } from '../../src/system/prompt.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import { BUNDLE, ensureBundle, REPO, SEA } from '../bundle.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { GiB, type LvRow, lvsJson, vgsJson } from './helpers/lvm-json.js';

// The CLI as shipped: the esbuild bundle run by node, as a real process. Fake `lvs`/`vgs` (shell
// scripts printing canned JSON) stand in for LVM; fake mutating tools only leave a trace.

const NODE = process.execPath;
const LVM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], opts: { env?: Record<string, string>; argv0?: string[] } = {}): Run {
  const [file, ...pre] = opts.argv0 ?? [NODE, BUNDLE];
  const r = spawnSync(file!, [...pre, ...args], {
    encoding: 'utf8',
    timeout: 90_000, // a bound on a hang (one start took seconds on a host at load 10)
    env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', ...opts.env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const stderrLines = (r: Run) => r.stderr.split('\n').filter(Boolean);

/** A usage error: exit 2, one `zshield:` line, optionally one `  hint:` line, nothing on stdout. */
function expectUsageError(r: Run, message: RegExp): void {
  expect(r.code).toBe(2);
  const lines = stderrLines(r);
  expect(lines[0]).toMatch(/^zshield: /);
  expect(lines[0]).toMatch(message);
  expect(lines.length).toBeLessThanOrEqual(2);
  if (lines[1] !== undefined) expect(lines[1]).toMatch(/^ {2}hint: /);
  expect(r.stdout).toBe('');
}

let root: string;
let cleanup: () => void;

beforeAll(() => {
  ({ dir: root, cleanup } = tempDir('zshield-cli-'));
  ensureBundle();
}, 180_000);
afterAll(() => cleanup());

let boxes = 0;
/** A fake box: fake LVM tools on a PATH directory, a config pointing state and locks into it. */
function box(opts: { lvs?: LvRow[]; vgFree?: number; config?: object } = {}) {
  const dir = path.join(root, `box${boxes++}`);
  const bin = path.join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const calls = path.join(dir, 'calls.log');
  const mutated = path.join(dir, 'mutated.log');
  writeFileSync(
    path.join(dir, 'vgs.json'),
    vgsJson([
      { name: 'vgroup', extentBytes: 4 * 1024 ** 2, extentCount: 7679, freeExtents: opts.vgFree ?? 2000 },
    ]),
  );
  writeFileSync(path.join(dir, 'lvs.json'), lvsJson('vgroup', opts.lvs ?? []));
  // The runner gives children a fixed environment, so the scripts carry absolute paths.
  for (const tool of ['lvs', 'vgs']) {
    writeFileSync(
      path.join(bin, tool),
      `#!/bin/sh\necho "${tool} $*" >> '${calls}'\ncat '${path.join(dir, `${tool}.json`)}'\n`,
      { mode: 0o755 },
    );
  }
  for (const tool of ['lvcreate', 'lvremove', 'lvrename', 'vgchange', 'lvconvert', 'rsync', 'mkdir']) {
    writeFileSync(path.join(bin, tool), `#!/bin/sh\necho "${tool} $*" >> '${mutated}'\n`, { mode: 0o755 });
  }
  const config = path.join(dir, 'zshield.conf');
  writeFileSync(
    config,
    JSON.stringify({
      paths: {
        stateDir: path.join(dir, 'state'),
        runDir: path.join(dir, 'run'),
        eventLog: path.join(dir, 'boot', 'events.jsonl'),
      },
      log: { file: null },
      ...opts.config,
    }),
  );
  return {
    dir,
    config,
    env: { PATH: `${bin}:/usr/bin:/bin` },
    calls: () => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : []),
    mutated: () => existsSync(mutated),
  };
}

const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 10 * GiB, major: 253, minor: 200 };
const SNAP: LvRow = {
  name: 'snap0',
  attr: 'swi-a-s---',
  size: 2 * GiB,
  origin: 'lv-root',
  snapPercent: '12.50',
  tags: ['zshield_reason=daily', 'zshield_time=1763690400'],
  minor: 201,
};

describe('zshield CLI (bundle)', () => {
  it('--help: exit 0, lists the commands', () => {
    const r = run(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['backup', 'status', 'daemon', 'config'])
      expect(r.stdout).toMatch(new RegExp(`zshield ${c}\\b`));
  });

  it('--version prints the package version', () => {
    const r = run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')).version);
  });

  it('an unknown subcommand: exit 2, one line', () => {
    expectUsageError(run(['frobnicate']), /frobnicate/);
  });

  it('an unknown flag: exit 2', () => {
    expectUsageError(run(['status', '--frobnicate']), /frobnicate/);
  });

  it('no command: exit 2', () => {
    expectUsageError(run([]), /command/);
  });

  it('a bad option value: exit 2', () => {
    expectUsageError(run(['backup', '--reason', 'whim']), /reason/);
  });

  it('config check with an invalid file: exit 3, every problem listed with its path', () => {
    const b = box({ config: { snapshot: { size: 'lots', warnPercent: 'high' }, lvm: { vg: '-x' } } });
    const r = run(['config', 'check', '--config', b.config]);
    expect(r.code).toBe(3);
    const lines = stderrLines(r);
    expect(lines[0]).toMatch(/^zshield: config: .*\(and 2 more problem\(s\)\)$/);
    for (const p of ['snapshot.size', 'snapshot.warnPercent', 'lvm.vg']) {
      expect(lines.some((l) => l.startsWith(`  ${b.config}: ${p}: `))).toBe(true);
    }
    expect(r.stdout).toBe('');
  });

  it('config check with a JSON syntax error: exit 3 with file:line:col', () => {
    const b = box();
    writeFileSync(b.config, '{\n  "lvm": {"vg": "vgroup",}\n}\n');
    const r = run(['config', 'check', '-c', b.config]);
    expect(r.code).toBe(3);
    expect(stderrLines(r)[0]).toMatch(
      new RegExp(`^zshield: config: ${b.config.replaceAll('.', '\\.')}:2:26: `),
    );
  });

  it('a missing or unreadable --config file: exit 3', () => {
    const missing = run(['config', 'check', '--config', path.join(root, 'nope.conf')]);
    expect(missing.code).toBe(3);
    expect(stderrLines(missing)[0]).toBe(
      `zshield: config: ${path.join(root, 'nope.conf')}: cannot read: ENOENT`,
    );
    const dir = run(['status', '--config', root]);
    expect(dir.code).toBe(3);
    expect(dir.stderr).toContain('cannot read: EISDIR');
  });

  it('config check OK: exit 0; config show prints a config that checks', () => {
    const b = box({ config: { daemon: { dailyAt: '04:30' } } });
    const ok = run(['config', 'check', '--config', b.config]);
    expect(ok).toMatchObject({ code: 0, stdout: `config OK: ${b.config}\n` });
    const show = run(['config', 'show', '--config', b.config]);
    expect(show.code).toBe(0);
    const shown = JSON.parse(show.stdout);
    expect(shown.daemon.dailyAt).toBe('04:30');
    expect(shown.snapshot.size).toBe('20%');
    writeFileSync(path.join(b.dir, 'shown.conf'), show.stdout);
    expect(run(['config', 'check', '-c', path.join(b.dir, 'shown.conf')]).code).toBe(0);
  });

  it('status with the fake LVM: exit 0, health OK, machine-readable with --json', () => {
    const b = box({ lvs: [ROOT, SNAP] });
    const r = run(['status', '-c', b.config], { env: b.env });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^health: +OK: vgroup\/snap0 is 12\.5% full$/m);
    const j = run(['status', '--json', '-c', b.config], { env: b.env });
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({
      health: { level: 'ok' },
      snapshot: { name: 'snap0', present: true, valid: true, fillPercent: 12.5, reason: 'daily' },
      rotationInterrupted: false,
      rotationNote: null,
      recoveryNote: null,
    });
    expect(b.mutated()).toBe(false);
  });

  it('backup --dry-run: prints the plan, exit 0, runs only lvs/vgs (with the right arguments)', () => {
    const b = box({ lvs: [ROOT, SNAP] });
    const r = run(['backup', '--dry-run', '-c', b.config], { env: b.env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('Back up vgroup/lv-root to snap0 (reason: manual)');
    expect(lines).toContain('     $ vgchange --addtag zshield_rotating vgroup');
    expect(
      lines.some((l) => l.startsWith('     $ lvcreate --snapshot --name snap0-next --size 2147483648b ')),
    ).toBe(true);
    expect(lines).toContain('     $ lvremove --yes vgroup/snap0');
    expect(b.mutated()).toBe(false);
    expect(b.calls()).toEqual([
      'vgs --reportformat json --units b --nosuffix -o vg_name,vg_size,vg_free,vg_extent_size,vg_free_count,vg_tags vgroup',
      'lvs --reportformat json --units b --nosuffix -a -o lv_name,vg_name,lv_path,lv_attr,lv_size,origin,snap_percent,lv_tags,lv_time,lv_kernel_major,lv_kernel_minor --config report/time_format="%s" vgroup',
    ]);
    expect(existsSync(path.join(b.dir, 'state', 'last-backup.json'))).toBe(false);
  });

  it('backup against a VG without lv-root: exit 5, nothing changed, the failure recorded', () => {
    const b = box({ lvs: [{ name: 'lv-data', attr: '-wi-ao----', size: GiB }] });
    const r = run(['backup', '-c', b.config], { env: b.env });
    expect(r.code).toBe(5);
    expect(stderrLines(r)[0]).toBe('zshield: logical volume "vgroup/lv-root" not found');
    expect(b.mutated()).toBe(false);
    const rec = JSON.parse(readFileSync(path.join(b.dir, 'state', 'last-backup.json'), 'utf8'));
    expect(rec).toMatchObject({ result: 'failed', reason: 'manual' });
  });

  it('backup without room: exit 6, the old snapshot kept', () => {
    const b = box({ lvs: [ROOT, { ...SNAP, size: GiB }], vgFree: 10 });
    const r = run(['backup', '-c', b.config], { env: b.env });
    expect(r.code).toBe(6);
    expect(stderrLines(r)[0]).toMatch(/^zshield: not enough space .* the old snap0 is kept$/);
    expect(b.mutated()).toBe(false);
  });

  it('invoked as zshield_backup (symlink to the bundle): a pre-upgrade backup', () => {
    const b = box({ lvs: [ROOT, SNAP] });
    const link = path.join(b.dir, 'zshield_backup.cjs');
    symlinkSync(BUNDLE, link);
    const r = run(['--dry-run', '-c', b.config], { env: b.env, argv0: [NODE, link] });
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('Back up vgroup/lv-root to snap0 (reason: pre-upgrade)');
    expect(r.stdout).toContain('--addtag zshield_reason=pre-upgrade');
    expect(b.mutated()).toBe(false);
  });

  it('invoked as zshield_backup (symlink to the single binary): a pre-upgrade backup', () => {
    // build/build.sh makes both the bundle and the binary, so the binary is present here.
    expect(existsSync(SEA)).toBe(true);
    const b = box({ lvs: [ROOT, SNAP] });
    const link = path.join(b.dir, 'zshield_backup');
    symlinkSync(SEA, link);
    const r = run(['--dry-run', '-c', b.config], { env: b.env, argv0: [link] });
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('Back up vgroup/lv-root to snap0 (reason: pre-upgrade)');
    expect(b.mutated()).toBe(false);
  });
});

/**
 * `status` where lvs/vgs cannot be found. The runner also looks in the standard sbin directories
 * (rc.local and cron run with a minimal PATH), so on a host with LVM installed an empty PATH is not
 * enough: the tools are hidden in a private mount namespace (root and util-linux `unshare`).
 */
describe('zshield CLI without LVM tools', () => {
  const installed = LVM_DIRS.flatMap((d) => ['lvs', 'vgs'].map((t) => path.join(d, t))).filter((p) =>
    existsSync(p),
  );
  const unshare = ['/usr/bin/unshare', '/bin/unshare'].find((p) => existsSync(p));
  const canUnshare =
    !!unshare &&
    process.getuid?.() === 0 &&
    spawnSync(unshare, ['--mount', 'true'], { timeout: 60_000 }).status === 0;

  it.runIf(installed.length === 0 || canUnshare)('status: exit 4, "required tool not found: lvs"', () => {
    const b = box();
    let r: Run;
    if (installed.length === 0) {
      r = run(['status', '-c', b.config], { env: { PATH: '/nonexistent' } });
    } else {
      // Cover each installed lvs/vgs (symlinks resolve to lvm) with an empty, non-executable file.
      const empty = path.join(b.dir, 'not-lvm');
      writeFileSync(empty, '', { mode: 0o644 });
      const mounts = installed.map((p) => `mount --bind '${empty}' '${p}'`).join(' && ');
      const script = `PATH=/usr/sbin:/usr/bin:/sbin:/bin && ${mounts} && PATH=/nonexistent && exec "$@"`;
      r = run(['status', '-c', b.config], {
        env: { PATH: '/nonexistent' },
        argv0: [unshare!, '--mount', '--propagation', 'private', '/bin/sh', '-c', script, 'sh', NODE, BUNDLE],
      });
    }
    expect(r.code).toBe(4);
    const lines = stderrLines(r);
    expect(lines[0]).toMatch(/^zshield: required tool not found: lvs(, vgs)?$/);
    expect(lines[1]).toMatch(/^ {2}hint: install lvm2/);
    expect(r.stdout).toBe('');
  });
});

/** A box whose config has a remote copy set up, with the password stored encrypted. */
function remoteBox(opts: { keyFile?: 'missing' | 'present'; password?: string; configMode?: number } = {}) {
  const key = newKey();
  const b = box();
  const keyFile = path.join(b.dir, 'remote.key');
  if (opts.keyFile !== 'missing') writeKeyFile(REAL_WRITES, keyFile, key);
  const remote = {
    server: '127.0.0.1',
    port: 9, // discard: never reached, every test here stops before connecting
    user: 'backup',
    destination: '/srv/backups',
    password: opts.password ?? encryptPassword('the password', key),
    keyFile,
    hostKey: `SHA256:${'A'.repeat(43)}`,
    sources: [path.join(b.dir, 'backups')],
  };
  const config = JSON.parse(readFileSync(b.config, 'utf8'));
  writeFileSync(b.config, JSON.stringify({ ...config, remote }), { mode: opts.configMode ?? 0o600 });
  chmodSync(b.config, opts.configMode ?? 0o600);
  return { ...b, keyFile };
}

describe('issue 13: what zshield says is true', () => {
  it('a hint names a command that works: a lost key file leads to keygen --ask-password', async () => {
    const b = remoteBox({ keyFile: 'missing' });
    const copy = run(['remote', 'copy', '-c', b.config], { env: b.env });
    expect(copy.code).toBe(5);
    expect(stderrLines(copy)[0]).toBe(`zshield: key file ${b.keyFile} does not exist`);
    const hint = /zshield (keygen[^ ()]*(?: --[a-z-]+)*)/.exec(stderrLines(copy)[1] ?? '');
    expect(hint?.[1]).toBe('keygen --ask-password');
    // What the old hint named fails in this situation, and says so with the same advice.
    const plain = run(['keygen', '--yes', '-c', b.config], { env: b.env });
    expect(plain.code).toBe(5);
    expect(plain.stderr).toMatch(/hint: .*zshield keygen --ask-password/);
    // The hinted command works: the password typed again (a prompter instead of a terminal).
    const ctx = testContext({ runner: new RecordingRunner(), dir: b.dir, clock: new FakeClock(new Date()) });
    const loaded = await loadConfig(b.config);
    ctx.config = loaded.config;
    ctx.configFile = b.config;
    const input = new PassThrough();
    input.end('new password\nnew password\n');
    const prompter = new StreamPrompter(input, new PassThrough());
    await runKeygen(ctx, { configFile: b.config, prompter, askPassword: true, yes: true });
    prompter.close();
    const stored = JSON.parse(readFileSync(b.config, 'utf8')).remote.password;
    expect(decryptPassword(stored, readKeyFile(b.keyFile), b.keyFile)).toBe('new password');
  });

  it('config check runs the checks remote copy makes: a password in a config readable by others', () => {
    const b = remoteBox({ configMode: 0o644 });
    const copy = run(['remote', 'copy', '-c', b.config], { env: b.env });
    expect(copy.code).toBe(6);
    expect(copy.stderr).toContain(`config file ${b.config} is accessible by group or others (mode 0644)`);
    const check = run(['config', 'check', '-c', b.config], { env: b.env });
    expect(check.code).toBe(3);
    expect(stderrLines(check)[0]).toBe(
      `zshield: config: ${b.config}: config file ${b.config} is accessible by group or others (mode 0644): refusing to use it`,
    );
    expect(stderrLines(check)[1]).toMatch(/^ {2}hint: chmod 600 /);
    expect(check.stdout).toBe('');
    chmodSync(b.config, 0o600);
    expect(run(['config', 'check', '-c', b.config], { env: b.env })).toMatchObject({
      code: 0,
      stdout: `config OK: ${b.config}\n`,
    });
  });

  it('config check runs the checks remote copy makes: a malformed v1: password', () => {
    // Matches the schema's pattern, too short to be a ciphertext.
    const b = remoteBox({ password: 'v1:0123abcd:AAAA' });
    const copy = run(['remote', 'copy', '-c', b.config], { env: b.env });
    expect(copy.code).toBe(3);
    expect(stderrLines(copy)[0]).toBe(
      'zshield: config: remote.password: is not a password encrypted by zshield',
    );
    const check = run(['config', 'check', '-c', b.config], { env: b.env });
    expect(check.code).toBe(3);
    expect(stderrLines(check)[0]).toBe(
      `zshield: config: ${b.config}: remote.password: is not a password encrypted by zshield`,
    );
    expect(stderrLines(check)[1]).toBe('  hint: set it with zshield config edit');
  });

  it('a repeated --reason is a usage error, nothing run; zshield_backup takes --reason once', () => {
    const b = box({ lvs: [ROOT, SNAP] });
    expectUsageError(
      run(['backup', '--reason', 'pre-upgrade', '--reason', 'daily', '--dry-run', '-c', b.config], {
        env: b.env,
      }),
      /^zshield: option --reason was given more than once: give it once$/,
    );
    expect(b.calls()).toEqual([]);
    const link = path.join(b.dir, 'zshield_backup.cjs');
    symlinkSync(BUNDLE, link);
    const r = run(['--reason', 'daily', '--dry-run', '-c', b.config], { env: b.env, argv0: [NODE, link] });
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('Back up vgroup/lv-root to snap0 (reason: daily)');
    expect(r.stdout).toContain('--addtag zshield_reason=daily ');
    expect(r.stdout).not.toMatch(/zshield_reason=[^ ]*,/);
  });

  it('--json on failure: a JSON error object on stdout, with the exit code', () => {
    const b = box();
    const expectJsonError = (r: Run, code: number, message: RegExp) => {
      expect(r.code).toBe(code);
      const j = JSON.parse(r.stdout);
      expect(Object.keys(j).slice(0, 3)).toEqual(['code', 'message', 'hint']);
      expect(j.code).toBe(code);
      expect(j.message).toMatch(message);
      expect(stderrLines(r)[0]).toBe(`zshield: ${j.message}`);
    };
    expectJsonError(
      run(['recover', 'factory', '--dry-run', '--json', '--target', 'NO-SUCH-DISK-0', '-c', b.config], {
        env: b.env,
      }),
      5,
      /NO-SUCH-DISK-0/,
    );
    expectJsonError(run(['remote', 'copy', '--json', '-c', b.config], { env: b.env }), 3, /remote\.server/);
    // Without --json, stdout stays empty.
    expect(run(['remote', 'copy', '-c', b.config], { env: b.env }).stdout).toBe('');
  });

  it('--config (or any option taking a value) with no value is a usage error', () => {
    expectUsageError(run(['config', 'check', '--config']), /^zshield: option --config needs a value$/);
    // Any option that takes a value: none is not "not given".
    expectUsageError(run(['backup', '--wait']), /^zshield: option --wait needs a value$/);
    expectUsageError(run(['recover', 'factory', '--target=']), /^zshield: option --target needs a value$/);
    expectUsageError(run(['config', 'show', '--config', '']), /^zshield: option --config needs a value$/);
  });

  it('--wait on a held lock: the hint does not ask for the --wait that was given', async () => {
    const b = box({ lvs: [ROOT, SNAP] });
    const lock = await acquireLvmLock({
      runDir: path.join(b.dir, 'run'),
      log: memoryLogger(),
      purpose: 'a test holding it',
      waitMs: 0,
    });
    try {
      // The error line and its hint (an info line saying it waits comes first).
      const errorOf = (r: Run) =>
        stderrLines(r).slice(stderrLines(r).findIndex((l) => l.startsWith('zshield: ')));
      const now = run(['backup', '-c', b.config], { env: b.env });
      expect(now.code).toBe(7);
      expect(errorOf(now)[0]).toMatch(/^zshield: LVM is locked by pid \d+ \(a test holding it/);
      expect(errorOf(now)[1]).toBe(
        '  hint: wait for it to finish, or pass --wait SECONDS to queue behind it',
      );
      const waited = run(['backup', '--wait', '1', '-c', b.config], { env: b.env });
      expect(waited.code).toBe(7);
      expect(errorOf(waited)[0]).toMatch(/^zshield: LVM is locked by pid \d+ \(a test holding it/);
      expect(waited.stderr).not.toContain('--wait');
      expect(errorOf(waited)[1]).toBe(
        '  hint: still held after waiting 1 s: wait for it to finish and run this again',
      );
    } finally {
      await lock.release();
    }
    expect(b.mutated()).toBe(false);
  });

  it('--verbose shows the commands status runs; config help names edit', () => {
    const b = box({ lvs: [ROOT, SNAP] });
    const r = run(['status', '--verbose', '-c', b.config], { env: b.env });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^debug: \$ vgs --reportformat json /m);
    expect(r.stderr).toMatch(/^debug: \$ lvs --reportformat json /m);
    expect(run(['status', '-c', b.config], { env: b.env }).stderr).toBe('');
    const help = run(['config', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/check, show or edit/);
    expect(help.stdout).toMatch(/zshield config edit/);
  });

  // Issue 20, the first heading: each through the built binary.
  it('golden update IMAGE -- CMD is not refused as "--command given more than once" (list options)', () => {
    const b = box();
    const image = path.join(b.dir, 'none.img.zst');
    for (const args of [
      ['golden', 'update', image, '--', 'touch', '/x'],
      ['golden', 'update', image, '--dry-run', '--', 'touch', '/x'],
    ]) {
      const r = run([...args, '-c', b.config], { env: b.env });
      expect(r.stderr).not.toMatch(/more than once/);
      expect(r.code).not.toBe(2);
    }
    // A scalar option given twice is still refused.
    expectUsageError(run(['status', '-c', b.config, '--config', b.config], { env: b.env }), /more than once/);
  });

  it('golden image key into a missing folder: one line naming the folder, exit 5, not "internal error: ENOENT"', () => {
    const b = box();
    const file = path.join(b.dir, 'no-such-folder', 'vendor.key');
    const r = run(['golden', 'image', 'key', file, '-c', b.config], { env: b.env });
    expect(r.code).toBe(5);
    // The plan's checks run first (its lines on stderr); the error names the folder.
    expect(stderrLines(r).filter((l) => l.startsWith('zshield: '))).toEqual([
      `zshield: the folder ${path.dirname(file)} does not exist`,
    ]);
    expect(r.stderr).not.toMatch(/ENOENT|internal error/);
  });

  it('exit codes by class: clone receive without --yes 6; an unknown history target 5 from every command', () => {
    const b = box({
      config: {
        history: {
          targets: [
            { name: 't1', server: '127.0.0.1', user: 'u', directory: '/srv/h', privateKey: '/nonexistent/k' },
          ],
        },
      },
    });
    // A box that trusts a vendor key (else the receive stops on the config first, exit 3).
    const key = path.join(b.dir, 'vendor.key');
    expect(run(['golden', 'image', 'key', key, '-c', b.config], { env: b.env }).code).toBe(0);
    const conf = JSON.parse(readFileSync(b.config, 'utf8'));
    conf.clone = { trustedKeys: [readFileSync(`${key}.pub`, 'utf8').trim()] };
    writeFileSync(b.config, JSON.stringify(conf));
    writeFileSync(path.join(b.dir, 'disk'), Buffer.alloc(4 * 1024 ** 2, 7));
    const receive = run(['clone', 'receive', '--target-file', path.join(b.dir, 'disk'), '-c', b.config], {
      env: b.env,
    });
    expect(receive.code).toBe(6);
    expect(receive.stderr).toMatch(/it needs confirmation/);
    expect(readFileSync(path.join(b.dir, 'disk')).every((x) => x === 7)).toBe(true);
    const replicate = run(['history', 'replicate', '--target', 'nosuch', '-c', b.config], { env: b.env });
    expect(replicate.code).toBe(5);
    expect(stderrLines(replicate)[0]).toBe('zshield: no history target named nosuch');
    const restore = run(
      ['history', 'restore', 'a'.repeat(64), path.join(b.dir, 'out'), '--from', 'nosuch', '-c', b.config],
      { env: b.env },
    );
    expect(restore.code).toBe(5);
    expect(stderrLines(restore)[0]).toBe('zshield: no history target named nosuch');
    expect(existsSync(path.join(b.dir, 'out'))).toBe(false);
  });

  it('config check says not OK for what the commands refuse: a target without a host key, key files 0644, a signing key missing or 0644', () => {
    const b = box();
    const key = path.join(b.dir, 'target.key');
    writeFileSync(key, 'not read: its mode is refused first\n', { mode: 0o644 });
    chmodSync(key, 0o644);
    const signing = path.join(b.dir, 'vendor.key');
    const cfg = (signingKey: string) => ({
      paths: { stateDir: path.join(b.dir, 'state'), runDir: path.join(b.dir, 'run') },
      log: { file: null },
      history: {
        targets: [{ name: 't1', server: '127.0.0.1', user: 'u', directory: '/srv/h', privateKey: key }],
      },
      clone: { signingKey },
    });
    writeFileSync(b.config, JSON.stringify(cfg(signing)), { mode: 0o600 });
    const missing = run(['config', 'check', '-c', b.config], { env: b.env });
    expect(missing.code).toBe(3);
    expect(missing.stdout).not.toMatch(/config OK/);
    expect(missing.stderr).toMatch(/history\.targets\[0\]\.hostKey: target t1: not set/);
    expect(missing.stderr).toMatch(new RegExp(`private key ${key} .*readable by others|${key}.*0?644`));
    expect(missing.stderr).toMatch(new RegExp(`signing key ${signing} does not exist`));
    writeFileSync(signing, 'x', { mode: 0o644 });
    chmodSync(signing, 0o644);
    const open = run(['config', 'check', '-c', b.config], { env: b.env });
    expect(open.code).toBe(3);
    expect(open.stderr).toMatch(new RegExp(`signing key ${signing} is readable by others`));
  });
});
