import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { renderConfig } from '../../src/config/render.js';
import { defaultConfig } from '../../src/config/schema.js';
import { ConfigError } from '../../src/errors.js';
import { missingSettings } from '../../src/config/remote.js';
import { writeRemoteSection } from '../../src/remote/config-file.js';
import { copyAfterJob } from '../../src/remote/copy.js';
import { remoteTarget } from '../../src/ssh/credentials.js';
import { encryptPassword, newKey } from '../../src/system/secrets.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { REAL_WRITES } from '../../src/system/writes.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir('zshield-remote-config-'));
});
afterEach(() => cleanup());

const problemsOf = (remote: object): string[] => {
  try {
    parseConfigText(JSON.stringify({ remote }), 'zshield.conf');
    return [];
  } catch (err) {
    return (err as ConfigError).problems.map((p) => `${p.where}: ${p.message}`);
  }
};

describe('the remote section of the config', () => {
  it('has safe defaults: disabled, nothing to connect to, limit 5', () => {
    const r = defaultConfig().remote;
    expect(r).toMatchObject({
      enabled: false,
      server: null,
      port: 22,
      user: null,
      destination: null,
      password: null,
      keyFile: '/etc/zshield/remote.key',
      privateKey: null,
      hostKey: null,
      limit: 5,
      bandwidthKiBps: null,
      retries: 3,
      sources: ['/diskbackup'],
    });
    expect(missingSettings(r)).toEqual([
      'remote.server',
      'remote.user',
      'remote.destination',
      'remote.password or remote.privateKey',
    ]);
    // `config show` prints it as the file would hold it.
    expect((renderConfig(defaultConfig()) as { remote: unknown }).remote).toEqual(r);
  });

  it('accepts a complete section', () => {
    expect(
      problemsOf({
        enabled: true,
        server: 'backup.example.com',
        port: 2222,
        user: 'cvpadmin',
        destination: '/data/backups/',
        password: encryptPassword('x', newKey()),
        hostKey: 'SHA256:2Prc1jayxcueHpzw8bQTHPOO5bh0A3c5MUfJiAlbJmI',
        limit: 7,
        bandwidthKiBps: 512,
      }),
    ).toEqual([]);
    expect(problemsOf({ server: '10.10.10.10' })).toEqual([]);
    expect(problemsOf({ server: 'fe80::1' })).toEqual([]);
  });

  it.each([
    [{ server: 'root@host' }, /remote\.server: must be a host name or an IP address/],
    [{ server: 'host:22' }, /remote\.server: must be a host name/],
    [{ port: 0 }, /remote\.port/],
    [{ port: 70000 }, /remote\.port/],
    [{ user: 'a b' }, /remote\.user: must be a user name/],
    [{ destination: 'backups' }, /remote\.destination: must be an absolute path/],
    [
      { password: 'gAAAAABg7xoT7PVgqYI5c69wQyPeG' },
      /remote\.password: must be a password encrypted by zshield/,
    ],
    [{ hostKey: 'aa:bb:cc' }, /remote\.hostKey: must be an OpenSSH fingerprint/],
    [{ limit: 0 }, /remote\.limit/],
    [{ limit: 2.5 }, /remote\.limit/],
    [{ bandwidthKiBps: -1 }, /remote\.bandwidthKiBps/],
    [{ sources: [] }, /remote\.sources/],
    [{ sources: ['relative'] }, /remote\.sources\.0: must be an absolute path/],
    [{ ini: './backup.ini' }, /remote: unknown setting\(s\): ini/],
  ])('refuses %j', (remote, message) => {
    const problems = problemsOf(remote);
    expect(problems.join('\n')).toMatch(message);
  });

  it('remoteTarget names every missing setting (a config error, exit 3)', () => {
    const ctx = testContext({ runner: new RecordingRunner(), dir, clock: new FakeClock(new Date()) });
    ctx.config.remote.server = 'h';
    let err: unknown;
    try {
      remoteTarget(ctx);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => p.where)).toEqual([
      'config: remote.user',
      'config: remote.destination',
      'config: remote.password or remote.privateKey',
    ]);
  });
});

describe('writeRemoteSection', () => {
  it('rewrites only the remote section, validated, atomically, mode 0600', () => {
    const file = path.join(dir, 'zshield.conf');
    writeFileSync(file, JSON.stringify({ lvm: { vg: 'vg0' }, log: { level: 'debug' } }), { mode: 0o644 });
    const r = { ...defaultConfig().remote, server: 'h', user: 'u', destination: '/d' };
    writeRemoteSection(REAL_WRITES, file, r);
    const raw = JSON.parse(readFileSync(file, 'utf8'));
    expect(raw.lvm).toEqual({ vg: 'vg0' });
    expect(raw.log).toEqual({ level: 'debug' });
    expect(raw.remote.server).toBe('h');
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('creates a missing file', () => {
    const file = path.join(dir, 'etc', 'zshield.conf');
    writeRemoteSection(REAL_WRITES, file, { ...defaultConfig().remote, limit: 9 });
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({
      remote: { ...defaultConfig().remote, limit: 9 },
    });
  });

  it('never overwrites a broken file, and never writes an invalid section', () => {
    const file = path.join(dir, 'zshield.conf');
    writeFileSync(file, '{ "lvm": { "vg": "bad name" } }', { mode: 0o600 });
    chmodSync(file, 0o600);
    expect(() => writeRemoteSection(REAL_WRITES, file, defaultConfig().remote)).toThrow(ConfigError);
    expect(readFileSync(file, 'utf8')).toBe('{ "lvm": { "vg": "bad name" } }');
    writeFileSync(file, '{}', { mode: 0o600 });
    expect(() => writeRemoteSection(REAL_WRITES, file, { ...defaultConfig().remote, port: -1 })).toThrow();
    expect(readFileSync(file, 'utf8')).toBe('{}');
  });
});

describe('copyAfterJob (for the daemon)', () => {
  it('does nothing when disabled or not asked for after this job', async () => {
    const ctx = testContext({ runner: new RecordingRunner(), dir, clock: new FakeClock(new Date()) });
    expect(await copyAfterJob(ctx, 'backup')).toBeNull();
    ctx.config.remote.enabled = true;
    ctx.config.remote.after = ['image'];
    expect(await copyAfterJob(ctx, 'backup')).toBeNull();
    expect(ctx.log.lines).toEqual([]);
  });

  it('logs a failed copy instead of failing the job', async () => {
    const ctx = testContext({ runner: new RecordingRunner(), dir, clock: new FakeClock(new Date()) });
    ctx.config.remote.enabled = true;
    expect(await copyAfterJob(ctx, 'image')).toBeNull();
    expect(ctx.log.lines.join('\n')).toMatch(
      /error: remote copy after the image failed: config: .*remote\.server/,
    );
  });
});
