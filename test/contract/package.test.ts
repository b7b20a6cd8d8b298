// build/package.sh and the apt hook's command, as their callers run them (issue 25).
// - build/package.sh from a fresh clone of this checkout's commit (its node_modules linked in, no
//   network): exit 0, the .deb's path on its last line, every path the README's Install table
//   names inside it, and no lintian error; a usage error exits 2 and makes nothing. (What the
//   package holds file by file, lintian's warnings and dpkg/apt on it: test/host/package.test.ts.)
// - The DPkg::Pre-Invoke command of rc/zshield.apt.conf (read by apt-config), run by `sh -c` as apt
//   runs it, with the built binary as /usr/sbin/zshield in a root of its own (hard links of the
//   binary, sh and their libraries; /etc/zshield/zshield.conf the case's): in a chroot, in a
//   container, on a read-only root and where the config names no system disk it takes no backup
//   and exits 0; its dry run shows the backup it would take and changes nothing; a backup that
//   fails (this root has no LVM) lets the upgrade go on (exit 0, a warning on apt's terminal)
//   unless hooks.aptRequireBackup says stop (exit 6, which makes apt stop).
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { DRY_RUN_DONE } from '../../src/plan/plan.js';
import { SEA } from '../bundle.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string })
  .version;
const scratch: string[] = [];
afterAll(() => {
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});
const tempDir = (prefix: string) => {
  const d = mkdtempSync(`/tmp/${prefix}`);
  scratch.push(d);
  return d;
};

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}
const spawn = (
  file: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
) => {
  const r = spawnSync(file, args, {
    cwd: opts.cwd ?? REPO,
    env: opts.env ?? process.env,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: opts.timeoutMs ?? 110_000,
  });
  return {
    code: r.status,
    stdout: r.stdout ?? '',
    stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`,
  };
};
const show = (r: Ran) =>
  `exit ${r.code}\nstdout:\n${r.stdout.slice(-4000)}\nstderr:\n${r.stderr.slice(-4000)}`;

/** The paths the README's Install table names (first column), as they are in the package. */
function readmePackagePaths(): string[] {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Install\n'));
  const table = section.slice(0, section.indexOf('\n\n', section.indexOf('| path |')));
  const rows = table.split('\n').filter((l) => /^\| `\//.test(l));
  return rows.flatMap((r) => [...r.split('|')[1]!.matchAll(/`(\/[^`]+)`/g)].map((m) => m[1]!));
}

describe('build/package.sh', () => {
  it('--help exits 0 and says what it makes; a usage error exits 2 and makes nothing', () => {
    const help = spawn('bash', ['build/package.sh', '--help'], {});
    expect(help.code, show(help)).toBe(0);
    expect(help.stdout).toMatch(/^Build the Debian package: build\/out\/zshield_<version>_amd64\.deb/);
    expect(help.stdout).toContain('bash build/package.sh [--no-build]');
    for (const args of [['--bogus-option-x'], ['--no-build', 'x']]) {
      const r = spawn('bash', ['build/package.sh', ...args], {});
      expect(r.code, show(r)).toBe(ExitCode.usage);
      expect(r.stderr).toBe('usage: bash build/package.sh [--no-build]\n');
      expect(r.stdout).toBe('');
    }
  });

  it("from a fresh clone: the package on the last line, the README's paths in it, no lintian error", () => {
    const dir = tempDir('zshield-clone-');
    const clone = path.join(dir, 'zshield');
    const head = execFileSync('git', ['-C', REPO, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    // --shared: the checkout's objects, not a copy of them; the commit itself checked out.
    execFileSync('git', ['clone', '--quiet', '--shared', '--no-checkout', REPO, clone]);
    execFileSync('git', ['-C', clone, 'checkout', '--quiet', '--detach', head]);
    symlinkSync(realpathSync(path.join(REPO, 'node_modules')), path.join(clone, 'node_modules'));
    // It builds the binary (build/build.sh) first: minutes on a busy machine (a bound on a hang).
    const built = spawn('bash', ['build/package.sh'], { cwd: clone, timeoutMs: 1_500_000 });
    expect(built.code, show(built)).toBe(0);
    const debVersion = VERSION.replace(/-/g, '~');
    expect(built.stdout.trim().split('\n').at(-1)).toBe(`build/out/zshield_${debVersion}_amd64.deb`);
    const deb = path.join(clone, 'build/out', `zshield_${debVersion}_amd64.deb`);

    const listing = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8', maxBuffer: 16 << 20 });
    const inDeb = new Set(
      listing
        .split('\n')
        .filter(Boolean)
        .map((l) => l.replace(/^.*? \.(\/\S*)( -> .*)?$/, '$1').replace(/(.)\/$/, '$1')),
    );
    const named = readmePackagePaths();
    expect(named.length).toBeGreaterThan(8);
    expect(named.filter((p) => !inDeb.has(p.replace(/(.)\/$/, '$1')))).toEqual([]);

    // lintian leaves its ELF caches in TMPDIR: the clone's folder, removed with it.
    const lint = spawn('lintian', [deb], { env: { ...process.env, TMPDIR: dir }, timeoutMs: 900_000 });
    expect(
      lint.stdout.split('\n').filter((l) => l.startsWith('E: ')),
      show(lint),
    ).toEqual([]);
    expect(lint.code, show(lint)).toBe(0);
  }, 2_400_000);
});

/** The hook's command exactly as apt will run it (`sh -c`), from the apt config the package installs. */
function hookCommand(): string {
  const dump = execFileSync('apt-config', ['-c', path.join(REPO, 'rc/zshield.apt.conf'), 'dump'], {
    encoding: 'utf8',
  });
  const lines = [...dump.matchAll(/^DPkg::Pre-Invoke:: "(.*)";$/gm)].map((m) => m[1]!);
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

/**
 * A root with the built binary as /usr/sbin/zshield, sh, their libraries (hard links: nothing of
 * 100 MB copied), /dev/null (spawn's stdin), /proc (a mount point) and the config; no LVM tool.
 */
function hookRoot(config: object): string {
  const root = tempDir('zshield-hook-root-');
  const put = (from: string, to: string) => {
    const dest = path.join(root, to);
    mkdirSync(path.dirname(dest), { recursive: true });
    try {
      linkSync(realpathSync(from), dest);
    } catch {
      copyFileSync(realpathSync(from), dest);
    }
  };
  put(SEA, 'usr/sbin/zshield');
  put('/bin/sh', 'bin/sh');
  const ldd = execFileSync('ldd', [SEA, realpathSync('/bin/sh')], { encoding: 'utf8' });
  for (const lib of new Set([...ldd.matchAll(/(?:=> |^\s+)(\/\S+) \(/gm)].map((m) => m[1]!))) put(lib, lib);
  for (const d of ['proc', 'dev', 'tmp', 'etc/zshield']) mkdirSync(path.join(root, d), { recursive: true });
  execFileSync('mknod', ['-m', '666', path.join(root, 'dev/null'), 'c', '1', '3']);
  writeFileSync(
    path.join(root, 'etc/zshield/zshield.conf'),
    JSON.stringify({ log: { file: null }, ...config }),
  );
  return root;
}

const CLEAN_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' };
type Where = 'chroot' | 'container' | 'box' | 'read-only box';

/**
 * Run `sh -c COMMAND` in the root: in a chroot (PID 1's root is this host's), or as PID 1's own
 * root in a PID namespace of its own (what the hook sees on a box), with `container=podman` in PID
 * 1's environment (as systemd-nspawn and podman set it), or on a read-only bind mount of the root.
 */
function runIn(where: Where, root: string, command: string): Ran {
  const inBox = ['--pid', '--fork', '--mount-proc', `--root=${root}`, '/bin/sh', '-c', command];
  switch (where) {
    case 'chroot':
      return spawn('chroot', [root, '/bin/sh', '-c', command], { env: CLEAN_ENV });
    case 'container':
      return spawn('unshare', inBox, { env: { ...CLEAN_ENV, container: 'podman' } });
    case 'box':
      return spawn('unshare', inBox, { env: CLEAN_ENV });
    case 'read-only box':
      return spawn(
        'unshare',
        [
          '--mount',
          '--propagation',
          'private',
          '/bin/sh',
          '-ec',
          'mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; shift; exec unshare "$@"',
          'sh',
          root,
          ...inBox,
        ],
        { env: CLEAN_ENV },
      );
  }
}

describe("the apt hook's command as apt runs it (sh -c, DPkg::Pre-Invoke)", () => {
  const SET_UP = { disks: { system: { serial: 'CONTRACT-SYS-1' } }, hooks: { aptMinIntervalMinutes: 0 } };
  const cases: [string, Where, object, RegExp][] = [
    ['in a chroot', 'chroot', SET_UP, /running in a chroot \(no system of its own to back up\)/],
    ['in a container', 'container', SET_UP, /running in a container \(podman\)/],
    [
      'on a read-only root',
      'read-only box',
      SET_UP,
      /the root is read-only \(the golden medium\): nothing to back up/,
    ],
    [
      'where the config names no system disk',
      'box',
      {},
      /the config names no system disk \(disks\.system\.serial or \.wwn\): not set up yet/,
    ],
    [
      'with hooks.aptBackup false',
      'box',
      { ...SET_UP, hooks: { aptBackup: false } },
      /hooks\.aptBackup is false/,
    ],
  ];
  for (const [label, where, config, why] of cases) {
    it(`${label}: no backup, exit 0, the reason on apt's terminal`, () => {
      const r = runIn(where, hookRoot(config), hookCommand());
      expect(r.code, show(r)).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`^apt hook: no pre-upgrade backup: ${why.source}$`, 'm'));
      expect(r.stderr).not.toMatch(/taking a pre-upgrade backup/);
    });
  }

  it('its dry run on a box set up shows the backup it would take and changes nothing', () => {
    const root = hookRoot(SET_UP);
    const listing = () =>
      execFileSync('find', [root, '-path', `${root}/proc`, '-prune', '-o', '-printf', '%p %s %m\\n'], {
        encoding: 'utf8',
      });
    const before = listing();
    const r = runIn('box', root, `${hookCommand().replace(/ apt-hook;/, ' apt-hook --dry-run;')}`);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toMatch(/^apt hook: a pre-upgrade restore point \(there is no valid restore point\)$/m);
    expect(r.stdout).toContain('backup --reason pre-upgrade');
    expect(`${r.stdout}\n${r.stderr}`).toContain(DRY_RUN_DONE);
    expect(listing()).toBe(before);
  });

  it('a failed backup: the upgrade goes on (exit 0, a warning) unless hooks.aptRequireBackup stops it (exit 6)', () => {
    const goesOn = runIn('box', hookRoot(SET_UP), hookCommand());
    expect(goesOn.code, show(goesOn)).toBe(0);
    expect(goesOn.stderr).toMatch(
      /^zshield: WARNING: no restore point was taken before this upgrade: required tool not found: lvs, vgs$/m,
    );
    const required = { ...SET_UP, hooks: { ...SET_UP.hooks, aptRequireBackup: true } };
    const stops = runIn('box', hookRoot(required), hookCommand());
    expect(stops.code, show(stops)).toBe(ExitCode.refused);
    expect(stops.stderr).toMatch(
      /^zshield: the pre-upgrade backup failed \(required tool not found: lvs, vgs\): the upgrade is stopped$/m,
    );
  });
});
