import { rmSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { UsageError, ZshieldError } from '../errors.js';
import { acquireLock, type LockHandle } from '../system/lock.js';
import { type Plan, type Step, planToJson } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { CopyRecords, copyRecordsFile, scanLocal } from './backups.js';
import { Connection } from '../ssh/connection.js';
import type { LocalFile } from '../ssh/files.js';
import { checkCredentials, remoteTarget, type Target } from '../ssh/credentials.js';
import {
  type CheckCandidate,
  type CopyPlan,
  classifyRemote,
  planChecks,
  planCopy,
  planRetention,
  type RemoteListing,
  type Upload,
  upload,
} from './copy-plan.js';
import { endpointText } from '../ssh/connect.js';
import { ensureSpace, identityOf, uploadFile } from '../ssh/transfer.js';
import { checkRemoteCopy } from '../ssh/check-copy.js';
import { RateLimiter } from '../ssh/progress.js';
import { PART_SUFFIX } from '../names/backup-files.js';
import { formatBytes } from '../config/size.js';
import { type CopyReport, printPlan, printRetention, printSummary } from './copy-report.js';

export interface CopyOptions {
  /** `--limit`: wins over remote.limit (which wins over the default, 5). */
  limit?: number;
  /** `--bwlimit` in KiB/s: wins over remote.bandwidthKiBps. */
  bandwidthKiBps?: number;
  /** The first pause between tries; it doubles each time, up to a minute. */
  retryBaseMs?: number;
  /** `--verify-all`: compare every file already on the remote by SHA-256, not only this run's share. */
  verifyAll?: boolean;
}

interface Run {
  ctx: Context;
  conn: Connection;
  target: Target;
  records: CopyRecords;
  report: CopyReport;
  listing: RemoteListing;
}

/**
 * `zshield remote copy`: copy what the remote lacks, compare a share of what it has by SHA-256
 * (all of it with --verify-all) and copy again what differs, then prune both sides to the limit.
 * The plan is made from the two listings and printed; dry-run stops there (it still connects and
 * lists, which changes nothing). Transfer failures of the link are retried with exponential
 * backoff, each try resuming where the last stopped; settings failures (authentication, host key,
 * permissions, a full remote disk) are not. Retention runs only after every planned file arrived
 * verified, and never counts a copy found to differ.
 */
export async function runRemoteCopy(ctx: Context, opts: CopyOptions = {}): Promise<CopyReport> {
  const target = remoteTarget(ctx);
  const limit = opts.limit ?? target.remote.limit;
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a whole number >= 1');
  const kibps = opts.bandwidthKiBps ?? target.remote.bandwidthKiBps;
  if (kibps !== null && (!Number.isFinite(kibps) || kibps <= 0))
    throw new UsageError('--bwlimit must be a number of KiB/s > 0');
  const credentials = await checkCredentials(ctx, target);
  const where = `${target.user}@${endpointText(target.endpoint)}:${target.destination}`;
  const lock = await acquireRemoteLock(ctx, where);
  const conn = new Connection(ctx, target, credentials, opts.retryBaseMs ?? 2000);
  // SIGINT/SIGTERM: drop the link, so a request waiting on the server (a checksum of a large file)
  // ends now; the part file stays for the next run to resume.
  const onAbort = () => conn.close();
  ctx.signal.addEventListener('abort', onAbort);
  try {
    const local = scanLocal(target.remote.sources, ctx.log);
    const listing = await conn.retry('list the destination', async (s) => {
      if (!ctx.dryRun) await s.mkdirs(target.destination);
      else if ((await s.isDirectory(target.destination)) !== true) return { files: [], parts: [] };
      return classifyRemote(await s.list(target.destination));
    });
    const records = new CopyRecords(ctx.writes, copyRecordsFile(ctx.config.paths.stateDir), where);
    const plan = planCopy(local, listing, limit, records.differs());
    const checks = planChecks(candidates(plan.present, records), target.remote.verifyCycle, !!opts.verifyAll);
    ctx.log.info(
      `remote copy to ${where}: ${plan.uploads.length} file(s) to copy, ${plan.present.length} already there (${checks.length} to check by SHA-256), ${plan.tooOld.length} over the limit of ${limit}`,
    );
    printPlan(ctx, where, plan, checks, target.remote.sources);
    const report: CopyReport = {
      target: where,
      limit,
      plan,
      checks,
      checked: [],
      copied: [],
      retention: planRetention(local, afterCopy(listing, plan), limit, records.differs()),
      deletedLocal: [],
      deletedRemote: [],
      dryRun: ctx.dryRun,
    };
    const run: Run = { ctx, conn, target, records, report, listing };
    const need = plan.uploads.reduce((n, u) => n + u.file.size - u.resumeFrom, 0);
    if (ctx.dryRun) printRetention(ctx, report.retention, true);
    const changes = changesOf(run, { local, need, limit, kibps, tooOld: plan.tooOld.length });
    report.planned = planToJson(changes);
    // With --json the report is the document (the plan is in it); a real run's plan goes to the log.
    const json = ctx.doc !== undefined;
    await runPlan(ctx, changes, {
      confirm: 'none',
      show: ctx.dryRun ? (json ? 'none' : 'out') : 'log',
    });
    if (ctx.dryRun) return report;
    printSummary(ctx, report);
    return report;
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    conn.close();
    await lock.release();
  }
}

/**
 * What a copy changes, as the plan runPlan shows and runs: each upload, the SHA-256 checks (which
 * copy again what differs), then retention from a fresh listing (it must see what is really there
 * now, not what was meant). The room on the remote is its check.
 */
function changesOf(
  run: Run,
  o: { local: LocalFile[]; need: number; limit: number; kibps: number | null; tooOld: number },
): Plan {
  const { ctx, conn, target, records, report } = run;
  const plan = report.plan;
  const remoteFile = (name: string) =>
    `${endpointText(target.endpoint)}:${path.posix.join(target.destination, name)}`;
  const limiter = o.kibps ? new RateLimiter(o.kibps * 1024) : null;
  const steps: Step[] = plan.uploads.map((u) => ({
    title: `${u.resumeFrom > 0 ? `resume ${u.file.name} at ${formatBytes(u.resumeFrom)}` : `${u.replaces !== null ? 'replace' : 'copy'} ${u.file.name}`} (${formatBytes(u.file.size)}), verified by SHA-256`,
    edit: { files: [remoteFile(u.file.name)], apply: () => runUploads(run, [u], limiter) },
  }));
  if (report.checks.length > 0) {
    steps.push({
      title: `compare ${report.checks.length} file(s) already there by SHA-256; copy again each that differs`,
      edit: {
        files: report.checks.map((c) => remoteFile(c.file.name)),
        apply: async () => {
          // What the checks found to differ is copied again, after every planned upload.
          const again = await runChecks(run);
          plan.uploads.push(...again);
          await runUploads(run, again, limiter);
        },
      },
    });
  }
  const r = report.retention;
  steps.push({
    title: `keep the newest ${o.limit} backups of each kind here and there (retention, from a fresh listing)`,
    edit: {
      files: [...r.deleteLocal.map((f) => f.path), ...r.deleteRemote.map(remoteFile)],
      apply: async () => {
        const after = await conn.retry('list the destination', async (s) =>
          classifyRemote(await s.list(target.destination)),
        );
        records.keepOnly(new Set(after.files.map((f) => f.name)));
        report.retention = planRetention(o.local, after, o.limit, records.differs());
        await applyRetention(ctx, conn, target, report);
      },
    },
  });
  return {
    title: `Remote copy to ${report.target} (keeping ${o.limit} of each kind)`,
    notes: [
      `${plan.uploads.length} file(s) to copy (${formatBytes(o.need)}), ${plan.present.length} already there, ${o.tooOld} older than the newest ${o.limit} of their kind`,
    ],
    checks: [
      {
        title: `the destination has room for ${formatBytes(o.need)}`,
        run: () =>
          conn.retry('check the free space', (s) =>
            ensureSpace(s, target.destination, `${plan.uploads.length} file(s)`, o.need),
          ),
      },
    ],
    steps,
  };
}

/** The files already on the remote, with what the records say of their last check. */
function candidates(present: readonly LocalFile[], records: CopyRecords): CheckCandidate[] {
  return present.map((file) => {
    const rec = records.byName.get(file.name);
    const st = statSync(file.path, { bigint: true, throwIfNoEntry: false });
    const changed = rec !== undefined && (!st || identityOf(st) !== rec.identity);
    return { file, checkedAt: rec?.checkedAt ?? null, changed };
  });
}

/** Compare the planned files by SHA-256; each that differs is recorded so and returned to upload. */
async function runChecks(run: Run): Promise<Upload[]> {
  const { ctx, conn, target, records, report } = run;
  const parts = new Map(run.listing.parts.map((p) => [p.name, p.size]));
  const again: Upload[] = [];
  for (const c of report.checks) {
    const name = c.file.name;
    const r = await conn.retry(`check ${name}`, (session) =>
      checkRemoteCopy({ session, file: c.file, destination: target.destination, signal: ctx.signal }),
    );
    report.checked.push({
      name,
      why: c.why,
      matches: r.matches,
      localSha256: r.localSha256,
      remoteSha256: r.remoteSha256,
      by: r.by,
    });
    if (r.matches) {
      records.set(name, {
        size: c.file.size,
        sha256: r.localSha256,
        identity: r.identity,
        checkedAt: ctx.clock.now().toISOString(),
      });
      ctx.log.info(`remote check: ${name} matches (SHA-256 ${r.localSha256.slice(0, 16)}…, by ${r.by})`);
      continue;
    }
    records.markDiffers(name);
    ctx.log.warn(
      `remote check: the remote copy of ${name} differs from the local file (SHA-256 ${r.remoteSha256.slice(0, 16)}… there, ${r.localSha256.slice(0, 16)}… here, by ${r.by}); copying it again`,
    );
    ctx.out.print(`  differs: ${name} (the remote copy does not match by SHA-256): copying it again`);
    again.push(upload(c.file, parts.get(name + PART_SUFFIX), c.file.size, true));
  }
  return again;
}

async function runUploads(run: Run, uploads: readonly Upload[], limiter: RateLimiter | null): Promise<void> {
  const { ctx, conn, target, records, report } = run;
  for (const up of uploads) {
    const r = await conn.retry(`copy ${up.file.name}`, (session) =>
      uploadFile({
        session,
        file: up.file,
        destination: target.destination,
        log: ctx.log,
        doc: ctx.doc,
        limiter,
        signal: ctx.signal,
      }),
    );
    records.set(up.file.name, {
      size: up.file.size,
      sha256: r.sha256,
      identity: r.identity,
      checkedAt: ctx.clock.now().toISOString(),
    });
    ctx.log.info(
      `remote copy: ${up.file.name} ${up.differs ? 'copied again (its remote copy differed)' : 'copied'} and verified (${formatBytes(up.file.size)}, SHA-256 ${r.sha256.slice(0, 16)}…, by ${r.verifiedBy}${r.resumedFrom ? `, resumed at ${formatBytes(r.resumedFrom)}` : ''})`,
    );
    report.copied.push({
      name: up.file.name,
      size: up.file.size,
      resumedFrom: r.resumedFrom,
      sent: r.sent,
      sha256: r.sha256,
      verifiedBy: r.verifiedBy,
      replacedDiffering: up.differs,
    });
  }
}

/** The listing as it will be once the plan's uploads are done (for the dry-run's retention). */
function afterCopy(listing: RemoteListing, plan: CopyPlan): RemoteListing {
  const names = new Set(plan.uploads.map((u) => u.file.name));
  return {
    files: [
      ...listing.files.filter((f) => !names.has(f.name)),
      ...plan.uploads.map((u) => ({ name: u.file.name, size: u.file.size })),
    ],
    parts: listing.parts.filter((p) => !names.has(p.name.replace(/\.zshield-part$/, ''))),
  };
}

/**
 * Retention as a plan run by runPlan: one in-process step per deletion (a local rm, a remote unlink
 * over SFTP), logged as `[i/n] delete ...` like every other plan. A local file that changed since it
 * was listed is not the file judged, and stays; a remote file already gone is nothing to do.
 */
async function applyRetention(
  ctx: Context,
  conn: Connection,
  target: Target,
  report: CopyReport,
): Promise<void> {
  const plan = report.retention;
  for (const k of plan.kept) {
    ctx.log.warn(`remote retention: kept ${k.where} backup ${k.kind} ${k.stamp} over the limit: ${k.reason}`);
  }
  const local: Step[] = plan.deleteLocal.map((f) => ({
    title: `delete local ${f.path} (retention)`,
    edit: {
      files: [f.path],
      apply: () => {
        const st = statSync(f.path, { throwIfNoEntry: false });
        if (!st) return;
        if (st.size !== f.size) {
          ctx.log.warn(`remote retention: ${f.path} changed since it was listed; not deleted`);
          return;
        }
        rmSync(f.path, { force: true });
        report.deletedLocal.push(f.path);
        ctx.log.info(`remote retention: deleted local ${f.path}`);
      },
    },
  }));
  const remote: Step[] = plan.deleteRemote.map((name) => {
    const file = path.posix.join(target.destination, name);
    return {
      title: `delete remote ${file} (retention)`,
      edit: {
        files: [`${endpointText(target.endpoint)}:${file}`],
        apply: async () => {
          const gone = await conn.retry(`delete ${name}`, async (s) => {
            if ((await s.size(file)) === null) return false;
            await s.unlink(file);
            return true;
          });
          if (!gone) return;
          report.deletedRemote.push(name);
          ctx.log.info(`remote retention: deleted remote ${file}`);
        },
      },
    };
  });
  if (local.length + remote.length === 0) return;
  await runPlan(
    ctx,
    {
      title: `Remote retention (keep ${report.limit} of each kind)`,
      notes: [],
      steps: [...local, ...remote],
    },
    { confirm: 'none', show: 'log' },
  );
}

/**
 * One remote copy at a time (the daemon's and a manual one would write the same part files). A
 * holder killed outright (the copy is long, and kill -9 or a power cut happens) leaves the lock
 * behind; the shared lock takes it over once its recorded pid is gone and it is no longer refreshed.
 */
function acquireRemoteLock(ctx: Context, where: string): Promise<LockHandle> {
  return acquireLock('remote', `remote copy to ${where}`, {
    runDir: ctx.config.paths.runDir,
    log: ctx.log,
    waitMs: 0,
    title: 'remote copy',
    busy: (who) => `another remote copy is running: ${who}`,
    hint: 'wait for it to finish',
  });
}

/** For the daemon: after a backup or image job, copy if the config asks for it. Never throws. */
export async function copyAfterJob(ctx: Context, job: 'backup' | 'image'): Promise<CopyReport | null> {
  const r = ctx.config.remote;
  if (!r.enabled || !r.after.includes(job)) return null;
  try {
    ctx.log.info(`remote copy after the ${job}`);
    return await runRemoteCopy(ctx);
  } catch (err) {
    const msg = err instanceof ZshieldError ? err.message : String((err as Error)?.message ?? err);
    ctx.log.error(`remote copy after the ${job} failed: ${msg}`);
    return null;
  }
}
