import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { InterruptedError, UsageError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log/logger.js';
import type { RemoteConfig } from '../../src/config/remote.js';
import { editRemoteSettings } from '../../src/remote/editor.js';
import { runKeygen } from '../../src/remote/keygen.js';
import { DRY_RUN_DONE } from '../../src/plan/plan.js';
import { askNewPassword, StreamPrompter } from '../../src/system/prompt.js';
import {
  decryptPassword,
  encryptPassword,
  keyId,
  newKey,
  pendingKeyFile,
  readKeyFile,
  writeKeyFile,
} from '../../src/system/secrets.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { REAL_WRITES, writesFor } from '../../src/system/writes.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir('zshield-remote-editor-'));
});
afterEach(() => cleanup());

/** A prompter fed from a script of lines (a pipe, not a terminal), with what it printed. */
function scripted(lines: string[], signal?: AbortSignal) {
  const input = new PassThrough();
  const output = new PassThrough();
  let shown = '';
  output.on('data', (d) => {
    shown += d;
  });
  input.end(lines.map((l) => `${l}\n`).join(''));
  const p = new StreamPrompter(input, output, signal);
  return { p, shown: () => shown };
}

describe('StreamPrompter', () => {
  it('reads lines typed ahead one per question, CR LF or LF', async () => {
    const input = new PassThrough();
    const p = new StreamPrompter(input, new PassThrough());
    input.write('one\r\ntwo\n  three  \n');
    expect(await p.line('a? ')).toBe('one');
    expect(await p.line('b? ')).toBe('two');
    expect(await p.line('c? ')).toBe('three');
    input.end();
    await expect(p.line('d? ')).rejects.toThrow(UsageError);
    p.close();
  });

  it('an abort (SIGINT) while waiting cancels', async () => {
    const ac = new AbortController();
    const input = new PassThrough();
    const p = new StreamPrompter(input, new PassThrough(), ac.signal);
    const pending = p.line('q? ');
    ac.abort();
    await expect(pending).rejects.toThrow(InterruptedError);
    p.close();
  });

  it('asks a new password twice; a mismatch asks again; three mismatches give up', async () => {
    const { p } = scripted(['a', 'b', 'c', 'c']);
    expect(await askNewPassword(p)).toBe('c');
    const { p: q } = scripted(['a', 'b', 'a', 'b', 'a', 'b']);
    await expect(askNewPassword(q)).rejects.toThrow(/did not match three times/);
  });
});

function setUp(remote: Partial<RemoteConfig> = {}) {
  const configFile = path.join(dir, 'zshield.conf');
  const keyFile = path.join(dir, 'remote.key');
  const r: RemoteConfig = { ...defaultConfig().remote, keyFile, ...remote };
  writeFileSync(configFile, `${JSON.stringify({ log: { file: null }, remote: r }, null, 2)}\n`, {
    mode: 0o600,
  });
  return { configFile, keyFile, remote: r };
}

const fileRemote = (configFile: string): RemoteConfig => JSON.parse(readFileSync(configFile, 'utf8')).remote;

describe('config edit', () => {
  it('sets every setting, validates each answer, encrypts the password with a new key file', async () => {
    const { configFile, keyFile, remote } = setUp();
    const { p, shown } = scripted([
      'y',
      'backup.example.com', // server
      '70000', // port: refused
      '2222',
      'cvp', // user
      'data', // destination: refused (relative)
      '/data/cvpbackups',
      'y', // change password
      "s3cr3t 'pw'",
      "s3cr3t 'pw'",
      '', // keyFile kept
      '-', // privateKey cleared (already none)
      '', // hostKey
      '7', // limit
      '256', // bandwidth
      '', // retries
      '0', // verifyCycle: refused
      '3', // verifyCycle
      '/diskbackup, /var/backups', // sources
      'yes', // enabled
      'y', // write
    ]);
    const log = memoryLogger();
    const out = await editRemoteSettings({ prompter: p, remote, configFile, log, writes: REAL_WRITES });
    expect(out.written).toBe(true);
    const r = fileRemote(configFile);
    expect(r).toMatchObject({
      server: 'backup.example.com',
      port: 2222,
      user: 'cvp',
      destination: '/data/cvpbackups',
      limit: 7,
      bandwidthKiBps: 256,
      verifyCycle: 3,
      sources: ['/diskbackup', '/var/backups'],
      enabled: true,
    });
    expect(decryptPassword(r.password!, readKeyFile(keyFile), keyFile)).toBe("s3cr3t 'pw'");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(configFile).mode & 0o777).toBe(0o600);
    const text = shown();
    expect(text).toMatch(/port: Too big.*try again/);
    expect(text).toMatch(/destination: must be an absolute path; try again/);
    expect(text).toMatch(/verifyCycle: .*try again/);
    expect(text).toMatch(/password\s+: \(not set\)/);
    expect(text).toMatch(/password\s+: \(set, encrypted\)/);
    // Neither the password nor its ciphertext is ever shown.
    expect(text).not.toContain('s3cr3t');
    expect(text).not.toContain(r.password!);
    expect(log.lines.join('\n')).not.toContain('s3cr3t');
  });

  it('"n" at the start changes nothing; "n" at the end writes nothing', async () => {
    const { configFile, remote } = setUp({ server: 'h' });
    const before = readFileSync(configFile, 'utf8');
    const a = scripted(['n']);
    expect(
      (
        await editRemoteSettings({
          prompter: a.p,
          remote,
          configFile,
          log: memoryLogger(),
          writes: REAL_WRITES,
        })
      ).written,
    ).toBe(false);
    expect(a.shown()).toMatch(/No changes\./);
    const b = scripted(['y', 'other', '', '', '', 'n', '', '', '', '', '', '', '', '', '', 'n']);
    expect(
      (
        await editRemoteSettings({
          prompter: b.p,
          remote,
          configFile,
          log: memoryLogger(),
          writes: REAL_WRITES,
        })
      ).written,
    ).toBe(false);
    expect(b.shown()).toMatch(/Not written\./);
    expect(readFileSync(configFile, 'utf8')).toBe(before);
  });

  it("a new server clears the pinned host key (it was the old server's)", async () => {
    const pinned = 'SHA256:2Prc1jayxcueHpzw8bQTHPOO5bh0A3c5MUfJiAlbJmI';
    const { configFile, remote } = setUp({ server: 'old', hostKey: pinned });
    const s = scripted(['y', 'new', '', '', '', 'n', '', '', '', '', '', '', '', '', '', 'y']);
    await editRemoteSettings({ prompter: s.p, remote, configFile, log: memoryLogger(), writes: REAL_WRITES });
    expect(fileRemote(configFile)).toMatchObject({ server: 'new', hostKey: null });
    expect(s.shown()).toMatch(/zshield remote trust/);
  });

  it('a new key file path re-encrypts the stored password with that key', async () => {
    const { configFile, keyFile, remote: base } = setUp();
    const key = newKey();
    writeKeyFile(REAL_WRITES, keyFile, key);
    const remote = { ...base, password: encryptPassword('pw', key) };
    const other = path.join(dir, 'other.key');
    const s = scripted(['y', '', '', '', '', 'n', other, '', '', '', '', '', '', '', '', 'y']);
    await editRemoteSettings({ prompter: s.p, remote, configFile, log: memoryLogger(), writes: REAL_WRITES });
    const r = fileRemote(configFile);
    expect(r.keyFile).toBe(other);
    expect(decryptPassword(r.password!, readKeyFile(other), other)).toBe('pw');
  });

  it('a private key path is checked as it is entered: missing or readable by others is a warning', async () => {
    const { configFile, remote } = setUp({ server: 'h' });
    const open = path.join(dir, 'id_open');
    writeFileSync(open, 'key', { mode: 0o644 });
    const s = scripted([
      'y',
      '',
      '',
      '',
      '',
      'n',
      '',
      path.join(dir, 'id_none'),
      '',
      '',
      '',
      '',
      '',
      '',
      '',
      'n',
    ]);
    await editRemoteSettings({ prompter: s.p, remote, configFile, log: memoryLogger(), writes: REAL_WRITES });
    expect(s.shown()).toMatch(/warning: private key .*id_none does not exist/);
    const t = scripted(['y', '', '', '', '', 'n', '', open, '', '', '', '', '', '', '', 'n']);
    await editRemoteSettings({ prompter: t.p, remote, configFile, log: memoryLogger(), writes: REAL_WRITES });
    expect(t.shown()).toMatch(
      /warning: private key .*id_open is accessible by group or others \(mode 0644\)/,
    );
  });

  it('dry-run shows the result and writes nothing', async () => {
    const { configFile, keyFile, remote } = setUp();
    const before = readFileSync(configFile, 'utf8');
    const s = scripted(['y', 'h', '', '', '', 'y', 'pw', 'pw', '', '', '', '', '', '', '', '', '']);
    await editRemoteSettings({
      prompter: s.p,
      remote,
      configFile,
      log: memoryLogger(),
      writes: writesFor(true),
    });
    expect(readFileSync(configFile, 'utf8')).toBe(before);
    expect(existsSync(keyFile)).toBe(false);
    expect(s.shown()).toMatch(/dry run: .* not written/);
  });
});

describe('keygen', () => {
  function ctxWith(configFile: string, remote: RemoteConfig) {
    const ctx = testContext({ runner: new RecordingRunner(), dir, clock: new FakeClock(new Date()) });
    ctx.config.remote = remote;
    ctx.configFile = configFile;
    return ctx;
  }

  it('replaces the key and re-encrypts the password; nothing pending is left', async () => {
    const { configFile, keyFile, remote: base } = setUp();
    const old = newKey();
    writeKeyFile(REAL_WRITES, keyFile, old);
    const remote = { ...base, password: encryptPassword('pw', old) };
    writeFileSync(configFile, JSON.stringify({ remote }), { mode: 0o600 });
    const ctx = ctxWith(configFile, remote);
    await runKeygen(ctx, { configFile, prompter: null, askPassword: false, yes: true });
    const key = readKeyFile(keyFile);
    expect(key.equals(old)).toBe(false);
    const r = fileRemote(configFile);
    expect(r.password!.startsWith(`v1:${keyId(key)}:`)).toBe(true);
    expect(decryptPassword(r.password!, key, keyFile)).toBe('pw');
    expect(existsSync(pendingKeyFile(keyFile))).toBe(false);
    expect(ctx.printed.join('\n')).toContain(`key id ${keyId(key)}`);
  });

  it('a config that cannot be written leaves the old key file and no pending key', async () => {
    const { configFile, keyFile, remote: base } = setUp();
    const old = newKey();
    writeKeyFile(REAL_WRITES, keyFile, old);
    const remote = { ...base, password: encryptPassword('pw', old) };
    // The file on disk is broken: writeRemoteSection refuses to overwrite it.
    writeFileSync(configFile, '{ broken', { mode: 0o600 });
    const ctx = ctxWith(configFile, remote);
    await expect(
      runKeygen(ctx, { configFile, prompter: null, askPassword: false, yes: true }),
    ).rejects.toThrow();
    expect(readKeyFile(keyFile).equals(old)).toBe(true);
    expect(existsSync(pendingKeyFile(keyFile))).toBe(false);
  });

  it('without --yes and without a terminal it refuses; dry-run changes nothing', async () => {
    const { configFile, keyFile, remote } = setUp();
    writeKeyFile(REAL_WRITES, keyFile, newKey());
    const before = readFileSync(keyFile, 'utf8');
    const ctx = ctxWith(configFile, remote);
    await expect(
      runKeygen(ctx, { configFile, prompter: null, askPassword: false, yes: false }),
    ).rejects.toThrow(/confirm with --yes/);
    ctx.dryRun = true;
    await runKeygen(ctx, { configFile, prompter: null, askPassword: false, yes: true });
    expect(readFileSync(keyFile, 'utf8')).toBe(before);
    expect(ctx.printed.join('\n')).toMatch(/Replace the key file .* of the remote password/);
    expect(ctx.printed).toContain(DRY_RUN_DONE);
  });
});
