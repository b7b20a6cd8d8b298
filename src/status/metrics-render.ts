import type { StatusReport } from './status.js';

/**
 * zshield's state as Prometheus metrics (the text exposition format node_exporter's textfile
 * collector reads). A pure function of what `status --json` reports, plus each history target's
 * newest copy, so the two never disagree. Names follow Prometheus' conventions: the zshield_
 * prefix, base units in the name (_seconds, _bytes, _ratio), _timestamp_seconds for points in
 * time. A value zshield does not know (no restore point: no age) is left out rather than made 0:
 * an alert on `absent()` or on the present flag says so, a 0 age would say "just taken".
 */

export interface HistoryTargetMetrics {
  target: string;
  /** When the newest backup that target holds was taken (catalog time), or null for none. */
  newestTime: Date | null;
  bytesBehind: number;
  lastSuccess: Date | null;
}

export interface MetricsInput {
  status: StatusReport;
  history: HistoryTargetMetrics[];
  version: string;
  now: Date;
}

type Labels = Record<string, string>;
interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  samples: { labels?: Labels; value: number }[];
}

const seconds = (d: Date | string) => Math.round(new Date(d).getTime() / 1000);
const flag = (b: boolean) => (b ? 1 : 0);

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function line(name: string, s: { labels?: Labels; value: number }): string {
  const entries = Object.entries(s.labels ?? {});
  const labels = entries.length ? `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
  return `${name}${labels} ${Number.isFinite(s.value) ? s.value : 'NaN'}`;
}

/** Adds a family when it has samples: a value zshield does not know is left out, not made 0. */
type Add = (name: string, help: string, samples: Family['samples'], type?: Family['type']) => void;

/** The restore point (snap0): presence, validity, age, copy-on-write use and health. */
function restorePointFamilies(add: Add, r: StatusReport): void {
  const s = r.snapshot;
  add('zshield_restore_point_present', 'whether the restore point (snap0) exists', [
    { value: flag(s.present) },
  ]);
  add('zshield_restore_point_valid', 'whether the restore point is a valid snapshot (not overflowed)', [
    { value: flag(s.present && s.valid) },
  ]);
  if (s.time) {
    add('zshield_restore_point_timestamp_seconds', 'when the restore point was taken, with its reason', [
      { labels: { reason: s.reason ?? 'unknown' }, value: seconds(s.time) },
    ]);
  }
  if (s.ageSeconds !== null)
    add('zshield_restore_point_age_seconds', 'age of the restore point when this file was written', [
      { value: s.ageSeconds },
    ]);
  if (s.fillPercent !== null)
    add(
      'zshield_snapshot_cow_used_ratio',
      "share of the snapshot's copy-on-write store in use (1: invalid)",
      [{ value: Math.round(s.fillPercent * 100) / 10000 }],
    );
  if (s.sizeBytes !== null)
    add('zshield_snapshot_cow_size_bytes', "size of the snapshot's copy-on-write store", [
      { value: s.sizeBytes },
    ]);
  add('zshield_health', 'the snapshot health judgement of status (1 for the current level)', [
    ...(['ok', 'warn', 'error'] as const).map((level) => ({
      labels: { level },
      value: flag(r.health.level === level),
    })),
  ]);
}

/** The last backup run and an interrupted rotation. */
function backupFamilies(add: Add, r: StatusReport): void {
  const lb = r.lastBackup;
  if (lb) {
    add(
      'zshield_last_backup_timestamp_seconds',
      'when the last backup run ended, with its reason and result',
      [{ labels: { reason: lb.reason, result: lb.result }, value: seconds(lb.at) }],
    );
    add('zshield_last_backup_success', 'whether the last backup run succeeded', [
      { value: flag(lb.result === 'ok') },
    ]);
  }
  add('zshield_rotation_interrupted', 'a rotation was cut short (the next backup repairs it)', [
    { value: flag(r.rotationInterrupted) },
  ]);
}

/** An unfinished recovery and the newest recovery events. */
function recoveryFamilies(add: Add, r: StatusReport): void {
  add('zshield_recovery_pending', 'a factory reset or restore was started and not finished', [
    { labels: { kind: r.recoveryPending ?? 'none' }, value: flag(r.recoveryPending !== null) },
  ]);
  // The newest event of each kind and result among those status shows.
  const newest = new Map<string, { labels: Labels; value: number }>();
  for (const e of r.events) {
    const t = seconds(e.at);
    if (!Number.isFinite(t)) continue;
    newest.set(`${e.event}/${e.result}`, { labels: { event: e.event, result: e.result }, value: t });
  }
  add('zshield_recovery_event_timestamp_seconds', 'the last recovery event of each kind and result', [
    ...newest.values(),
  ]);
}

/** The volume group's space and the newest image backup. */
function storageFamilies(add: Add, r: StatusReport): void {
  if (r.vg) {
    add('zshield_vg_size_bytes', 'size of the volume group', [{ value: r.vg.sizeBytes }]);
    add('zshield_vg_free_bytes', 'free space in the volume group', [{ value: r.vg.freeBytes }]);
  }
  const img = r.images?.newest;
  if (img) {
    add('zshield_last_image_timestamp_seconds', 'when the newest image backup of this host was taken', [
      { labels: { verified: String(img.verified) }, value: seconds(img.time) },
    ]);
    if (img.sizeBytes !== null)
      add('zshield_last_image_size_bytes', 'size of the newest image backup of this host', [
        { value: img.sizeBytes },
      ]);
  }
}

/** Each off-box history target: the age of its newest copy, what it lacks, its last success. */
function historyFamilies(add: Add, history: HistoryTargetMetrics[], now: Date): void {
  add(
    'zshield_history_newest_age_seconds',
    'age of the newest backup an off-box history target holds',
    history
      .filter((h) => h.newestTime)
      .map((h) => ({
        labels: { target: h.target },
        value: Math.round((now.getTime() - h.newestTime!.getTime()) / 1000),
      })),
  );
  add(
    'zshield_history_behind_bytes',
    'bytes of the local repository an off-box history target lacked when last listed',
    history.map((h) => ({ labels: { target: h.target }, value: h.bytesBehind })),
  );
  add(
    'zshield_history_last_success_timestamp_seconds',
    'when the last replication to a target succeeded',
    history
      .filter((h) => h.lastSuccess)
      .map((h) => ({ labels: { target: h.target }, value: seconds(h.lastSuccess!) })),
  );
}

export function metricFamilies(input: MetricsInput): Family[] {
  const { status: r, now } = input;
  const f: Family[] = [];
  const add: Add = (name, help, samples, type = 'gauge') => {
    if (samples.length) f.push({ name, help, type, samples });
  };
  add('zshield_info', 'zshield version (value 1)', [{ labels: { version: input.version }, value: 1 }]);
  restorePointFamilies(add, r);
  backupFamilies(add, r);
  recoveryFamilies(add, r);
  storageFamilies(add, r);
  historyFamilies(add, input.history, now);
  if (r.daemon.running && r.daemon.lastCheck) {
    add(
      'zshield_daemon_last_check_timestamp_seconds',
      "when the running daemon last checked the restore point's health",
      [{ value: seconds(r.daemon.lastCheck) }],
    );
  }
  return f;
}

/** The text file's content: HELP and TYPE before each family's samples. */
export function renderMetrics(input: MetricsInput): string {
  const out: string[] = [];
  for (const fam of metricFamilies(input)) {
    out.push(`# HELP ${fam.name} ${fam.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
    out.push(`# TYPE ${fam.name} ${fam.type}`);
    for (const s of fam.samples) out.push(line(fam.name, s));
  }
  return `${out.join('\n')}\n`;
}
