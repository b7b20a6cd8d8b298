// The Debian package as build/package.sh makes it: what it holds, where, with which modes; its
// control fields and maintainer scripts; the man page and bash completion generated from the
// command tree; lintian's verdict (no error; no warning beyond build/debian/lintian-warnings.txt).
// In the host project (run once by build/check.sh) rather than the unit project: packing the
// 100 MB binary and lintian's look at it take about a minute on an idle machine (build/check.sh
// has built the binary already; package.sh rebuilds it only when a source is newer).
import { execFileSync, spawnSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = path.resolve(import.meta.dirname, '../..');
const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string })
  .version;
const run = (file: string, args: string[], opts: { cwd?: string } = {}) =>
  execFileSync(file, args, { cwd: opts.cwd ?? REPO, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });

let deb = '';
let tree = '';

beforeAll(() => {
  const out = run('bash', ['build/package.sh', '--no-build']).trim().split('\n');
  deb = path.resolve(REPO, out.at(-1)!);
  tree = mkdtempSync(path.join(tmpdir(), 'zshield-deb-test-'));
  run('dpkg-deb', ['-x', deb, tree]);
  run('dpkg-deb', ['-e', deb, path.join(tree, 'DEBIAN')]);
}, 900_000);

afterAll(() => {
  if (tree) rmSync(tree, { recursive: true, force: true });
});

describe('build/package.sh', () => {
  it('names the package from package.json and fills its control fields', () => {
    expect(path.basename(deb)).toBe(`zshield_${VERSION.replace(/-/g, '~')}_amd64.deb`);
    const field = (f: string) => run('dpkg-deb', ['-f', deb, f]).trim();
    expect(field('Package')).toBe('zshield');
    expect(field('Version')).toBe(VERSION.replace(/-/g, '~'));
    expect(field('Architecture')).toBe('amd64');
    // dpkg-shlibdeps' libraries of the Node runtime, then the tools zshield drives.
    expect(field('Depends')).toMatch(/^libc6 \(>= [\d.]+\).*, lvm2, rsync, e2fsprogs$/);
  });

  it('puts each file where the README says, with its mode', () => {
    const listing = run('dpkg-deb', ['-c', deb]);
    const entry = (p: string) =>
      listing.split('\n').find((l) => l.endsWith(` ./${p}`) || l.includes(` ./${p} -> `));
    const expectations: [string, RegExp][] = [
      ['usr/sbin/zshield', /^-rwxr-xr-x root\/root/],
      ['usr/sbin/zshield_backup', /^lrwxrwxrwx root\/root .* -> zshield$/],
      ['lib/systemd/system/zshield.service', /^-rw-r--r--/],
      ['lib/systemd/system/zshield-boot.service', /^-rw-r--r--/],
      ['etc/grub.d/40_zshield', /^-rwxr-xr-x/],
      ['etc/zshield/zshield.conf', /^-rw-r--r--/],
      ['etc/apt/apt.conf.d/80zshield', /^-rw-r--r--/],
      ['usr/share/man/man8/zshield.8.gz', /^-rw-r--r--/],
      ['usr/share/man/man8/zshield_backup.8.gz', /-> zshield\.8\.gz$/],
      ['usr/share/bash-completion/completions/zshield', /^-rw-r--r--/],
      ['usr/share/doc/zshield/README.md.gz', /^-rw-r--r--/],
      ['usr/share/doc/zshield/examples/rc.local.snippet', /^-rw-r--r--/],
      ['usr/share/doc/zshield/examples/zshield-alerts.rules.yml', /^-rw-r--r--/],
      ['usr/share/doc/zshield/copyright', /^-rw-r--r--/],
      ['usr/share/doc/zshield/changelog.gz', /^-rw-r--r--/],
      ['usr/share/lintian/overrides/zshield', /^-rw-r--r--/],
    ];
    for (const [p, mode] of expectations) expect(entry(p), p).toMatch(mode);
    expect(readlinkSync(path.join(tree, 'usr/sbin/zshield_backup'))).toBe('zshield');
  });

  it('ships the units, the grub.d script, the config and the apt hook as they are in the repository', () => {
    const same = (inDeb: string, inRepo: string) =>
      expect(readFileSync(path.join(tree, inDeb), 'utf8'), inDeb).toBe(
        readFileSync(path.join(REPO, inRepo), 'utf8'),
      );
    same('lib/systemd/system/zshield.service', 'rc/zshield.service');
    same('lib/systemd/system/zshield-boot.service', 'rc/zshield-boot.service');
    same('etc/grub.d/40_zshield', 'grub/40_zshield');
    same('etc/zshield/zshield.conf', 'rc/zshield.conf.example');
    same('etc/apt/apt.conf.d/80zshield', 'rc/zshield.apt.conf');
    expect(readFileSync(path.join(tree, 'DEBIAN/conffiles'), 'utf8').trim().split('\n').sort()).toEqual([
      '/etc/apt/apt.conf.d/80zshield',
      '/etc/grub.d/40_zshield',
      '/etc/zshield/zshield.conf',
    ]);
    // The binary inside is this version (it runs on the host: same architecture).
    expect(run(path.join(tree, 'usr/sbin/zshield'), ['--version']).trim()).toBe(VERSION);
  });

  it('has maintainer scripts sh can read, none of which takes a backup or touches LVM', () => {
    for (const s of ['postinst', 'prerm', 'postrm']) {
      const file = path.join(tree, 'DEBIAN', s);
      expect(statSync(file).mode & 0o777, s).toBe(0o755);
      expect(spawnSync('sh', ['-n', file]).status, s).toBe(0);
      const text = readFileSync(file, 'utf8');
      expect(text, s).not.toMatch(/\b(lvcreate|lvremove|lvconvert|zshield backup|zshield_backup)\b/);
    }
    const postinst = readFileSync(path.join(tree, 'DEBIAN/postinst'), 'utf8');
    // The daemon is started; the boot hook is enabled, never started.
    expect(postinst).toMatch(/deb-systemd-invoke "\$_dsi_action" zshield\.service/);
    expect(postinst).not.toMatch(/deb-systemd-invoke \S+ zshield-boot/);
    expect(readFileSync(path.join(tree, 'DEBIAN/postrm'), 'utf8')).toMatch(
      /purge\)[\s\S]*rm -rf \/etc\/zshield/,
    );
  });

  it('has a man page and a bash completion that name every command of the tree', () => {
    const man = gunzipSync(readFileSync(path.join(tree, 'usr/share/man/man8/zshield.8.gz'))).toString();
    expect(man).toMatch(/^\.TH ZSHIELD 8 "" "zshield /);
    const help = run(path.join(tree, 'usr/sbin/zshield'), ['--help']);
    const commands = [...help.matchAll(/^ {2}zshield (\S+)/gm)].map((m) => m[1]!);
    expect(commands.length).toBeGreaterThan(8);
    for (const c of commands) expect(man, c).toContain(`.B zshield ${c.replace(/-/g, '\\-')}`);
    // man(1) renders it without a warning.
    const rendered = spawnSync('man', ['--warnings', '-l', '-'], {
      input: man,
      encoding: 'utf8',
      env: { ...process.env, MANWIDTH: '100', MAN_KEEP_FORMATTING: '' },
    });
    if (rendered.error === undefined && rendered.status === 0) expect(rendered.stderr).toBe('');
    const completion = path.join(tree, 'usr/share/bash-completion/completions/zshield');
    const complete = (line: string) => {
      const words = line.split(' ');
      const script = `source ${completion}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _zshield; printf '%s\\n' "\${COMPREPLY[@]}"`;
      return run('bash', ['-c', script]).trim().split('\n');
    };
    expect(complete('zshield ')).toEqual(expect.arrayContaining(commands));
    expect(complete('zshield image ')).toEqual(expect.arrayContaining(['create', 'verify']));
    expect(complete('zshield backup --r')).toEqual(['--reason']);
    expect(complete('zshield --dry-run image ver')).toEqual(['verify']);
  });

  it("apt reads the hook's config: DPkg::Pre-Invoke runs zshield apt-hook when the binary is there", () => {
    const dump = run('apt-config', ['-c', path.join(tree, 'etc/apt/apt.conf.d/80zshield'), 'dump']);
    expect(dump).toContain(
      'DPkg::Pre-Invoke:: "if [ -x /usr/sbin/zshield ]; then /usr/sbin/zshield apt-hook; fi";',
    );
  });

  it("the packaged binary's apt hook decides from its config, and the job rewrites the metrics file", () => {
    const work = path.join(tree, 'work');
    const textfile = path.join(work, 'textfile', 'zshield.prom');
    mkdirSync(path.dirname(textfile), { recursive: true });
    const config = (hooks: object, serial: string | null) => {
      const file = path.join(work, 'zshield.conf');
      writeFileSync(
        file,
        JSON.stringify({
          hooks,
          disks: { system: { serial } },
          metrics: { textfile },
          log: { file: null },
          paths: {
            stateDir: path.join(work, 'state'),
            runDir: path.join(work, 'run'),
            eventLog: path.join(work, 'boot', 'events.jsonl'),
          },
        }),
      );
      return file;
    };
    const hook = (conf: string) => {
      const r = spawnSync(path.join(tree, 'usr/sbin/zshield'), ['-c', conf, 'apt-hook', '--json'], {
        encoding: 'utf8',
      });
      return { status: r.status, json: JSON.parse(r.stdout) as Record<string, unknown>, stderr: r.stderr };
    };
    const off = hook(config({ aptBackup: false }, 'SYS-1'));
    expect(off).toMatchObject({
      status: 0,
      json: { action: 'skip', why: 'hooks.aptBackup is false', result: 'skipped', error: null },
    });
    // This host is a container (or the config names no disk): either way no backup is taken.
    const notSetUp = hook(config({}, null));
    expect(notSetUp.status).toBe(0);
    expect(notSetUp.json).toMatchObject({ action: 'skip', result: 'skipped' });
    expect(String(notSetUp.json['why'])).toMatch(/container|chroot|names no system disk/);
    // The job left the metrics file (status's data), and promtool reads it clean.
    const promtool = run('bash', ['build/promtool.sh']).trim();
    const check = spawnSync(promtool, ['check', 'metrics'], {
      input: readFileSync(textfile),
      encoding: 'utf8',
    });
    expect(`${check.stdout}${check.stderr}`).toBe('');
    expect(check.status).toBe(0);
    expect(readFileSync(textfile, 'utf8')).toContain(`zshield_info{version="${VERSION}"} 1`);
    expect(readdirSync(path.dirname(textfile))).toEqual(['zshield.prom']);
  });

  it('dpkg installs, upgrades, removes and purges it with its maintainer scripts; apt runs its hook (in a throwaway root)', () => {
    // test/host/dpkg-root.sh: an overlay of this host's / in a mount namespace of its own.
    const out = path.join(tree, 'dpkg-root');
    mkdirSync(out);
    run('unshare', ['-m', '--propagation', 'private', 'bash', 'test/host/dpkg-root.sh', deb, out]);
    const step = (name: string) =>
      Object.fromEntries(
        readFileSync(path.join(out, `${name}.txt`), 'utf8')
          .trim()
          .split('\n')
          .map((l) => [l.split(' ')[0]!, l.slice(l.indexOf(' ') + 1)]),
      );
    const wants = 'etc/systemd/system/multi-user.target.wants';
    const installed = {
      'usr/sbin/zshield': '755',
      'usr/sbin/zshield_backup': 'link zshield',
      'etc/zshield/zshield.conf': '644',
      'etc/apt/apt.conf.d/80zshield': '644',
      'etc/grub.d/40_zshield': '755',
      'lib/systemd/system/zshield.service': '644',
      'var/lib/zshield': '700',
      'var/log/zshield': '750',
      // Both units enabled (deb-systemd-helper); nothing started: this root runs no systemd.
      [`${wants}/zshield.service`]: 'link /lib/systemd/system/zshield.service',
      [`${wants}/zshield-boot.service`]: 'link /lib/systemd/system/zshield-boot.service',
      status: 'install ok installed',
    };
    expect(step('installed')).toMatchObject(installed);
    expect(step('upgraded')).toMatchObject(installed);
    expect(readFileSync(path.join(out, 'install.log'), 'utf8')).not.toMatch(/update-grub|warning|error/i);
    // apt ran the hook once per apt run that called dpkg; in a chroot it took no backup, and said so
    // on apt's terminal and in zshield's log.
    const hookLines = (i: number) => Number(readFileSync(path.join(out, `apt-hook-count-${i}.txt`), 'utf8'));
    expect([hookLines(1), hookLines(2)]).toEqual([1, 2]);
    expect(readFileSync(path.join(out, 'apt-1.log'), 'utf8')).toContain(
      'apt hook: no pre-upgrade backup: running in a chroot (no system of its own to back up)',
    );
    // Remove: the daemon's files go; config (the admin's edit kept) and data stay.
    expect(step('removed')).toMatchObject({
      'usr/sbin/zshield': 'absent',
      'lib/systemd/system/zshield.service': 'absent',
      'etc/zshield/zshield.conf': '644',
      config: '{"log":{"level":"debug"}}',
      'var/lib/zshield': '700',
      status: 'deinstall ok config-files',
    });
    // Purge: the config goes (and the conffiles, and the units' enablement); the data stays.
    expect(step('purged')).toMatchObject({
      'etc/zshield/zshield.conf': 'absent',
      'etc/apt/apt.conf.d/80zshield': 'absent',
      'etc/grub.d/40_zshield': 'absent',
      [`${wants}/zshield.service`]: 'absent',
      'var/lib/zshield': '700',
      status: '',
    });
  });

  it('passes lintian: no error, no warning beyond the listed ones', () => {
    // lintian leaves its ELF caches (mldbm-elf-*) in TMPDIR: one of the test's own, removed with it.
    const tmp = path.join(tree, 'lintian-tmp');
    mkdirSync(tmp);
    const r = spawnSync('lintian', ['--pedantic', deb], {
      encoding: 'utf8',
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, TMPDIR: tmp },
    });
    const tags = r.stdout.split('\n').filter((l) => /^[EWIPX]: /.test(l));
    expect(tags.filter((l) => l.startsWith('E: '))).toEqual([]);
    const listed = readFileSync(path.join(REPO, 'build/debian/lintian-warnings.txt'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('#'));
    const warnings = tags.filter((l) => l.startsWith('W: ')).map((l) => l.replace(/^W: zshield: /, ''));
    expect(warnings.filter((w) => !listed.includes(w))).toEqual([]);
    // An override lintian no longer needs would hide nothing: keep the list honest.
    expect(tags.filter((l) => /unused-override|mismatched-override/.test(l))).toEqual([]);
  }, 600_000);
});
