import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runDaemon } from '../../src/daemon/daemon.js';
import { writeDaemonInfo } from '../../src/state/daemon-info.js';
import { renderMetrics } from '../../src/status/metrics-render.js';
import { writeMetrics } from '../../src/status/metrics-write.js';
import { gatherStatus } from '../../src/status/status.js';
import { writeJsonAtomic } from '../../src/system/atomic-file.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { VERSION } from '../../src/version.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { epoch, GiB, type LvRow } from './helpers/lvm-json.js';
import { REAL_WRITES } from '../../src/system/writes.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const NOW = new Date(Date.UTC(2026, 10, 21, 14, 0, 0));
const TAKEN = new Date(Date.UTC(2026, 10, 21, 3, 0, 0));
const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 10 * GiB };
const SNAP: LvRow = {
  name: 'snap0',
  attr: 'swi-a-s---',
  size: 2 * GiB,
  origin: 'lv-root',
  snapPercent: '85.00',
  tags: ['zshield_reason=pre-upgrade', `zshield_time=${epoch(TAKEN)}`],
  minor: 3,
};

let promtool = '';
beforeAll(() => {
  // Debian's promtool, taken out of the prometheus package (build/promtool.sh; build/deps.sh runs it).
  promtool = execFileSync('bash', [path.join(REPO, 'build/promtool.sh')], { encoding: 'utf8' }).trim();
}, 120_000);

/** promtool's verdict on a file: lint problems included (it exits 0 only for a clean file). */
function promtoolCheck(file: string): { status: number | null; out: string } {
  const r = spawnSync(promtool, ['check', 'metrics'], { input: readFileSync(file), encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** name{labels} -> value, from the text format (HELP/TYPE lines skipped). */
function samples(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of text.split('\n')) {
    if (!l || l.startsWith('#')) continue;
    const i = l.lastIndexOf(' ');
    m.set(l.slice(0, i), Number(l.slice(i + 1)));
  }
  return m;
}

describe('metrics', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  const context = (lvm: FakeLvm, opts: { dryRun?: boolean; textfile?: string | null } = {}) =>
    testContext({
      runner: lvm.install(new RecordingRunner(opts.dryRun ?? false)),
      dir,
      clock: new FakeClock(NOW),
      dryRun: opts.dryRun,
      edit: (c) => {
        c.metrics.textfile =
          opts.textfile === undefined ? path.join(dir, 'textfile', 'zshield.prom') : opts.textfile;
        c.image.dir = path.join(dir, 'images');
      },
    });

  it('writes the restore point, its fill, the last backup and the daemon check from status data; promtool passes', async () => {
    mkdirSync(path.join(dir, 'textfile'));
    const ctx = context(new FakeLvm({ lvs: [ROOT, SNAP] }));
    writeJsonAtomic(REAL_WRITES, path.join(dir, 'boot', 'last-backup.json'), {
      at: new Date(TAKEN.getTime() + 5000).toISOString(),
      reason: 'pre-upgrade',
      result: 'ok',
      snapshot: 'vgroup/snap0',
      error: null,
      snapshotTime: TAKEN.toISOString(),
    });
    // A live daemon (this process' pid) that checked a minute ago.
    writeDaemonInfo(REAL_WRITES, ctx.config.paths.runDir, {
      pid: process.pid,
      startedAt: TAKEN.toISOString(),
      nextRun: null,
      lastCheck: new Date(NOW.getTime() - 60_000).toISOString(),
      lastHealth: 'warn: snap0 is 85% full',
    });
    const file = await writeMetrics(ctx);
    expect(file).toBe(path.join(dir, 'textfile', 'zshield.prom'));
    const text = readFileSync(file!, 'utf8');
    const check = promtoolCheck(file!);
    expect(check.out).toBe('');
    expect(check.status).toBe(0);
    const m = samples(text);
    expect(m.get(`zshield_info{version="${VERSION}"}`)).toBe(1);
    expect(m.get('zshield_restore_point_present')).toBe(1);
    expect(m.get('zshield_restore_point_valid')).toBe(1);
    expect(m.get('zshield_restore_point_timestamp_seconds{reason="pre-upgrade"}')).toBe(epoch(TAKEN));
    expect(m.get('zshield_restore_point_age_seconds')).toBe(11 * 3600);
    expect(m.get('zshield_snapshot_cow_used_ratio')).toBe(0.85);
    expect(m.get('zshield_snapshot_cow_size_bytes')).toBe(2 * GiB);
    expect(m.get('zshield_health{level="warn"}')).toBe(1);
    expect(m.get('zshield_health{level="ok"}')).toBe(0);
    expect(m.get('zshield_last_backup_timestamp_seconds{reason="pre-upgrade",result="ok"}')).toBe(
      epoch(TAKEN) + 5,
    );
    expect(m.get('zshield_last_backup_success')).toBe(1);
    expect(m.get('zshield_recovery_pending{kind="none"}')).toBe(0);
    expect(m.get('zshield_daemon_last_check_timestamp_seconds')).toBe(epoch(NOW) - 60);
    // The same numbers status --json reports.
    const report = await gatherStatus(ctx);
    expect(m.get('zshield_restore_point_age_seconds')).toBe(report.snapshot.ageSeconds);
    expect(m.get('zshield_vg_free_bytes')).toBe(report.vg!.freeBytes);
    // Atomic: nothing but the file itself is left in the folder.
    expect(readdirSync(path.join(dir, 'textfile'))).toEqual(['zshield.prom']);
  });

  it('says no restore point plainly, and a dead daemon leaves no last-check time', async () => {
    mkdirSync(path.join(dir, 'textfile'));
    const ctx = context(new FakeLvm({ lvs: [ROOT] }));
    writeDaemonInfo(REAL_WRITES, ctx.config.paths.runDir, {
      pid: 2 ** 22 + 12345, // above pid_max: no such process
      startedAt: TAKEN.toISOString(),
      nextRun: null,
      lastCheck: TAKEN.toISOString(),
      lastHealth: null,
    });
    const file = (await writeMetrics(ctx))!;
    expect(promtoolCheck(file)).toEqual({ status: 0, out: '' });
    const m = samples(readFileSync(file, 'utf8'));
    expect(m.get('zshield_restore_point_present')).toBe(0);
    expect(m.get('zshield_restore_point_valid')).toBe(0);
    expect(m.get('zshield_health{level="error"}')).toBe(1);
    for (const absent of [
      'zshield_restore_point_age_seconds',
      'zshield_snapshot_cow_used_ratio',
      'zshield_daemon_last_check_timestamp_seconds',
      'zshield_last_backup_success',
    ]) {
      expect(
        [...m.keys()].some((k) => k.startsWith(absent)),
        absent,
      ).toBe(false);
    }
  });

  it('skips a missing folder with one log line, and a dry run writes none', async () => {
    const missing = context(new FakeLvm({ lvs: [ROOT, SNAP] }), {
      textfile: path.join(dir, 'nowhere', 'z.prom'),
    });
    expect(await writeMetrics(missing)).toBeNull();
    expect(await writeMetrics(missing)).toBeNull();
    expect(missing.log.lines.filter((l) => l.includes('metrics:'))).toEqual([
      `info: metrics: ${path.join(dir, 'nowhere')} does not exist; no metrics file written (metrics.textfile)`,
    ]);
    mkdirSync(path.join(dir, 'textfile'));
    const dry = context(new FakeLvm({ lvs: [ROOT, SNAP] }), { dryRun: true });
    expect(await writeMetrics(dry)).toBeNull();
    expect(existsSync(path.join(dir, 'textfile', 'zshield.prom'))).toBe(false);
    const off = context(new FakeLvm({ lvs: [ROOT, SNAP] }), { textfile: null });
    expect(await writeMetrics(off)).toBeNull();
  });

  it('gives each history target its newest copy age, bytes behind and last success; images their time and size', async () => {
    mkdirSync(path.join(dir, 'textfile'));
    const ctx = context(new FakeLvm({ lvs: [ROOT, SNAP] }));
    const report = await gatherStatus(ctx);
    report.images = {
      dir: '/srv/images',
      host: 'box',
      schedule: 'daily',
      count: 1,
      newest: {
        file: 'box-20261121.img.gz',
        time: TAKEN.toISOString(),
        sizeBytes: 123456789,
        verified: true,
        fsck: null,
        problem: null,
      },
      jobPid: null,
      error: null,
    };
    report.events = [
      { at: '2026-11-01T10:00:00.000Z', event: 'restore', result: 'ok', detail: 'x' },
      { at: '2026-11-02T10:00:00.000Z', event: 'restore', result: 'ok', detail: 'y' },
      { at: '2026-11-03T10:00:00.000Z', event: 'factory-reset', result: 'failed', detail: 'z' },
    ];
    const text = renderMetrics({
      status: report,
      version: '1.2.3',
      now: NOW,
      history: [
        {
          target: 'offsite "a"',
          newestTime: new Date(NOW.getTime() - 3 * 86400_000),
          bytesBehind: 4096,
          lastSuccess: new Date(NOW.getTime() - 3 * 86400_000),
        },
        { target: 'b', newestTime: null, bytesBehind: 0, lastSuccess: null },
      ],
    });
    const file = path.join(dir, 'textfile', 'zshield.prom');
    (await import('node:fs')).writeFileSync(file, text);
    expect(promtoolCheck(file)).toEqual({ status: 0, out: '' });
    const m = samples(text);
    expect(m.get('zshield_history_newest_age_seconds{target="offsite \\"a\\""}')).toBe(3 * 86400);
    expect(m.has('zshield_history_newest_age_seconds{target="b"}')).toBe(false);
    expect(m.get('zshield_history_behind_bytes{target="offsite \\"a\\""}')).toBe(4096);
    expect(m.get('zshield_history_behind_bytes{target="b"}')).toBe(0);
    expect(m.get('zshield_history_last_success_timestamp_seconds{target="offsite \\"a\\""}')).toBe(
      epoch(NOW) - 3 * 86400,
    );
    expect(m.get('zshield_last_image_timestamp_seconds{verified="true"}')).toBe(epoch(TAKEN));
    expect(m.get('zshield_last_image_size_bytes')).toBe(123456789);
    expect(m.get('zshield_recovery_event_timestamp_seconds{event="restore",result="ok"}')).toBe(
      Date.parse('2026-11-02T10:00:00.000Z') / 1000,
    );
    expect(m.get('zshield_recovery_event_timestamp_seconds{event="factory-reset",result="failed"}')).toBe(
      Date.parse('2026-11-03T10:00:00.000Z') / 1000,
    );
  });

  it('the daemon rewrites the file after each health check: its daily backup and its check time show', async () => {
    mkdirSync(path.join(dir, 'textfile'));
    const yesterday = {
      ...SNAP,
      snapPercent: '10.00',
      tags: ['zshield_reason=daily', `zshield_time=${epoch(TAKEN) - 86400}`],
    };
    const ctx = context(new FakeLvm({ lvs: [ROOT, yesterday] }));
    ctx.config.daemon.checkEverySeconds = 1;
    const file = path.join(dir, 'textfile', 'zshield.prom');
    let writes = 0;
    const daemon = runDaemon(ctx, {
      reloadConfig: async () => ctx.config,
      afterCheck: async (c) => {
        if (await writeMetrics(c)) writes++;
      },
    });
    try {
      const deadline = Date.now() + 60_000; // a bound on a hang (the ticks are real 1 s timers)
      while (writes < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(writes).toBeGreaterThanOrEqual(2);
    } finally {
      process.emit('SIGTERM', 'SIGTERM');
      await daemon;
    }
    expect(promtoolCheck(file)).toEqual({ status: 0, out: '' });
    const m = samples(readFileSync(file, 'utf8'));
    // Catch-up took the daily backup at start (the fake clock stands still at NOW).
    expect(m.get('zshield_restore_point_timestamp_seconds{reason="daily"}')).toBe(epoch(NOW));
    expect(m.get('zshield_restore_point_age_seconds')).toBe(0);
    expect(m.get('zshield_daemon_last_check_timestamp_seconds')).toBe(epoch(NOW));
    expect(m.get('zshield_last_backup_success')).toBe(1);
  });

  it("rc/'s example alert rules pass promtool check rules and use only metrics zshield writes", () => {
    const rules = path.join(REPO, 'rc/zshield-alerts.rules.yml');
    const r = spawnSync(promtool, ['check', 'rules', rules], { encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toMatch(/SUCCESS: 5 rules found/);
    expect(r.status).toBe(0);
    const used = new Set(readFileSync(rules, 'utf8').match(/zshield_[a-z_]+/g));
    const source = readFileSync(path.join(REPO, 'src/status/metrics-render.ts'), 'utf8');
    for (const name of used) expect(source, name).toContain(`'${name}'`);
  });
});
