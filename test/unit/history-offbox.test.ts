import { s3TargetSchema } from '../../src/config/history.js';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRecoveryFile } from '../../src/config/recovery-file.js';
import { defaultConfig } from '../../src/config/schema.js';
import { ConfigError, NotFoundError, RefusedError } from '../../src/errors.js';
import { checkHistoryConfig } from '../../src/history/check.js';
import { readRecoveryFile } from '../../src/history/recovery-file.js';
import { openStore } from '../../src/history/stores.js';
import { askRecovery, stagedContext, stageRecovery, TARGET_QUESTION } from '../../src/recovery/offbox.js';
import { OFFBOX_RESTORE_TAG, FACTORY_TAG } from '../../src/names/lvm-tags.js';
import { formatPlan } from '../../src/plan/plan.js';
import { recoveryRequest } from '../../src/recovery/cmdline.js';
import type { FactoryInput } from '../../src/recovery/factory-input.js';
import { planFactoryReset } from '../../src/recovery/factory.js';
import { openPassword } from '../../src/system/secrets.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { disk, goldenFacts } from './helpers/disks.js';
import { GiB } from './helpers/lvm-json.js';

const KEY =
  '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n';
const good = {
  target: {
    server: '10.0.2.100',
    user: 'zs',
    directory: '/srv/zs/box1',
    hostKey: `SHA256:${'A'.repeat(43)}`,
    privateKey: KEY,
  },
  repositoryPassword: 'correct horse',
  publicKey: `ed25519:${'B'.repeat(43)}=`,
};

describe('the recovery file', () => {
  it('accepts a complete file (port 22 and the newest fingerprint by default)', () => {
    const r = parseRecoveryFile(JSON.stringify(good));
    expect(r.ok && r.file.target.type === 'sftp' && r.file.target.port).toBe(22);
    expect(r.ok && r.file.fingerprint).toBeNull();
  });

  it('names the first problem in one line', () => {
    const bad = (over: object) => parseRecoveryFile(JSON.stringify({ ...good, ...over }));
    expect(bad({ publicKey: 'rsa:x' })).toEqual({
      ok: false,
      problem: 'publicKey: must be ed25519:<base64>',
    });
    expect(bad({ target: { ...good.target, hostKey: 'md5' } })).toMatchObject({
      problem: expect.stringMatching(/^target\.hostKey: must be an OpenSSH fingerprint/),
    });
    expect(bad({ target: { ...good.target, privateKey: null } })).toMatchObject({
      problem: 'target: needs a privateKey or a password',
    });
    expect(bad({ fingerprint: 'abc' })).toMatchObject({ problem: 'fingerprint: must be 64 hex digits' });
    expect(bad({ extra: 1 })).toMatchObject({ ok: false });
    expect(parseRecoveryFile('{')).toMatchObject({ problem: expect.stringMatching(/^not JSON/) });
  });

  it('a bad file is a config error (exit 3) without the secrets in the message; a missing one, not found', () => {
    const t = tempDir();
    try {
      const file = path.join(t.dir, 'rec.json');
      writeFileSync(file, JSON.stringify({ ...good, publicKey: 'x' }), { mode: 0o600 });
      let err: unknown;
      try {
        readRecoveryFile(file);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toBe(
        `config: recovery file ${file}: publicKey: must be ed25519:<base64>`,
      );
      expect((err as Error).message).not.toContain('correct horse');
      expect(() => readRecoveryFile(path.join(t.dir, 'none.json'))).toThrow(NotFoundError);
    } finally {
      t.cleanup();
    }
  });

  it('a recovery file group or others can read is refused (exit 6, chmod 600 hint), as a key file is; config check reports it', async () => {
    const t = tempDir();
    try {
      const file = path.join(t.dir, 'rec.json');
      writeFileSync(file, JSON.stringify(good), { mode: 0o644 });
      chmodSync(file, 0o644);
      let err: unknown;
      try {
        readRecoveryFile(file);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RefusedError);
      expect((err as Error).message).toBe(
        `recovery file ${file} is accessible by group or others (mode 0644): refusing to use it`,
      );
      expect((err as RefusedError).hint).toMatch(
        new RegExp(`^chmod 600 ${file} \\(on a FAT stick: mount it with -o fmask=0077`),
      );
      // config check: the same refusal among its problems (the fw_cfg entry's path in real life).
      const ctx = testContext({
        runner: new RecordingRunner(),
        dir: t.dir,
        clock: new FakeClock(new Date(0)),
      });
      const problems = await checkHistoryConfig(ctx, [file, path.join(t.dir, 'absent.json')]);
      expect(problems.map((p) => p.message)).toEqual([(err as Error).message]);
      // Its hint followed: accepted.
      chmodSync(file, 0o600);
      expect(readRecoveryFile(file).repositoryPassword).toBe('correct horse');
      expect(await checkHistoryConfig(ctx, [file])).toEqual([]);
      // A bad file in that place is reported by config check too.
      writeFileSync(file, JSON.stringify({ ...good, publicKey: 'x' }));
      expect((await checkHistoryConfig(ctx, [file])).map((p) => p.message)).toEqual([
        `config: recovery file ${file}: publicKey: must be ed25519:<base64>`,
      ]);
    } finally {
      t.cleanup();
    }
  });

  it('its secrets go into 0600 files under the run directory; the staged config holds no clear secret', () => {
    const t = tempDir();
    try {
      const ctx = testContext({
        runner: new RecordingRunner(),
        dir: t.dir,
        clock: new FakeClock(new Date(0)),
      });
      const rf = parseRecoveryFile(JSON.stringify(good));
      if (!rf.ok) throw new Error(rf.problem);
      const dir = path.join(t.dir, 'run', 'offbox');
      const config = stageRecovery(ctx, rf.file, dir);
      const h = config.history;
      expect(JSON.stringify(config)).not.toContain('correct horse');
      expect(h.targets).toHaveLength(1);
      const t0 = h.targets[0]!;
      if (t0.type !== 'sftp') throw new Error('not sftp');
      const key = t0.privateKey!;
      expect(readFileSync(key, 'utf8')).toBe(KEY);
      for (const f of [key, h.keyFile]) expect(statSync(f).mode & 0o777).toBe(0o600);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(openPassword({ ciphertext: h.password!, keyFile: h.keyFile, log: ctx.log })).toBe(
        'correct horse',
      );
      expect(h.publicKey).toBe(good.publicKey);
      expect(h.dir.startsWith(dir)).toBe(true);
    } finally {
      t.cleanup();
    }
  });

  it('an S3 target: its secret in clear in the file, encrypted in the staged config (read only: appendOnly)', () => {
    const t = tempDir();
    try {
      const ctx = testContext({
        runner: new RecordingRunner(),
        dir: t.dir,
        clock: new FakeClock(new Date(0)),
      });
      const s3 = {
        type: 's3',
        endpoint: 'https://s3.example.com',
        bucket: 'fleet',
        prefix: 'box7/',
        accessKeyId: 'AKIDBOX7',
        secretAccessKey: 'the s3 secret',
      };
      const rf = parseRecoveryFile(JSON.stringify({ ...good, target: s3 }));
      if (!rf.ok) throw new Error(rf.problem);
      const bad = parseRecoveryFile(
        JSON.stringify({ ...good, target: { ...s3, endpoint: 'http://x:7480' } }),
      );
      expect(bad).toEqual({
        ok: false,
        problem: 'target.allowHttp: an http:// endpoint needs allowHttp: true',
      });
      const config = stageRecovery(ctx, rf.file, path.join(t.dir, 'run', 'offbox'));
      const h = config.history;
      expect(JSON.stringify(config)).not.toContain('the s3 secret');
      const t0 = h.targets[0]!;
      if (t0.type !== 's3') throw new Error('not s3');
      expect(t0).toMatchObject({ bucket: 'fleet', prefix: 'box7/', region: 'us-east-1', appendOnly: true });
      expect(openPassword({ ciphertext: t0.secretAccessKey, keyFile: h.keyFile, log: ctx.log })).toBe(
        'the s3 secret',
      );
      // The staged target is a valid one (the schema of history.targets takes it).
      expect(s3TargetSchema.safeParse(t0).success).toBe(true);
      // The store opens it (decrypting the secret) although the medium's config file, which holds
      // no secret, is 0644: the secret is the recovery file's, not the config file's.
      const configFile = path.join(t.dir, 'zshield.conf');
      writeFileSync(configFile, '{}\n', { mode: 0o644 });
      const withFile = { ...ctx, configFile };
      expect(() => openStore(withFile, h, t0)).toThrow(/config file .* is accessible by group or others/);
      const staged = stagedContext(withFile, rf.file, path.join(t.dir, 'run', 'offbox'));
      expect(staged.configFile).toBeNull();
      openStore(staged, staged.config.history, staged.config.history.targets[0]!).close();
    } finally {
      t.cleanup();
    }
  });
});

describe('the off-box restore plan (the factory reset with the root from a fingerprint)', () => {
  const input: FactoryInput = {
    config: defaultConfig(),
    disks: {
      disks: [disk('vdb', 'NEW', 8)],
      bootDisks: ['vda'],
    },
    pvs: [],
    golden: goldenFacts(),
    bootUuid: '0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e',
    now: new Date(0),
    root: {
      what: 'fingerprint 3f3f from zs@backup:/srv',
      steps: (mnt) => [
        {
          title: 'restore into the new root',
          command: { file: 'restic', args: ['restore', '--target', mnt], mutates: true },
        },
      ],
      mark: OFFBOX_RESTORE_TAG,
      reason: 'post-restore',
      bytes: 100 * GiB,
    },
  };

  it('restores instead of copying the golden root, puts back the /boot captured in it, marks the VG as its own', () => {
    const plan = planFactoryReset({ ...input, root: { ...input.root!, bytes: GiB } });
    const argvs = plan.steps.map((s) => [s.command.file, ...s.command.args].join(' '));
    expect(plan.title).toBe('Restore of /dev/vdb from fingerprint 3f3f from zs@backup:/srv');
    expect(argvs.some((a) => a.startsWith('rsync') && a.includes(' / '))).toBe(false);
    const restore = argvs.findIndex((a) => a.startsWith('restic restore'));
    const boot = argvs.findIndex((a) => /^rsync .*\/var\/lib\/zshield\/boot\/ .*\/boot\/$/.test(a));
    const grub = argvs.findIndex((a) => a.includes('grub-install'));
    expect(restore).toBeGreaterThan(
      argvs.findIndex((a) => a.startsWith('mount -t ext4 /dev/vgroup/lv-root')),
    );
    expect(boot).toBeGreaterThan(restore);
    expect(grub).toBeGreaterThan(boot);
    expect(argvs.find((a) => a.startsWith('vgcreate'))).toContain(OFFBOX_RESTORE_TAG);
    expect(argvs.join('\n')).not.toContain(FACTORY_TAG);
    expect(argvs.find((a) => a.startsWith('lvcreate --snapshot'))).toContain('zshield_reason=post-restore');
    expect(formatPlan(plan)).toMatch(/then: fingerprint 3f3f from zs@backup:\/srv is copied into lv-root/);
  });

  it('erases a disk that holds partitions only when it is named', () => {
    const used = structuredClone(input.disks);
    used.disks[0]!.partitions = [{ name: 'vdb1', path: '/dev/vdb1', fsType: 'ext4', mount: '', label: '' }];
    expect(() => planFactoryReset({ ...input, disks: used, root: input.root! })).toThrow(
      /is not blank and was not named as the target/,
    );
    expect(planFactoryReset({ ...input, disks: used, targetOverride: 'NEW' }).title).toMatch(/^Restore of/);
  });

  it('erases without being named a disk holding only the same restore cut short (its VG still marked)', () => {
    const cut = structuredClone(input.disks);
    cut.disks[0]!.partitions = [
      { name: 'vdb1', path: '/dev/vdb1', fsType: 'ext4', mount: '', label: 'zs-boot' },
      { name: 'vdb2', path: '/dev/vdb2', fsType: 'LVM2_member', mount: '', label: '' },
    ];
    const pv = (vgName: string, vgTags: string[]) => [{ pvName: '/dev/vdb2', vgName, vgTags }];
    const plan = (pvs: ReturnType<typeof pv>) => () =>
      planFactoryReset({ ...input, disks: cut, pvs, root: input.root! });
    expect(plan(pv('vgroup', [OFFBOX_RESTORE_TAG]))().title).toMatch(/^Restore of \/dev\/vdb/);
    // Not that restore's: a VG without its mark, a factory reset's, another VG.
    for (const other of [pv('vgroup', []), pv('vgroup', [FACTORY_TAG]), pv('data', [OFFBOX_RESTORE_TAG])]) {
      expect(plan(other)).toThrow(/is not blank and was not named as the target/);
    }
  });

  it('refuses before any write when the fingerprint is larger than the new root', () => {
    const plan = planFactoryReset(input);
    expect(() => {
      for (const c of plan.checks ?? []) c.run();
    }).toThrow(/the new lv-root .* is too small/);
  });
});

/** A console that answers from a script and records which questions hid the answer. */
function scripted(answers: string[]) {
  const asked: { q: string; secret: boolean }[] = [];
  const next = (q: string, secret: boolean) => {
    asked.push({ q, secret });
    const a = answers.shift();
    if (a === undefined) throw new Error(`no answer scripted for ${q}`);
    return Promise.resolve(a);
  };
  return {
    asked,
    prompter: {
      line: (q: string) => next(q, false),
      secret: (q: string) => next(q, true),
      lineWithin: () => Promise.resolve(null),
      print: () => {},
      close: () => {},
    },
  };
}

describe('the same facts typed on the console', () => {
  it('reads the target, keys and passwords (the secrets without echo) into a checked recovery file', async () => {
    const c = scripted([
      'zs@10.0.2.100:2222:/srv/zs/box1',
      good.target.hostKey,
      'login-pw',
      'correct horse',
      good.publicKey,
      '',
    ]);
    const rf = await askRecovery(c.prompter);
    expect(rf.target).toMatchObject({
      user: 'zs',
      server: '10.0.2.100',
      port: 2222,
      directory: '/srv/zs/box1',
      password: 'login-pw',
      privateKey: null,
    });
    expect(rf.repositoryPassword).toBe('correct horse');
    expect(rf.fingerprint).toBeNull();
    expect(c.asked.filter((a) => a.secret).map((a) => a.q)).toEqual([
      'login password (empty: log in with a key file): ',
      'repository password: ',
    ]);
  });

  it('a key file instead of a password; a bad answer is one line', async () => {
    const t = tempDir();
    try {
      const key = path.join(t.dir, 'id');
      writeFileSync(key, KEY, { mode: 0o600 });
      const rf = await askRecovery(
        scripted(['zs@backup:/srv', good.target.hostKey, '', key, 'pw', good.publicKey, '']).prompter,
      );
      expect(rf.target.type === 'sftp' && rf.target.privateKey).toBe(KEY);
      await expect(askRecovery(scripted(['backup:/srv']).prompter)).rejects.toThrow(
        '"backup:/srv" is not user@server[:port]:/directory or s3://bucket/prefix',
      );
      await expect(
        askRecovery(scripted(['zs@backup:/srv', 'nope', 'x', 'pw', good.publicKey, '']).prompter),
      ).rejects.toThrow(/^config: the answers: target\.hostKey: must be an OpenSSH fingerprint/);
    } finally {
      t.cleanup();
    }
  });
});

describe('an S3 target typed on the console', () => {
  it('reads s3://bucket/prefix, the endpoint, region, key id and secret (the secret without echo)', async () => {
    const c = scripted([
      's3://fleet/site1/box7',
      'https://s3.example.com',
      '',
      'AKIDBOX7',
      'the s3 secret',
      'correct horse',
      good.publicKey,
      '',
    ]);
    const rf = await askRecovery(c.prompter);
    expect(rf.target).toEqual({
      type: 's3',
      endpoint: 'https://s3.example.com',
      allowHttp: false,
      bucket: 'fleet',
      prefix: 'site1/box7/',
      region: 'us-east-1',
      accessKeyId: 'AKIDBOX7',
      secretAccessKey: 'the s3 secret',
    });
    expect(c.asked[0]!.q).toBe(TARGET_QUESTION);
    expect(c.asked.filter((a) => a.secret).map((a) => a.q)).toEqual([
      'secret access key: ',
      'repository password: ',
    ]);
  });

  it('an http:// endpoint only on an explicit yes (as allowHttp in the config); a bad answer is one line', async () => {
    const answers = (yes: string) => [
      's3://fleet',
      'http://10.0.2.100:7480',
      yes,
      'eu-west-1',
      'AKIDBOX7',
      'the s3 secret',
      'correct horse',
      good.publicKey,
      'a'.repeat(64),
    ];
    const rf = await askRecovery(scripted(answers('yes')).prompter);
    expect(rf.target).toMatchObject({ allowHttp: true, prefix: '', region: 'eu-west-1' });
    expect(rf.fingerprint).toBe('a'.repeat(64));
    await expect(askRecovery(scripted(answers('no')).prompter)).rejects.toThrow(
      'http://10.0.2.100:7480 not allowed (no TLS); nothing was written',
    );
    await expect(askRecovery(scripted(['s3://']).prompter)).rejects.toThrow(
      '"s3://" is not s3://bucket/prefix',
    );
    const bad = askRecovery(
      scripted(['s3://fleet', 'ftp://x', '', 'AKID', 'the s3 secret', 'pw', good.publicKey, '']).prompter,
    );
    await expect(bad).rejects.toThrow(
      /^config: the answers: target\.endpoint: must be an http\(s\):\/\/ URL/,
    );
    await expect(bad).rejects.not.toThrow(/the s3 secret/);
  });
});

describe('the boot request', () => {
  it('zshield_recovery=offbox is the off-box restore', () => {
    expect(recoveryRequest('ro zshield_recovery=offbox')).toBe('offbox');
  });
});
