import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { NotFoundError } from '../errors.js';
import { readLiveDaemon } from '../state/daemon-info.js';
import { nextDailyRun } from '../state/schedule.js';
import {
  describeCutRotation,
  type HealthLevel,
  labelOf,
  type LastBackup,
  readLastBackup,
  snapshotHealth,
  stateAfterRepair,
} from '../restore-point/index.js';
import { FACTORY_TAG, OFFBOX_RESTORE_TAG, RESTORE_TAG } from '../names/lvm-tags.js';
import { describeUnfinished, unfinishedImageRestore } from '../image/index.js';
import { namesOf } from '../names/snapshots.js';
import { probeVg } from '../system/lvm.js';
import { lvmScopeOf } from '../system/lvm-scope.js';
import { type RecoveryEvent, readEvents } from '../state/events.js';
import { requireTools } from '../system/tools.js';
import { gatherHistoryStatus, type HistoryStatus, hours } from '../history/index.js';
import { formatImages, gatherImages, type ImagesStatus } from './images.js';

export interface StatusReport {
  vg: { name: string; sizeBytes: number; freeBytes: number } | null;
  root: { name: string; sizeBytes: number; mergePending: boolean } | null;
  snapshot: {
    name: string;
    present: boolean;
    valid: boolean;
    merging: boolean;
    fillPercent: number | null;
    sizeBytes: number | null;
    reason: string | null;
    time: string | null;
    ageSeconds: number | null;
  };
  health: { level: HealthLevel; message: string };
  rotationInterrupted: boolean;
  /**
   * What the cut rotation leaves once repaired (the restore point shown above is already that
   * one: status shows what every writer's repair would leave).
   */
  rotationNote: string | null;
  /** A factory reset or a restore was started and not finished (the next boot finishes it). */
  recoveryPending: 'factory-reset' | 'offbox-restore' | 'restore' | 'image-restore' | null;
  /** What the unfinished recovery is, in words (an image restore names its image), or null. */
  recoveryNote: string | null;
  /** The last recovery events (newest last), from the event log on /boot. */
  events: RecoveryEvent[];
  /**
   * The last backup run: the newer of its two records (beside the event log, in stateDir), unless
   * snap0's tags tell of a newer one; with a note when snap0 contradicts the record.
   */
  lastBackup: LastBackup | null;
  /** Image backups of this host in image.dir; null when image backup is not in use. */
  images: ImagesStatus | null;
  /** The history (catalog and targets, from local files); absent when it was never set up. */
  history?: HistoryStatus | null;
  daemon: {
    running: boolean;
    pid: number | null;
    nextRun: string | null;
    lastHealth: string | null;
    /** When the running daemon last checked the snapshot's health (null: no daemon running). */
    lastCheck: string | null;
  };
  /**
   * VGs of the same name on other disks: zshield's LVM commands are restricted to the system
   * disk's PVs and never see them (empty when there is none).
   */
  foreignVgs: { name: string; uuid: string; disks: string[] }[];
}

/** A factory reset, a restore or an image restore started and not finished (the VG's marks say so). */
function recoveryPendingOf(
  state: { vg: { tags: string[] } } | null,
): Pick<StatusReport, 'recoveryPending' | 'recoveryNote'> {
  const tags = state?.vg.tags ?? [];
  if (tags.includes(FACTORY_TAG)) return { recoveryPending: 'factory-reset', recoveryNote: null };
  if (tags.includes(OFFBOX_RESTORE_TAG)) {
    return {
      recoveryPending: 'offbox-restore',
      recoveryNote:
        'the root restored from the off-box copy may be incomplete: the golden medium runs the restore again at its next boot (recovery file, or questions on the console)',
    };
  }
  if (tags.includes(RESTORE_TAG)) return { recoveryPending: 'restore', recoveryNote: null };
  const image = state ? unfinishedImageRestore(state.vg) : null;
  if (image) return { recoveryPending: 'image-restore', recoveryNote: describeUnfinished(image) };
  return { recoveryPending: null, recoveryNote: null };
}

/** Gather everything `zshield status` shows. Reads only; takes no lock. */
export async function gatherStatus(ctx: Context): Promise<StatusReport> {
  const names = namesOf(ctx.config);
  await requireTools(ctx.runner, ['lvs', 'vgs']);
  const now = ctx.clock.now();
  const daemon = readLiveDaemon(ctx.config.paths.runDir);
  let state: Awaited<ReturnType<typeof probeVg>> | null = null;
  try {
    state = await probeVg(ctx.runner, names.vg);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  // A rotation cut short is shown as the repair that every writer runs first will leave it.
  const rotationNote = state ? describeCutRotation(state, names) : null;
  const view = state ? stateAfterRepair(state, names) : null;
  const root = view?.lvs.find((l) => l.name === names.root);
  const snap = view?.lvs.find((l) => l.name === names.snap);
  const label = snap ? labelOf(snap) : null;
  const lastBackup = readLastBackup(
    ctx.config,
    snap && label
      ? {
          name: `${names.vg}/${names.snap}`,
          time: label.time,
          reason: label.reason,
          valid: snap.kind === 'snapshot' && !snap.invalid,
        }
      : null,
    !!state,
  );
  const health = state
    ? root
      ? snapshotHealth(snap, ctx.config)
      : { level: 'error' as const, message: `logical volume ${names.vg}/${names.root} not found` }
    : { level: 'error' as const, message: `volume group ${names.vg} not found` };
  const nextRun = daemon
    ? daemon.nextRun
    : nextDailyRun({
        now,
        at: ctx.config.daemon.dailyAt,
        lastBackup: label?.time ?? null,
        startedAt: now,
        catchUp: ctx.config.daemon.catchUp,
      }).toISOString();
  return {
    vg: state ? { name: state.vg.name, sizeBytes: state.vg.sizeBytes, freeBytes: state.vg.freeBytes } : null,
    root: root ? { name: root.name, sizeBytes: root.sizeBytes, mergePending: root.merging } : null,
    snapshot: {
      name: names.snap,
      present: !!snap,
      valid: !!snap && snap.kind === 'snapshot' && !snap.invalid,
      merging: !!snap?.merging,
      fillPercent: snap?.snapPercent ?? null,
      sizeBytes: snap?.sizeBytes ?? null,
      reason: label?.reason ?? null,
      time: label?.time?.toISOString() ?? null,
      ageSeconds: label?.time ? Math.round((now.getTime() - label.time.getTime()) / 1000) : null,
    },
    health,
    rotationInterrupted: rotationNote !== null,
    rotationNote,
    ...recoveryPendingOf(state),
    events: readEvents(ctx.config.paths.eventLog).slice(-5),
    lastBackup,
    images: await gatherImages(ctx.config),
    history: historyInUse(ctx) ? gatherHistoryStatus(ctx) : null,
    daemon: {
      running: !!daemon,
      pid: daemon?.pid ?? null,
      nextRun,
      lastHealth: daemon?.lastHealth ?? null,
      lastCheck: daemon?.lastCheck ?? null,
    },
    foreignVgs: await foreignVgs(ctx),
  };
}

/** Same-named VGs on other disks, as the runner's LVM scope found them (none when not scoped). */
async function foreignVgs(ctx: Context): Promise<StatusReport['foreignVgs']> {
  const scope = await lvmScopeOf(ctx.runner);
  return (scope?.others ?? []).map((v) => ({ name: v.name, uuid: v.uuid, disks: v.disks }));
}

export function formatStatus(r: StatusReport): string {
  const lines: string[] = [];
  const mark = r.health.level === 'ok' ? 'OK' : r.health.level === 'warn' ? 'WARNING' : 'ERROR';
  lines.push(`health:        ${mark}: ${r.health.message}`);
  lines.push(
    r.vg
      ? `volume group:  ${r.vg.name}, ${formatBytes(r.vg.sizeBytes)}, ${formatBytes(r.vg.freeBytes)} free`
      : 'volume group:  not found',
  );
  for (const v of r.foreignVgs) {
    lines.push(
      `other disk:    ${v.disks.join(' + ')} holds another volume group named ${v.name} (uuid ${v.uuid}): not this system's, never touched`,
    );
  }
  if (r.root) {
    lines.push(
      `root:          ${r.root.name}, ${formatBytes(r.root.sizeBytes)}${r.root.mergePending ? ', restore (merge) pending' : ''}`,
    );
  }
  const s = r.snapshot;
  if (!s.present) lines.push(`restore point: none (${s.name} does not exist)`);
  else {
    const state = s.merging ? 'merging' : s.valid ? 'valid' : 'INVALID';
    const fill = s.fillPercent === null ? 'fill unknown' : `${s.fillPercent.toFixed(1)}% full`;
    const size = s.sizeBytes === null ? '' : ` of ${formatBytes(s.sizeBytes)}`;
    lines.push(`restore point: ${s.name}, ${state}, ${fill}${size}`);
    lines.push(
      `  taken:       ${s.time ?? 'unknown'}${s.ageSeconds === null ? '' : ` (${formatAge(s.ageSeconds)} ago)`}, reason: ${s.reason ?? 'unknown'}`,
    );
  }
  if (r.rotationInterrupted)
    lines.push(
      `rotation:      INTERRUPTED: ${r.rotationNote ?? 'cut short'}; the next backup (or the daemon) repairs it`,
    );
  if (r.recoveryPending) {
    lines.push(`recovery:      ${r.recoveryPending.toUpperCase()} UNFINISHED; the next boot finishes it`);
    if (r.recoveryNote) lines.push(`  ${r.recoveryNote}`);
  }
  for (const e of r.events) {
    lines.push(
      `event:         ${e.at} ${e.event} ${e.result}: ${e.detail}${e.snapshotTime ? ` (restore point of ${e.snapshotTime}, ${e.snapshotReason ?? '?'})` : ''}`,
    );
  }
  const lb = r.lastBackup;
  lines.push(
    lb
      ? `last backup:   ${lb.result === 'ok' ? 'ok' : `FAILED: ${lb.error}`} (${lb.reason}, ${lb.at})${lb.note ? `; ${lb.note}` : ''}`
      : 'last backup:   no record',
  );
  if (r.images) lines.push(...formatImages(r.images));
  if (r.history) lines.push(...formatHistoryLines(r.history));
  lines.push(
    r.daemon.running
      ? `daemon:        running (pid ${r.daemon.pid}), next daily backup ${r.daemon.nextRun ?? 'unknown'}`
      : `daemon:        not running; a daemon would take the daily backup ${r.daemon.nextRun ?? 'unknown'}`,
  );
  return lines.join('\n');
}

/** The history is shown once it was set up (a public key pinned) or is meant to run. */
const historyInUse = (ctx: Context) =>
  ctx.config.history.enabled ||
  ctx.config.history.publicKey !== null ||
  ctx.config.history.targets.length > 0;

function formatHistoryLines(h: HistoryStatus): string[] {
  const c = h.catalog;
  const lines = [
    c.ok
      ? `history:       ${c.backups} backup(s) in the catalog (verified); newest ${c.newest ?? 'none'}${c.newestTime ? ` (${c.newestTime})` : ''}`
      : `history:       catalog NOT VERIFIED: ${c.error}`,
  ];
  for (const t of h.targets)
    lines.push(
      `  target ${t.name}: ${t.lacks ? `${hours(t.lagHours)} h behind (lacks ${t.lacks} backup(s))${t.lagHours > h.maxLagHours ? `, more than history.maxLagHours (${h.maxLagHours})` : ''}` : 'has every backup'}${t.lastError ? `; last error: ${t.lastError}` : ''}`,
    );
  return lines;
}

function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}
