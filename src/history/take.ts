import { isMountPoint } from '../system/mounts.js';
import { targetWhere } from '../config/history.js';
import { mkdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { formatBytes, resolveSize } from '../config/size.js';
import type { Context } from '../context.js';
import { NotFoundError, RefusedError, UsageError, ZshieldError } from '../errors.js';
import { acquireLvmLock } from '../system/lock.js';
import { lvRemoveCommand, probeVg, snapshotAllocation, snapshotCreateCommand } from '../system/lvm.js';
import { TAG_REASON, TAG_TIME } from '../names/lvm-tags.js';
import { type Command, commandOf } from '../system/command.js';
import { VERSION } from '../version.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import type { SigningKey } from '../system/signing.js';
import { appendCatalog, catalogFile, repoFilesRecord, verifyCatalog } from './catalog.js';
import { replicateLocked } from './replicate.js';
import { historyLock } from './target-select.js';
import { catalogKey, repoDir, resticFor } from './repo.js';
import type { BackupSummary, Restic } from './restic.js';
import { mountArgv, umountArgv } from '../system/mount-commands.js';

/**
 * `history take`: lv-root's file tree, read from a snapshot, into the local repository; its
 * fingerprint into the catalog. The snapshot is mounted read-only with `noload`: ext4 would
 * otherwise replay its journal, which writes, into the restore point itself.
 */

export const TEMP_SNAPSHOT = 'zshield-history';

export interface TakeOptions {
  reason: string;
  /** A block device or file system image to read instead of a snapshot of lv-root. */
  device?: string;
  /** Replicate to every target afterwards (the daemon's way). */
  replicate?: boolean;
}

export interface TakeOutcome extends BackupSummary {
  incomplete: boolean;
  host: string;
  time: string;
}

interface Source {
  device: string;
  title: string;
  /** Made for the take and removed after it. */
  cleanup: Command | null;
}

export async function runHistoryTake(ctx: Context, opts: TakeOptions): Promise<TakeOutcome | null> {
  const h = ctx.config.history;
  let restic: Restic | null = null;
  let key: SigningKey | null = null;
  let outcome: TakeOutcome | null = null;
  const what = opts.device ?? `${h.source === 'snap0' ? 'snap0' : 'a temporary snapshot'} of lv-root`;
  const plan: Plan = {
    title: `Back up ${what} into the history (${h.dir}/repo)`,
    notes: [
      `read-only, noload, mounted at ${h.mountPoint}; the snapshot's fingerprint goes into the signed catalog`,
      'a take cut off (a power cut) leaves no catalog entry: its snapshot, if restic finished it, is never replicated, and the lock it left is removed by the next history job',
    ],
    checks: [
      {
        title: 'the catalog verifies (an entry is added only to a catalog that does)',
        run: async () => {
          key = await catalogKey(ctx);
          verifyCatalog(h.dir, key.publicText);
        },
      },
      {
        title: 'the repository opens with history.password',
        run: async () => {
          restic = resticFor(ctx);
          await restic.open();
        },
      },
      {
        title: `the source is readable (${what})`,
        run: async () => {
          if (opts.device !== undefined) checkDevice(opts.device);
          else await probeSource(ctx);
        },
      },
    ],
    steps: [
      {
        title: 'back up the tree and add its fingerprint to the catalog',
        edit: {
          files: [repoDir(h), catalogFile(h.dir)],
          apply: async () => {
            outcome = await takeLocked(ctx, opts, restic!, key!);
          },
        },
      },
      ...(opts.replicate && h.targets.length
        ? [
            {
              title: `replicate to ${h.targets.map((t) => t.name).join(', ')}`,
              edit: {
                files: h.targets.map(targetWhere),
                apply: async () => {
                  await replicateLocked(ctx, h.targets);
                },
              },
            },
          ]
        : []),
    ],
  };
  const lock = await historyLock(ctx, 'history take');
  try {
    await runPlan(ctx, plan, { confirm: 'none', show: ctx.dryRun ? 'out' : 'log' });
    return outcome;
  } finally {
    await lock.release();
  }
}

async function takeLocked(
  ctx: Context,
  opts: TakeOptions,
  restic: Restic,
  key: SigningKey,
): Promise<TakeOutcome> {
  const h = ctx.config.history;
  await restic.unlockStale();
  const host = hostname();
  const time = ctx.clock.now().toISOString();
  const source = await openSource(ctx, opts, time);
  let summary: BackupSummary & { incomplete: boolean };
  try {
    summary = await backupMounted(ctx, source, restic, { host, time, reason: opts.reason });
  } finally {
    if (source.cleanup) await ctx.runner.run({ ...source.cleanup, runsAfterAbort: true });
  }
  appendCatalog(ctx.writes, h.dir, key, [
    {
      kind: 'backup',
      files: repoFilesRecord(h.dir, repoDir(h), key.publicText),
      fingerprint: summary.snapshotId,
      time,
      host,
      reason: opts.reason,
      version: VERSION,
      sizes: {
        bytes: summary.totalBytesProcessed,
        files: summary.totalFilesProcessed,
        added: summary.dataAdded,
      },
    },
  ]);
  ctx.out.print(
    `history: ${summary.snapshotId} (${summary.totalFilesProcessed} files, ${formatBytes(summary.totalBytesProcessed)}; ${formatBytes(summary.dataAdded)} new in the repository)${summary.incomplete ? ' INCOMPLETE: some files could not be read, see the log' : ''}`,
  );
  return { ...summary, host, time };
}

/** What openSource would fail on, found by reading only (a dry run's check). */
async function probeSource(ctx: Context): Promise<void> {
  const { vg, rootLv, snapshot } = ctx.config.lvm;
  const state = await probeVg(ctx.runner, vg);
  if (!state.lvs.some((l) => l.name === rootLv))
    throw new NotFoundError(`logical volume ${vg}/${rootLv} not found`);
  if (ctx.config.history.source !== 'snap0') return;
  const snap = state.lvs.find((l) => l.name === snapshot);
  if (!snap)
    throw new NotFoundError(`no restore point ${vg}/${snapshot} to read`, {
      hint: 'take one with zshield backup, or set history.source to temporary',
    });
  if (snap.invalid)
    throw new RefusedError(`${vg}/${snapshot} is invalid (it overflowed): its tree cannot be read`);
}

function checkDevice(device: string): void {
  const st = statSync(device, { throwIfNoEntry: false });
  if (!st) throw new NotFoundError(`${device} does not exist`);
  if (!st.isBlockDevice() && !st.isFile())
    throw new UsageError(`${device} is neither a block device nor a file system image`);
}

/** The device to read: the one given, snap0, or a temporary snapshot made now (under the LVM lock). */
async function openSource(ctx: Context, opts: TakeOptions, time: string): Promise<Source> {
  const { vg, rootLv, snapshot } = ctx.config.lvm;
  if (opts.device !== undefined) {
    const device = path.resolve(opts.device);
    return { device, title: device, cleanup: null };
  }
  const state = await probeVg(ctx.runner, vg);
  const root = state.lvs.find((l) => l.name === rootLv);
  if (!root) throw new NotFoundError(`logical volume ${vg}/${rootLv} not found`);
  if (ctx.config.history.source === 'snap0') {
    const snap = state.lvs.find((l) => l.name === snapshot);
    if (!snap)
      throw new NotFoundError(`no restore point ${vg}/${snapshot} to read`, {
        hint: 'take one with zshield backup, or set history.source to temporary',
      });
    if (snap.invalid)
      throw new RefusedError(`${vg}/${snapshot} is invalid (it overflowed): its tree cannot be read`);
    return { device: snap.path, title: `${vg}/${snapshot}`, cleanup: null };
  }
  const stale = state.lvs.find((l) => l.name === TEMP_SNAPSHOT);
  const lock = await acquireLvmLock({
    runDir: ctx.config.paths.runDir,
    log: ctx.log,
    purpose: 'history take',
    waitMs: 0,
  });
  try {
    // A take killed before its cleanup left its snapshot: it holds nothing anyone needs.
    if (stale) await ctx.runner.run(lvRemoveCommand(vg, TEMP_SNAPSHOT));
    // What LVM really allocates: whole extents (a byte size that is not one fails to parse).
    const size = snapshotAllocation(
      resolveSize(ctx.config.history.tempSnapshotSize, root.sizeBytes),
      root.sizeBytes,
      state.vg.extentBytes,
    );
    const free = state.vg.freeBytes + (stale?.sizeBytes ?? 0);
    if (size > free)
      throw new RefusedError(
        `no room for the take's snapshot: ${formatBytes(size)} wanted, ${formatBytes(free)} free in ${vg}`,
        {
          hint: 'set history.tempSnapshotSize lower, or history.source to snap0',
        },
      );
    await ctx.runner.run(
      snapshotCreateCommand({
        vg,
        origin: rootLv,
        name: TEMP_SNAPSHOT,
        sizeBytes: size,
        tags: [`${TAG_REASON}history`, `${TAG_TIME}${Math.floor(Date.parse(time) / 1000)}`],
      }),
    );
  } finally {
    await lock.release();
  }
  return {
    device: `/dev/${vg}/${TEMP_SNAPSHOT}`,
    title: `a temporary snapshot of ${vg}/${rootLv}`,
    cleanup: lvRemoveCommand(vg, TEMP_SNAPSHOT),
  };
}

async function backupMounted(
  ctx: Context,
  source: Source,
  restic: Restic,
  meta: { host: string; time: string; reason: string },
): Promise<BackupSummary & { incomplete: boolean }> {
  const mnt = ctx.config.history.mountPoint;
  mkdirSync(mnt, { recursive: true, mode: 0o700 });
  mkdirSync(ctx.config.history.cacheDir, { recursive: true, mode: 0o700 });
  if (isMountPoint(mnt)) {
    ctx.log.warn(`history: unmounting ${mnt}, left mounted by a take that did not finish`);
    await ctx.runner.run(commandOf(umountArgv(mnt), { mutates: true }));
  }
  const loop = statSync(source.device).isFile() ? ',loop' : '';
  ctx.log.info(`history: reading ${source.title} at ${mnt} (read-only, noload)`);
  await ctx.runner.run(
    commandOf(mountArgv(source.device, mnt, { options: `ro,noload${loop}` }), { mutates: true }),
  );
  try {
    let lastPct = -10;
    return await restic.backup(mnt, {
      host: meta.host,
      tags: [`host=${meta.host}`, `reason=${meta.reason}`, `time=${meta.time}`, `version=${VERSION}`],
      onProgress: (pct, bytes) => {
        if (pct - lastPct < 10) return;
        lastPct = pct;
        ctx.log.info(`history take: ${Math.floor(pct)}% (${formatBytes(bytes)} read)`);
      },
    });
  } finally {
    await ctx.runner.run(commandOf(umountArgv(mnt), { mutates: true, runsAfterAbort: true }));
  }
}

/**
 * For the daemon, after the daily backup: when history.enabled, a take (replicated to every
 * target). Never throws: a failure is logged, the backup's own outcome stands, and the targets'
 * state says what they lack for the next run to send.
 */
export async function historyAfterBackup(ctx: Context): Promise<void> {
  if (!ctx.config.history.enabled) return;
  try {
    ctx.log.info('daemon: history take after the daily backup');
    await runHistoryTake(ctx, { reason: 'daily', replicate: true });
  } catch (err) {
    const msg =
      err instanceof ZshieldError && err.hint ? `${err.message} (${err.hint})` : (err as Error).message;
    ctx.log.error(`daemon: history take failed: ${msg}`);
  }
}
