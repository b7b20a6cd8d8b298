import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { describe, expect, inject, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { encryptPassword } from '../../src/system/secrets.js';
import {
  type Box,
  day,
  dirState,
  expectError,
  expectNoSecrets,
  ls,
  makeBackup,
  makeBox,
  type Run,
  writeConfig,
  zshield,
} from './lib.js';
import { freePort, PASSWORD_USER } from './sshd.js';

const env = inject('remote');

/**
 * Each failure: one clear `zshield:` line, its documented exit code, the local backups as they
 * were, nothing left on the remote under a backup's name, and no secret in any output or log line.
 */
function failing(box: Box, code: number, message: RegExp, args: string[] = ['remote', 'copy']): Run {
  makeBackup(box.backups, 'appliance', day(1), { 'img.zst': 50_000, sha256: 100 });
  const local = dirState(box.backups);
  const r = zshield(box, args);
  expectError(r, code, message);
  expect(dirState(box.backups)).toEqual(local);
  expect(ls(box.dest).filter((n) => !n.endsWith('.zshield-part'))).toEqual([]);
  expectNoSecrets(box, env, [r]);
  return r;
}

describe('remote copy failures', () => {
  it('a changed host key is refused with both fingerprints (exit 6)', () => {
    // Server B answers, but A's key is pinned.
    const box = makeBox(env, { remote: { port: env.serverB.port } });
    const r = failing(box, ExitCode.refused, /host key for 127\.0\.0\.1:\d+ has CHANGED/);
    expect(r.stderr).toContain(env.serverB.fingerprint);
    expect(r.stderr).toContain(env.serverA.fingerprint);
    expect(r.stderr).toMatch(/hint: .*zshield remote trust/);
  });

  it('an unknown host key is refused with its fingerprint; remote trust pins it after the operator checks it', () => {
    const box = makeBox(env, { remote: { hostKey: null } });
    const r = failing(box, ExitCode.refused, /127\.0\.0\.1:\d+ is not trusted: it offers ssh-ed25519 key/);
    expect(r.stderr).toContain(env.serverA.fingerprint);
    expect(r.stderr).toContain(`zshield remote trust --fingerprint ${env.serverA.fingerprint}`);

    // Not on a terminal and no fingerprint given: nothing is trusted.
    const blind = zshield(box, ['remote', 'trust']);
    expectError(blind, ExitCode.usage, /pass --fingerprint/);
    // The wrong fingerprint (server B's) is refused.
    const wrong = zshield(box, ['remote', 'trust', '--fingerprint', env.serverB.fingerprint]);
    expectError(wrong, ExitCode.refused, /offers .* not the expected/);
    expect(JSON.parse(readFileSync(box.configFile, 'utf8')).remote.hostKey).toBeNull();

    const ok = zshield(box, ['remote', 'trust', '--fingerprint', env.serverA.fingerprint]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`offers ssh-ed25519 key ${env.serverA.fingerprint}`);
    expect(JSON.parse(readFileSync(box.configFile, 'utf8')).remote.hostKey).toBe(env.serverA.fingerprint);
    const copy = zshield(box, ['remote', 'copy']);
    expect(copy.code, copy.stderr).toBe(0);
    expect(ls(box.dest).length).toBe(2);
    const again = zshield(box, ['remote', 'trust']);
    expect(again.stdout).toMatch(/already trusted/);
    expectNoSecrets(box, env, [blind, wrong, ok, copy, again]);
  });

  it('a wrong password is an authentication failure (exit 11), not retried', () => {
    const box = makeBox(env, { remote: { retries: 3 } });
    // The right key file, the wrong password.
    box.config.remote['password'] = encryptPassword('not the password', box.key);
    writeConfig(box);
    const r = failing(
      box,
      ExitCode.remoteFailed,
      new RegExp(`${PASSWORD_USER}@127\\.0\\.0\\.1:\\d+: authentication failed`),
    );
    expect(r.stderr).not.toContain('not the password');
    expect(r.stderr).not.toMatch(/try 2 of/);
  });

  it('a key user whose key the server does not know fails authentication (exit 11)', () => {
    const box = makeBox(env, { auth: 'key', remote: { user: PASSWORD_USER } });
    failing(box, ExitCode.remoteFailed, /authentication failed \(the server refused the private key\)/);
  });

  it('a missing key file (exit 5) and a world-readable one (exit 6)', () => {
    const box = makeBox(env);
    rmSync(box.keyFile);
    failing(box, ExitCode.notFound, /key file .*remote\.key does not exist/);

    const box2 = makeBox(env);
    chmodSync(box2.keyFile, 0o644);
    const r = failing(
      box2,
      ExitCode.refused,
      /key file .*remote\.key is accessible by group or others \(mode 0644\)/,
    );
    expect(r.stderr).toMatch(/hint: chmod 600/);
  });

  it('a group-readable private key and a world-readable config holding the password are refused (exit 6)', () => {
    const box = makeBox(env, { auth: 'key' });
    const copy = `${box.dir}/id_ed25519`;
    writeFileSync(copy, readFileSync(env.clientKey), { mode: 0o640 });
    chmodSync(copy, 0o640);
    box.config.remote['privateKey'] = copy;
    writeConfig(box);
    failing(box, ExitCode.refused, /private key .*id_ed25519 is accessible by group or others \(mode 0640\)/);

    const box2 = makeBox(env);
    chmodSync(box2.configFile, 0o644);
    failing(box2, ExitCode.refused, /config file .*zshield\.conf is accessible by group or others/);
  });

  it('an unreachable server is retried with backoff, then a clear error (exit 11)', async () => {
    const port = await freePort();
    const box = makeBox(env, { remote: { port, retries: 1 } });
    const r = failing(box, ExitCode.remoteFailed, /unreachable: connection refused/);
    expect(r.stderr).toMatch(/try 2 of 2 in 2\.0 s/);
  });

  it('a server that accepts but never speaks SSH times out as unreachable (exit 11)', async () => {
    // A silent listener on 127.0.0.1: the connection is made, the SSH banner never comes.
    const silent = net.createServer((sock) => sock.on('error', () => {}));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const box = makeBox(env, { remote: { port, retries: 0, connectTimeoutSeconds: 2 } });
      failing(box, ExitCode.remoteFailed, /unreachable: no SSH answer within 2 s/);
    } finally {
      silent.close();
    }
  });

  it('a destination the user may not write is a clear error (exit 11)', () => {
    const box = makeBox(env, { auth: 'key' });
    box.config.remote['destination'] = '/root/zshield-backups';
    writeConfig(box);
    failing(box, ExitCode.remoteFailed, /permission denied/);
  });

  it('missing settings are a config error naming each (exit 3)', () => {
    const box = makeBox(env);
    box.config.remote['server'] = null;
    box.config.remote['destination'] = null;
    writeConfig(box);
    const r = failing(box, ExitCode.config, /remote\.server: must be set for a remote copy/);
    expect(r.stderr).toMatch(/remote\.destination: must be set/);
  });
});
