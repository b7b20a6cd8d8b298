import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { keyId, newKey } from '../../src/system/secrets.js';
import { SEA } from '../bundle.js';
import {
  type Box,
  day,
  expectError,
  expectNoSecrets,
  ls,
  makeBackup,
  makeBox,
  writeConfig,
  zshield,
} from './lib.js';
import { PASSWORD_USER } from './sshd.js';

const env = inject('remote');

/**
 * `config edit` and `keygen` on a real terminal: tmux runs the CLI in a pane, the test types with
 * send-keys and reads the screen with capture-pane, as an operator on the console would.
 */
class Terminal {
  private static n = 0;
  readonly socket = `zshield-test-${process.pid}-${Terminal.n++}`;

  private tmux(args: string[]): string {
    const r = spawnSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  start(box: Box, args: string[]): void {
    const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    const cmd = [SEA, '-c', box.configFile, ...args].map(q).join(' ');
    // The shell after the CLI shows its exit code on the screen and keeps the pane open.
    this.tmux([
      'new-session',
      '-d',
      '-s',
      'main',
      '-x',
      '160',
      '-y',
      '50',
      `${cmd}; echo "[exit $?]"; sleep 600`,
    ]);
  }

  /** Type text (literally) and press Enter. */
  type(text: string): void {
    if (text) this.tmux(['send-keys', '-t', 'main', '-l', text]);
    this.tmux(['send-keys', '-t', 'main', 'Enter']);
  }

  key(name: string): void {
    this.tmux(['send-keys', '-t', 'main', name]);
  }

  screen(): string {
    return this.tmux(['capture-pane', '-p', '-t', 'main', '-S', '-500']);
  }

  /** Wait until the screen matches (capture-pane drops trailing spaces: end prompts with \s*$). */
  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = this.screen();
      if (re.test(s)) return s;
      if (Date.now() > end) throw new Error(`timed out waiting for ${re} on the screen:\n${s}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Answer the prompt that matches `prompt` (it must be the last thing on the screen). */
  async answer(prompt: RegExp, text: string): Promise<void> {
    await this.waitFor(new RegExp(`${prompt.source}\\s*$`));
    this.type(text);
  }

  kill(): void {
    spawnSync('tmux', ['-L', this.socket, 'kill-server']);
  }
}

let term: Terminal | null = null;
afterEach(() => {
  term?.kill();
  term = null;
});

const remoteOf = (box: Box) => JSON.parse(readFileSync(box.configFile, 'utf8')).remote;

describe('config edit and keygen on a real terminal', () => {
  it('config edit sets up the remote from nothing: masked, password without echo, validated, written 0600', async () => {
    const box = makeBox(env, {
      remote: { server: null, user: null, destination: null, password: null, hostKey: null, limit: 5 },
    });
    box.config.remote['keyFile'] = path.join(box.dir, 'new.key');
    writeConfig(box);
    makeBackup(box.backups, 'appliance', day(1), { 'img.zst': 10_000 });
    term = new Terminal();
    term.start(box, ['config', 'edit']);
    const first = await term.waitFor(/Would you like to edit these settings\? \(y\/n\)\s*$/);
    expect(first).toMatch(/password\s+: \(not set\)/);
    term.type('y');
    await term.answer(/ server \[\(none\)\]:/, '127.0.0.1');
    const port = new RegExp(` port \\[${env.serverA.port}\\]:`);
    await term.answer(port, '99999');
    await term.waitFor(/port: .*65535.*try again\s+port \[\d+\]:\s*$/i);
    await term.answer(port, '');
    await term.answer(/ user \[\(none\)\]:/, PASSWORD_USER);
    await term.answer(/ destination \[\(none\)\]:/, box.dest);
    await term.answer(/ password \[not set\]: change it\? \(y\/n\)/, 'y');
    await term.answer(/ new password:/, env.password);
    await term.answer(/ repeat it:/, env.password);
    await term.answer(/ keyFile \[.*new\.key\]:/, '');
    await term.answer(/ privateKey \[\(none\)\]:/, '');
    await term.answer(/ hostKey \[\(none\)\]:/, 'SHA256:not-a-fingerprint');
    await term.waitFor(/hostKey: must be an OpenSSH fingerprint/);
    await term.answer(/ hostKey \[\(none\)\]:/, env.serverA.fingerprint);
    await term.answer(/ limit \[5\]:/, '3');
    await term.answer(/ bandwidthKiBps \[unlimited\]:/, '');
    await term.answer(/ retries \[1\]:/, '');
    await term.answer(/ verifyCycle \[7\]:/, '');
    await term.answer(/ sources \[.*\]:/, '');
    await term.answer(/ enabled \[no\]:/, 'yes');
    const review = await term.waitFor(/Write .*zshield\.conf\? \(y\/n\)\s*$/);
    expect(review).toMatch(/##### {2}New remote copy settings/);
    expect(review).toMatch(/a new key file .*new\.key will be made/);
    term.type('y');
    const end = await term.waitFor(/\[exit \d+\]/);
    expect(end).toMatch(/\[exit 0\]/);
    // The password was never echoed, and neither it nor its ciphertext is ever shown.
    const r = remoteOf(box);
    expect(end).not.toContain(env.password);
    expect(end).not.toContain(r.password);
    expect(r).toMatchObject({
      server: '127.0.0.1',
      port: env.serverA.port,
      user: PASSWORD_USER,
      destination: box.dest,
      hostKey: env.serverA.fingerprint,
      limit: 3,
      enabled: true,
    });
    expect(r.password).toMatch(/^v1:[0-9a-f]{8}:/);
    expect(statSync(box.configFile).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(box.dir, 'new.key')).mode & 0o777).toBe(0o600);
    // The other sections are kept.
    expect(JSON.parse(readFileSync(box.configFile, 'utf8')).log.file).toBe(box.logFile);

    // The settings work: the password decrypts and logs in.
    box.config.remote = r;
    box.key = Buffer.from(readFileSync(path.join(box.dir, 'new.key'), 'utf8').trim(), 'base64');
    const copy = zshield(box, ['remote', 'copy']);
    expect(copy.code, copy.stderr).toBe(0);
    expect(ls(box.dest)).toEqual(['zshield-appliance-20260101T030000Z.img.zst']);
    expectNoSecrets(box, env, [copy, { code: 0, stdout: end, stderr: '' }]);
  });

  it('config edit: Ctrl-C at the password prompt cancels and writes nothing', async () => {
    const box = makeBox(env);
    const before = readFileSync(box.configFile, 'utf8');
    term = new Terminal();
    term.start(box, ['config', 'edit']);
    await term.answer(/Would you like to edit these settings\? \(y\/n\)/, 'y');
    await term.answer(/ server \[127\.0\.0\.1\]:/, '');
    await term.answer(/ port \[\d+\]:/, '');
    await term.answer(new RegExp(` user \\[${PASSWORD_USER}\\]:`), '');
    await term.answer(/ destination \[.*\]:/, '');
    await term.answer(/ password \[set\]: change it\? \(y\/n\)/, 'y');
    await term.waitFor(/ new password:\s*$/);
    term.key('C-c');
    const end = await term.waitFor(/\[exit \d+\]/);
    expect(end).toMatch(new RegExp(`\\[exit ${ExitCode.interrupted}\\]`));
    expect(end).toMatch(/cancelled; nothing written/);
    expect(readFileSync(box.configFile, 'utf8')).toBe(before);
  });

  it('keygen: a new key file, the password re-encrypted, the copy still logs in', async () => {
    const box = makeBox(env);
    makeBackup(box.backups, 'log', day(2), { log: 1000 });
    const oldKey = readFileSync(box.keyFile, 'utf8');
    const oldCipher = remoteOf(box).password;
    term = new Terminal();
    term.start(box, ['keygen']);
    await term.answer(
      /This will replace the key file .*remote\.key and re-encrypt the password with the new key\. Go on\? \(y\/n\)/,
      'y',
    );
    const end = await term.waitFor(/\[exit \d+\]/);
    expect(end).toMatch(/\[exit 0\]/);
    const newKeyText = readFileSync(box.keyFile, 'utf8');
    expect(newKeyText).not.toBe(oldKey);
    expect(end).toContain(`key id ${keyId(Buffer.from(newKeyText.trim(), 'base64'))}`);
    expect(statSync(box.keyFile).mode & 0o777).toBe(0o600);
    expect(existsSync(`${box.keyFile}.new`)).toBe(false);
    const cipher = remoteOf(box).password;
    expect(cipher).not.toBe(oldCipher);
    expect(end).not.toContain(cipher);

    box.config.remote['password'] = cipher;
    box.key = Buffer.from(newKeyText.trim(), 'base64');
    const copy = zshield(box, ['remote', 'copy']);
    expect(copy.code, copy.stderr).toBe(0);
    expect(ls(box.dest)).toEqual(['zshield-log-20260102T030000Z.log']);
    expectNoSecrets(box, env, [copy, { code: 0, stdout: end, stderr: '' }]);
  });

  it('keygen --ask-password: when the old key is lost, the password is typed again (no echo)', async () => {
    const box = makeBox(env);
    // The key file was replaced by another key: the stored password no longer opens.
    writeFileSync(box.keyFile, `${newKey().toString('base64')}\n`, { mode: 0o600 });
    const plain = zshield(box, ['keygen', '--yes']);
    expectError(plain, ExitCode.config, /remote\.password: was encrypted with another key/);
    expect(plain.stderr).toMatch(/hint: .*zshield keygen --ask-password/);

    term = new Terminal();
    term.start(box, ['keygen', '--ask-password']);
    await term.answer(/ new password:/, env.password);
    await term.answer(/ repeat it:/, 'a typo');
    await term.waitFor(/the two entries differ; again/);
    await term.answer(/ new password:/, env.password);
    await term.answer(/ repeat it:/, env.password);
    await term.answer(/Go on\? \(y\/n\)/, 'y');
    const end = await term.waitFor(/\[exit \d+\]/);
    expect(end).toMatch(/\[exit 0\]/);
    expect(end).not.toContain(env.password);
    box.config.remote['password'] = remoteOf(box).password;
    box.key = Buffer.from(readFileSync(box.keyFile, 'utf8').trim(), 'base64');
    makeBackup(box.backups, 'log', day(3), { log: 1000 });
    const copy = zshield(box, ['remote', 'copy']);
    expect(copy.code, copy.stderr).toBe(0);
    expectNoSecrets(box, env, [plain, copy, { code: 0, stdout: end, stderr: '' }]);
  });

  it('remote trust on a terminal shows the fingerprint and pins it after "yes"', async () => {
    const box = makeBox(env, { remote: { hostKey: null } });
    term = new Terminal();
    term.start(box, ['remote', 'trust']);
    const s = await term.waitFor(/Type "yes" to trust it:\s*$/);
    expect(s).toContain(`offers ssh-ed25519 key ${env.serverA.fingerprint}`);
    term.type('yes');
    expect(await term.waitFor(/\[exit \d+\]/)).toMatch(/\[exit 0\]/);
    expect(remoteOf(box).hostKey).toBe(env.serverA.fingerprint);
  });
});
