import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/restore-point/backup.js';
import { judgeLastBackup } from '../../src/restore-point/last-backup.js';
import { formatStatus, gatherStatus } from '../../src/status/status.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, type TestContext, tempDir, testContext } from './helpers/context.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { epoch, GiB, type LvRow } from './helpers/lvm-json.js';

const ROOT: LvRow = { name: 'lv-root', attr: '-wi-ao----', size: 10 * GiB, major: 253, minor: 200 };
const T1 = new Date(Date.UTC(2026, 10, 20, 3, 0, 0));
const T2 = new Date(Date.UTC(2026, 10, 21, 9, 30, 0));
const T3 = new Date(Date.UTC(2026, 10, 21, 11, 0, 0));

/**
 * The rollback, as far as files are concerned: "Recover to latest backup" merges snap0 into
 * lv-root, so stateDir (inside lv-root) is put back as it was when snap0 was taken, while /boot
 * (the event log's partition) and the VG metadata (snap0's tags) are not.
 */
describe('the last-backup record survives a rollback of lv-root', () => {
  let dir: string;
  let cleanup: () => void;
  let lvm: FakeLvm;
  let clock: FakeClock;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    lvm = new FakeLvm({ vg: { freeExtents: 2000 }, lvs: [ROOT] });
    clock = new FakeClock(T1);
  });
  afterEach(() => cleanup());

  const ctxWith = (edit?: (c: TestContext['config']) => void): TestContext =>
    testContext({ runner: lvm.install(new RecordingRunner()), dir, clock, edit: (c) => edit?.(c) });
  const stateFile = () => path.join(dir, 'state', 'last-backup.json');
  const bootFile = () => path.join(dir, 'boot', 'last-backup.json');

  /** Two backups, T1 (daily) then T2 (pre-upgrade); returns stateDir's record as snap0 (of T2) holds it. */
  async function twoBackups(ctx: TestContext): Promise<string> {
    lvm.createTime = epoch(T1);
    await runBackup(ctx, { reason: 'daily', waitMs: 0 });
    // snap0 of T2 is taken before the T2 run writes its record: it holds the T1 record.
    const asInSnapshot = readFileSync(stateFile(), 'utf8');
    clock.set(T2);
    lvm.createTime = epoch(T2);
    await runBackup(ctx, { reason: 'pre-upgrade', waitMs: 0 });
    return asInSnapshot;
  }

  /** The merge: stateDir rolled back, snap0 consumed. */
  function rollBack(asInSnapshot: string): void {
    writeFileSync(stateFile(), asInSnapshot);
    lvm.lvs = lvm.lvs.filter((l) => l.name !== 'snap0');
    lvm.find('lv-root')!.attr = '-wi-ao----';
  }

  /** The post-restore backup, taken from the golden medium: snap0 exists, no record of it here. */
  function postRestoreSnapshot(at: Date): void {
    lvm.lvs.push({
      name: 'snap0',
      attr: 'swi-a-s---',
      size: 2 * GiB,
      origin: 'lv-root',
      snapPercent: '0.01',
      tags: ['zshield_reason=post-restore', `zshield_time=${epoch(at)}`],
      minor: 50,
    });
    lvm.find('lv-root')!.attr = 'owi-aos---';
  }

  it('a record written, then the old file put back: status still reports the real latest backup', async () => {
    const ctx = ctxWith();
    const asInSnapshot = await twoBackups(ctx);
    rollBack(asInSnapshot);
    // stateDir now says the last backup is T1's: the dishonest answer status used to give.
    expect(JSON.parse(readFileSync(stateFile(), 'utf8'))).toMatchObject({
      reason: 'daily',
      at: T1.toISOString(),
    });
    clock.set(T3);
    const report = await gatherStatus(ctx);
    expect(report.lastBackup).toMatchObject({
      result: 'ok',
      reason: 'pre-upgrade',
      at: T2.toISOString(),
      snapshotTime: T2.toISOString(),
      from: bootFile(),
      note: 'vgroup/snap0 no longer exists (merged by a restore, or removed)',
    });
    expect(formatStatus(report)).toContain(
      `last backup:   ok (pre-upgrade, ${T2.toISOString()}); vgroup/snap0 no longer exists (merged by a restore, or removed)`,
    );
  });

  it('after the restore took its new snap0 (from the golden medium, no record): that is the last backup', async () => {
    const ctx = ctxWith();
    rollBack(await twoBackups(ctx));
    postRestoreSnapshot(T3);
    const report = await gatherStatus(ctx);
    expect(report.lastBackup).toMatchObject({
      result: 'ok',
      reason: 'post-restore',
      at: T3.toISOString(),
      from: 'vgroup/snap0 tags',
    });
    expect(report.lastBackup?.note).toContain(`the newest record is of ${T2.toISOString()}`);
    expect(formatStatus(report)).toMatch(
      new RegExp(
        `^last backup: +ok \\(post-restore, ${T3.toISOString()}\\); known from vgroup/snap0's tags only`,
        'm',
      ),
    );
  });

  it('/boot not writable: the record falls back to stateDir with a warning; snap0 still overrules a rolled-back one', async () => {
    // The event log's directory is a plain file: nothing can be written beside it.
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'no-boot'), '');
    const ctx = ctxWith((c) => {
      c.paths.eventLog = path.join(dir, 'no-boot', 'events.jsonl');
    });
    const asInSnapshot = await twoBackups(ctx);
    expect(
      ctx.log.lines.some((l) =>
        /^warn: could not record the backup result in .*no-boot.*kept in .*state/.test(l),
      ),
    ).toBe(true);
    // Without a rollback, the fallback record is the truth.
    expect((await gatherStatus(ctx)).lastBackup).toMatchObject({
      reason: 'pre-upgrade',
      from: stateFile(),
      note: null,
    });
    rollBack(asInSnapshot);
    postRestoreSnapshot(T3);
    expect((await gatherStatus(ctx)).lastBackup).toMatchObject({
      reason: 'post-restore',
      at: T3.toISOString(),
    });
  });

  it('a later failed run is the last backup, over an older snap0', async () => {
    const ctx = ctxWith();
    await twoBackups(ctx);
    clock.set(T3);
    lvm.failOnce('lvcreate', { exitCode: 5, stderr: '  Insufficient free space\n' });
    await expect(runBackup(ctx, { reason: 'manual', waitMs: 0 })).rejects.toThrow();
    const report = await gatherStatus(ctx);
    expect(report.lastBackup).toMatchObject({
      result: 'failed',
      reason: 'manual',
      at: T3.toISOString(),
      note: null,
    });
    expect(report.snapshot.time).toBe(T2.toISOString());
  });
});

describe('judgeLastBackup', () => {
  const rec = (at: Date, extra: object = {}) => ({
    result: 'ok' as const,
    reason: 'daily',
    at: at.toISOString(),
    durationMs: 1000,
    snapshot: 'vgroup/snap0',
    ...extra,
  });
  const snap = (time: Date, valid = true) => ({ name: 'vgroup/snap0', time, reason: 'daily', valid });

  it('the record of the snapshot that is snap0: believed as it is', () => {
    const r = judgeLastBackup([{ file: '/boot/zshield/last-backup.json', rec: rec(T2) }], snap(T2), true);
    expect(r).toMatchObject({ at: T2.toISOString(), note: null, from: '/boot/zshield/last-backup.json' });
  });

  it('the newer of the two records wins; a tie goes to the one outside lv-root', () => {
    const a = { file: 'boot', rec: rec(T1) };
    const b = { file: 'state', rec: rec(T2) };
    expect(judgeLastBackup([a, b], snap(T2), true)?.from).toBe('state');
    expect(judgeLastBackup([{ file: 'boot', rec: rec(T2) }, b], snap(T2), true)?.from).toBe('boot');
  });

  it('a record whose snapshot snap0 contradicts (snap0 older) or that overflowed says so', () => {
    expect(
      judgeLastBackup([{ file: 'f', rec: rec(T2, { snapshotTime: T2.toISOString() }) }], snap(T1), true)
        ?.note,
    ).toBe(`vgroup/snap0 is not this backup any more (it is of ${T1.toISOString()})`);
    expect(judgeLastBackup([{ file: 'f', rec: rec(T2) }], snap(T2, false), true)?.note).toBe(
      'vgroup/snap0 is INVALID (overflowed): not a usable restore point',
    );
  });

  it('unreadable or malformed records are ignored; no VG probed: no claim about snap0', () => {
    expect(judgeLastBackup([{ file: 'f', rec: null }], null, true)).toBeNull();
    expect(judgeLastBackup([{ file: 'f', rec: { ...rec(T1), at: 'soon' } }], null, true)).toBeNull();
    expect(judgeLastBackup([{ file: 'f', rec: rec(T1) }], null, false)?.note).toBeNull();
  });
});
