import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { RefusedError, RemoteError, VerifyError } from '../../src/errors.js';
import { emptyTargetState } from '../../src/history/state.js';
import { type HistoryStatus, statusFailure } from '../../src/history/status.js';
import { parseTargetSpec } from '../../src/history/targets.js';
import { appendCatalog, catalogFile, createCatalog, verifyCatalog } from '../../src/history/catalog.js';
import { planFingerprintRecovery } from '../../src/recovery/fingerprint.js';
import { type VerifyReport, verifySummary } from '../../src/history/verify-targets.js';
import { planReplication, verificationShare } from '../../src/history/replication-plan.js';
import { forTarget } from '../../src/history/sftp-store.js';
import { TransientRemoteError } from '../../src/ssh/connect.js';
import { type EditStep, type Step, formatPlan, isCommand } from '../../src/plan/plan.js';
import type { LvInfo, VgState } from '../../src/system/lvm.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { generateSigningKey } from '../../src/system/signing.js';
import { FakeClock, testContext } from './helpers/context.js';
import { REAL_WRITES } from '../../src/system/writes.js';

const h = (c: string) => c.repeat(64);
const f = (name: string, size = 10) => ({ name, size });

describe('history replication plan', () => {
  it('sends data, then index, then snapshots; removes snapshots, then index, then data', () => {
    const local = [
      f(`snapshots/${h('a')}`),
      f(`index/${h('b')}`),
      f(`data/cc/${h('c')}`),
      f('config'),
      f(`keys/${h('d')}`),
    ];
    const remote = [f(`data/ee/${h('e')}`), f(`index/${h('f')}`), f(`snapshots/${h('9')}`), f('config')];
    const p = planReplication(local, remote);
    expect(p.uploads.map((x) => x.name)).toEqual([
      `keys/${h('d')}`,
      `data/cc/${h('c')}`,
      `index/${h('b')}`,
      `snapshots/${h('a')}`,
    ]);
    expect(p.deletes.map((x) => x.name)).toEqual([
      `snapshots/${h('9')}`,
      `index/${h('f')}`,
      `data/ee/${h('e')}`,
    ]);
    expect(p.present.map((x) => x.name)).toEqual(['config']);
    expect(p.bytesBehind).toBe(40);
  });

  it('a file there with another size is sent again; nothing to do when equal', () => {
    const local = [f(`data/cc/${h('c')}`, 100)];
    expect(planReplication(local, [f(`data/cc/${h('c')}`, 40)]).uploads).toHaveLength(1);
    const same = planReplication(local, local);
    expect([same.uploads.length, same.deletes.length]).toEqual([0, 0]);
  });

  it('a same-named file of another size, or one gone that the last replication sent, is damage', () => {
    const old = { ...f(`data/aa/${h('a')}`, 10), mtimeMs: Date.parse('2026-01-01T00:00:00Z') };
    const cut = { ...f(`data/bb/${h('b')}`, 10), mtimeMs: Date.parse('2026-01-01T00:00:00Z') };
    const fresh = { ...f(`data/cc/${h('c')}`, 10), mtimeMs: Date.parse('2026-01-03T00:00:00Z') };
    const p = planReplication([old, cut, fresh], [f(`data/bb/${h('b')}`, 4)], '2026-01-02T00:00:00.000Z');
    expect(p.damaged.map((d) => [d.file.name, d.why])).toEqual([
      [`data/aa/${h('a')}`, 'missing, though the last successful replication sent it'],
      [`data/bb/${h('b')}`, '4 bytes there, 10 here'],
    ]);
    expect(p.uploads).toHaveLength(3);
    expect(p.bytesBehind).toBe(30);
    // Never replicated: nothing it lacks is damage.
    expect(planReplication([old], [], null).damaged).toEqual([]);
  });

  it('the rotating verification covers every file over 100/percent runs', () => {
    const files = Array.from({ length: 25 }, (_, i) => f(`data/00/${String(i).padStart(64, '0')}`));
    const seen = new Set<string>();
    let cursor = 0;
    for (let run = 0; run < 10; run++) {
      const s = verificationShare(files, 10, cursor);
      expect(s.files).toHaveLength(3);
      for (const x of s.files) seen.add(x.name);
      cursor = s.next;
    }
    expect(seen.size).toBe(25);
    expect(verificationShare(files, 0, 0).files).toEqual([]);
  });
});

describe('history catalog', () => {
  it('appends signed, chained entries; detects a changed line and a stale head', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'zshield-catalog-'));
    try {
      const key = generateSigningKey();
      createCatalog(REAL_WRITES, dir, key);
      expect(verifyCatalog(dir, key.publicText).entries).toEqual([]);
      const time = '2026-01-01T00:00:00.000Z';
      appendCatalog(REAL_WRITES, dir, key, [
        {
          kind: 'backup',
          fingerprint: h('1'),
          time,
          host: 'a',
          reason: 'daily',
          version: '1',
          sizes: { bytes: 1, files: 1, added: 1 },
        },
        { kind: 'replicated', fingerprint: h('1'), target: 't', time },
      ]);
      const c = verifyCatalog(dir, key.publicText);
      expect(c.entries.map((e) => [e.seq, e.kind])).toEqual([
        [1, 'backup'],
        [2, 'replicated'],
      ]);
      expect(c.entries[1]!.prev).toMatch(/^[0-9a-f]{64}$/);
      expect(() => verifyCatalog(dir, generateSigningKey().publicText)).toThrow(/not a trusted key/);
      expect(() => verifyCatalog(dir, null)).toThrow(RefusedError);
      const text = readFileSync(catalogFile(dir), 'utf8');
      writeFileSync(catalogFile(dir), text.replace('"daily"', '"weekly"'));
      expect(() => verifyCatalog(dir, key.publicText)).toThrow(VerifyError);
      expect(() => appendCatalog(REAL_WRITES, dir, key, [])).toThrow(/signature does not match/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function lv(name: string, sizeBytes: number, extra: Partial<LvInfo> = {}): LvInfo {
  return {
    name,
    vg: 'vgroup',
    path: `/dev/vgroup/${name}`,
    attr: '-wi-a-----',
    sizeBytes,
    kind: 'plain',
    origin: null,
    merging: false,
    invalid: false,
    active: true,
    snapPercent: null,
    tags: [],
    created: null,
    kernelMajor: null,
    kernelMinor: null,
    ...extra,
  };
}

const GiB = 1024 ** 3;
const edit = (title: string): EditStep => ({ title, edit: { files: ['/x'], apply: () => {} } });

function state(freeBytes: number, lvs: LvInfo[]): VgState {
  return {
    vg: {
      name: 'vgroup',
      sizeBytes: 20 * GiB,
      freeBytes,
      extentBytes: 4 << 20,
      freeExtents: freeBytes / (4 << 20),
      tags: [],
    },
    lvs,
  };
}

describe('recover fingerprint plan', () => {
  const ctx = testContext({
    runner: new RecordingRunner(),
    dir: '/tmp/zshield-unit-history',
    clock: new FakeClock(new Date(0)),
  });
  const input = (s: VgState) => ({
    config: defaultConfig(),
    state: s,
    id: h('7'),
    from: 'target site-a',
    boot: { kind: 'separate' as const, device: '/dev/vdb1', uuid: 'u', type: 'ext4', how: 'by its UUID' },
    started: new Date(0),
    fetch: null,
    restore: edit('restore into the new root'),
    event: () => edit('log the reset'),
    identity: null as { hostname: string; ip: string | null } | null,
  });

  it('restores into a new LV, puts /boot back, then swaps names: the old root is kept, never removed', async () => {
    const plan = planFingerprintRecovery(
      ctx,
      input(
        state(8 * GiB, [
          lv('lv-root', 4 * GiB, { kind: 'origin' }),
          lv('snap0', GiB, { kind: 'snapshot', origin: 'lv-root' }),
        ]),
      ),
    );
    const titles = plan.steps.map((s) => s.title);
    const at = (re: RegExp) => titles.findIndex((t) => re.test(t));
    expect(at(/make the new root volume/)).toBeLessThan(at(/restore into the new root/));
    expect(at(/restore into the new root/)).toBeLessThan(at(/put back the \/boot/));
    expect(at(/log the reset/)).toBeLessThan(at(/unmount .*recover-boot/));
    expect(at(/unmount .*recover-root/)).toBeLessThan(at(/keep the old root as lv-root-prev/));
    expect(at(/keep the old root/)).toBeLessThan(at(/the new root becomes lv-root/));
    const argvs = plan.steps.filter(isCommand).map((s) => [s.command.file, ...s.command.args].join(' '));
    expect(argvs).toContain(`lvcreate --yes --wipesignatures y --name lv-root-new --size ${4 * GiB}b vgroup`);
    expect(argvs).toContain('lvrename vgroup lv-root lv-root-prev');
    expect(argvs).toContain('lvrename vgroup lv-root-new lv-root');
    expect(argvs.some((a) => /lvremove .*vgroup\/lv-root$/.test(a))).toBe(false);
    expect(formatPlan(plan)).toMatch(/the old one is kept as vgroup\/lv-root-prev/);
    for (const c of plan.checks ?? []) await c.run();
  });

  it("with another box's identity (replicate A onto B), writes it into the new root after the restore", () => {
    const plan = planFingerprintRecovery(ctx, {
      ...input(state(8 * GiB, [lv('lv-root', 4 * GiB, { kind: 'origin' })])),
      identity: { hostname: 'box-b', ip: '10.0.0.9/24' },
    });
    const titles = plan.steps.map((s) => s.title);
    const at = (re: RegExp) => titles.findIndex((t) => re.test(t));
    expect(at(/host name box-b, address 10\.0\.0\.9\/24/)).toBeGreaterThan(at(/restore into the new root/));
    expect(at(/host name box-b/)).toBeLessThan(at(/unmount .*recover-root/));
    expect(formatPlan(plan)).toMatch(/recover-root\/etc\/hostname/);
  });

  it('its mkfs, mount and umount steps, pinned whole (issue 22: their argv moved to src/system/)', () => {
    const plan = planFingerprintRecovery(
      ctx,
      input(state(8 * GiB, [lv('lv-root', 4 * GiB, { kind: 'origin' })])),
    );
    const tools = (steps: readonly Step[]) =>
      steps.flatMap((s) =>
        isCommand(s) && ['mkfs.ext4', 'mount', 'umount'].includes(s.command.file)
          ? [{ title: s.title, ...s.command }]
          : [],
      );
    expect(tools(plan.steps)).toMatchInlineSnapshot(`
      [
        {
          "args": [
            "-q",
            "-L",
            "zs-root",
            "/dev/vgroup/lv-root-new",
          ],
          "file": "mkfs.ext4",
          "mutates": true,
          "timeoutMs": 600000,
          "title": "make its file system",
        },
        {
          "args": [
            "/dev/vgroup/lv-root-new",
            "/run/zshield/recover-root",
          ],
          "file": "mount",
          "mutates": true,
          "timeoutMs": 600000,
          "title": "mount the new root on /run/zshield/recover-root",
        },
        {
          "args": [
            "/dev/vdb1",
            "/run/zshield/recover-boot",
          ],
          "file": "mount",
          "mutates": true,
          "timeoutMs": 600000,
          "title": "mount the system's /boot on /run/zshield/recover-boot",
        },
        {
          "args": [
            "/run/zshield/recover-boot",
          ],
          "file": "umount",
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/recover-boot",
        },
        {
          "args": [
            "/run/zshield/recover-root",
          ],
          "file": "umount",
          "mutates": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/recover-root",
        },
      ]
    `);
    expect(tools(plan.always ?? [])).toMatchInlineSnapshot(`
      [
        {
          "args": [
            "-q",
            "/run/zshield/recover-boot",
          ],
          "file": "umount",
          "mutates": true,
          "okCodes": [
            0,
            1,
            32,
          ],
          "runsAfterAbort": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/recover-boot if still mounted",
        },
        {
          "args": [
            "-q",
            "/run/zshield/recover-root",
          ],
          "file": "umount",
          "mutates": true,
          "okCodes": [
            0,
            1,
            32,
          ],
          "runsAfterAbort": true,
          "timeoutMs": 600000,
          "title": "unmount /run/zshield/recover-root if still mounted",
        },
      ]
    `);
  });

  it('refuses before any write when the VG has no room for a second root', async () => {
    const plan = planFingerprintRecovery(
      ctx,
      input(state(GiB, [lv('lv-root', 4 * GiB, { kind: 'origin' })])),
    );
    const checks = async () => {
      for (const c of plan.checks ?? []) await c.run();
    };
    await expect(checks()).rejects.toThrow(/needs 4\.0 GiB/);
  });
});

describe('history status and target setup', () => {
  const status = (over: Partial<HistoryStatus> = {}): HistoryStatus => ({
    dir: '/h',
    publicKey: null,
    catalog: { ok: true, entries: 1, backups: 1, newest: h('1'), newestTime: 't', error: null },
    maxLagHours: 48,
    targets: [],
    ...over,
  });
  it('fails on an unverified catalog (exit 10) and on a target further behind than maxLagHours (exit 11)', () => {
    expect(statusFailure(status())).toBeNull();
    expect(
      statusFailure(
        status({
          catalog: { ok: false, entries: 0, backups: 0, newest: null, newestTime: null, error: 'x' },
        }),
      ),
    ).toBeInstanceOf(VerifyError);
    const late = statusFailure(
      status({
        targets: [{ name: 'a', where: 'w', lagHours: 50, lacks: 2, ...emptyTargetState() }],
      }),
    );
    expect(late).toBeInstanceOf(RemoteError);
    expect(late?.message).toMatch(/a is 50 h behind \(lacks 2 backup/);
  });
  it('reads USER@HOST:DIR', () => {
    expect(parseTargetSpec('backup@10.0.0.5:/srv/z/')).toEqual({
      user: 'backup',
      server: '10.0.0.5',
      directory: '/srv/z',
    });
    expect(parseTargetSpec('u@[::1]:/d')).toEqual({ user: 'u', server: '::1', directory: '/d' });
    expect(() => parseTargetSpec('host:/d')).toThrow(/USER@HOST:DIR/);
    expect(() => parseTargetSpec('u@host:rel')).toThrow(/absolute/);
  });
});

describe('history verify: an honest summary', () => {
  const report = (over: Partial<VerifyReport>): VerifyReport => ({
    target: 'a',
    checked: 10,
    damaged: [],
    missing: 0,
    bytesBehind: 0,
    error: null,
    ...over,
  });
  it('says "intact" of the files it checked only, and counts what is not yet sent per target', () => {
    expect(verifySummary([report({}), report({ target: 'b', checked: 5 })])).toBe(
      'history: every file checked is intact (15 file(s) on 2 target(s)); nothing left to send',
    );
    const behind = verifySummary([
      report({}),
      report({ target: 'b', checked: 4, missing: 3, bytesBehind: 3 * 1024 * 1024 }),
    ]);
    expect(behind).toBe(
      'history: the 14 file(s) checked on 2 target(s) are intact; not yet sent: b lacks 3 file(s) (3.0 MiB); zshield history replicate sends them',
    );
    expect(behind).not.toMatch(/every file/);
  });
});

describe("a history target's errors speak of the target, not of remote.*", () => {
  const target = {
    name: 't2',
    type: 'sftp' as const,
    server: '10.0.0.9',
    port: 2222,
    user: 'zs',
    password: null,
    privateKey: '/k',
    hostKey: null,
    directory: '/srv/t2',
  };
  it('unreachable, refused login, no write permission: the same class (exit code), a hint naming the target', () => {
    const down = new TransientRemoteError('remote zs@10.0.0.9:2222: unreachable: connection refused', {
      hint: 'check remote.server and remote.port, and that the server is up',
    });
    expect(forTarget(down, target)).toBe(down);
    expect(down).toBeInstanceOf(TransientRemoteError);
    expect(down.hint).toBe(
      'check the server and port of history target t2 and that the server is up: zshield history target list shows them',
    );
    const login = new RemoteError(
      'remote zs@10.0.0.9:2222: authentication failed (the server refused the private key)',
      {
        hint: 'check remote.user, and the password (zshield config edit) or remote.privateKey',
      },
    );
    expect((forTarget(login, target) as RemoteError).hint).toMatch(
      /^check the user and the login key or password of history target t2/,
    );
    const perm = new RemoteError('remote zs@10.0.0.9:2222: permission denied: mkdir /srv/t2/repo', {
      hint: 'zs needs write permission on remote.destination',
    });
    expect((forTarget(perm, target) as RemoteError).hint).toBe(
      'zs must be able to read and write everything under /srv/t2 on 10.0.0.9',
    );
    // Anything else is left as it is.
    const other = new RemoteError('x', { hint: 'wait' });
    expect(forTarget(other, target)).toBe(other);
    expect(other.hint).toBe('wait');
  });
});
