import { mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { CommandError, RefusedError, UsageError, VerifyError } from '../errors.js';
import { runPlan } from '../plan/run.js';
import { writeJsonAtomic } from '../system/atomic-file.js';
import { type LockHandle, acquireLvmLock } from '../system/lock.js';
import { type LvInfo, lvsCommand, parseLvs, probeVg } from '../system/lvm.js';
import { withRetries } from '../system/retry.js';
import { requireTools } from '../system/tools.js';
import { hostKind, sumFileText } from './files.js';
import type { Identity } from './identity.js';
import { writeIdentity } from './identity-write.js';
import { claimImageJob } from './job.js';
import { blkidCommand, dumpe2fsCommand, type FsFacts, fsFacts, type Manifest } from './manifest.js';
import { type CreateActions, type CreatePlan, noActions } from './create-input.js';
import { overflowed } from './create-source.js';
import { planCreate } from './plan-create.js';
import { fsyncFile, manifestOf, publish, pruneOwn, removeLeftovers, writeDurable } from './create-files.js';
import { deviceOfDir, freeBytesAt } from './space.js';
import { asVerifyError, judgeContent } from './verify.js';
import { namesOf } from '../names/snapshots.js';

export interface CreateOptions {
  /** Wins over image.source. */
  source?: 'temporary' | 'snap0';
  /** How long to queue behind another holder of the LVM lock. */
  waitMs: number;
  /** The host part of the image's name; default this host's name (or the identity's). */
  kind?: string;
  /** Another network identity for the image (--hostname, --ip). */
  identity?: Identity | null;
  /** --dry-run --json: the plan as JSON. */
  json?: boolean;
}

export interface CreateOutcome {
  image: string;
  manifest: Manifest;
  /** The attempt that succeeded (1 = the first). */
  tries: number;
  /** Files of older images removed to keep image.keep. */
  pruned: string[];
}

/** Where the last image job's result is kept, for status. */
export const lastImageFile = (stateDir: string) => path.join(stateDir, 'last-image.json');

/**
 * `zshield image create`: a compressed image of lv-root's file system, from snap0 or from a
 * temporary snapshot, checked before it counts. One attempt is one plan (plan-create.ts) run by
 * runPlan: the steps shown are the steps run. A failed attempt leaves nothing behind (the plan's
 * `always` part); up to image.tries attempts are made. SIGINT or SIGTERM stops it the same way
 * (exit 9). Dry-run shows the plan of the first attempt.
 */
export async function runImageCreate(ctx: Context, opts: CreateOptions): Promise<CreateOutcome | null> {
  const cfg = ctx.config.image;
  const source = opts.source ?? cfg.source;
  const identity = opts.identity ?? null;
  // An image with another identity is the standby's: named, listed and pruned as its host.
  const kind = opts.kind ?? hostKind(identity?.hostname);
  await requireTools(ctx.runner, ['lvs', 'vgs', 'blkid', 'dumpe2fs']);
  if (identity && source === 'snap0') {
    // Checked again by planCreate; here so that it is refused before anything is claimed or probed.
    throw new UsageError(
      `--hostname needs a temporary snapshot (--source temporary): ${ctx.config.lvm.snapshot} is the restore point and is never modified`,
    );
  }
  const attempt = { source, kind, attempt: 1, waitMs: opts.waitMs, identity };
  if (ctx.dryRun) {
    const plan = await prepare(ctx, attempt, noActions);
    await runPlan(ctx, plan, { confirm: 'none', show: opts.json ? 'json' : 'out' });
    return null;
  }
  const job = claimImageJob(ctx.config.paths.runDir, 'image create', ctx.log);
  try {
    mkdirSync(cfg.dir, { recursive: true, mode: 0o755 });
    removeLeftovers(ctx, kind);
    return await withTries(ctx, attempt);
  } finally {
    job.release();
  }
}

/**
 * Up to image.tries attempts (system/retry.ts, no wait between them): a failed copy or check is
 * tried again from a new snapshot; an interruption never is.
 */
async function withTries(ctx: Context, o: Attempt): Promise<CreateOutcome> {
  const cfg = ctx.config.image;
  const started = ctx.clock.now();
  const msg = (err: unknown) => (err instanceof Error ? err.message : String(err));
  let tries = 0;
  let manifest: Manifest;
  try {
    manifest = await withRetries(
      (attempt) => {
        tries = attempt;
        return attemptImage(ctx, { ...o, attempt });
      },
      {
        tries: cfg.tries,
        baseDelayMs: 0,
        retryable: (err) =>
          (err instanceof VerifyError || err instanceof CommandError) && !ctx.signal.aborted,
        onRetry: (err, failed, all) =>
          ctx.log.warn(
            `image: attempt ${failed} of ${all} failed: ${msg(err)}; its files were removed, trying again`,
          ),
      },
    );
  } catch (err) {
    // The file's record: the caller reports the error itself (the CLI's one line, the daemon's own).
    ctx.log.toFile('error', `image: attempt ${tries} of ${cfg.tries} failed: ${msg(err)}; no image was kept`);
    record(ctx, { result: 'failed', at: started.toISOString(), tries, error: msg(err) });
    if (err instanceof VerifyError && cfg.tries > 1) {
      throw new VerifyError(`no verified image after ${tries} attempts: ${msg(err)}`, { cause: err });
    }
    throw err;
  }
  const image = path.join(cfg.dir, manifest.image);
  ctx.log.info(
    `image done: ${image} (${formatBytes(manifest.sizes.imageBytes)} for ${formatBytes(manifest.filesystem.usedBytes)} in use, SHA-256 ${manifest.checksums.sha256.slice(0, 16)}…, fsck ${manifest.verification.fsck})`,
  );
  const pruned = await pruneOwn(ctx, o.kind);
  record(ctx, { result: 'ok', at: started.toISOString(), image, tries });
  return { image, manifest, tries, pruned };
}

interface Attempt {
  source: 'temporary' | 'snap0';
  kind: string;
  attempt: number;
  waitMs: number;
  identity: Identity | null;
}

/** Probe, read the file system's facts, plan. */
async function prepare(ctx: Context, o: Attempt, actions: CreateActions): Promise<CreatePlan> {
  const names = namesOf(ctx.config);
  const state = await probeVg(ctx.runner, names.vg);
  // The space estimate needs the data's size before any snapshot exists: a temporary snapshot
  // holds what lv-root holds now, so lv-root's own superblock tells it (read-only, works mounted).
  const root = state.lvs.find((l) => l.name === names.root);
  const measured = state.lvs.find((l) => l.name === (o.source === 'snap0' ? names.snap : names.root));
  // An overflowed snap0 cannot even be read: planCreate refuses it with its own message.
  const readable = measured && !(o.source === 'snap0' && (measured.invalid || measured.kind !== 'snapshot'));
  const fs = readable ? await factsOf(ctx, measured.path || `/dev/${names.vg}/${measured.name}`) : null;
  return planCreate(
    {
      state,
      config: ctx.config,
      source: o.source,
      now: ctx.clock.now(),
      kind: o.kind,
      // planCreate refuses a missing source with its own message before it reads these.
      fs: fs ?? NO_FS,
      freeBytes: freeBytesAt(ctx.config.image.dir),
      dirOnRoot: onRoot(ctx.config.image.dir, root),
      identity: o.identity,
      signal: ctx.signal,
    },
    actions,
  );
}

const NO_FS: FsFacts = {
  type: 'ext4',
  uuid: null,
  label: null,
  blockSize: 0,
  blockCount: 0,
  freeBlocks: 0,
  sizeBytes: 0,
  usedBytes: 0,
};

function onRoot(dir: string, root: LvInfo | undefined): boolean {
  const dev = deviceOfDir(dir);
  return !!root && !!dev && root.kernelMajor === dev.major && root.kernelMinor === dev.minor;
}

async function factsOf(ctx: Context, device: string): Promise<FsFacts> {
  // blkid exits 2 when it finds nothing on the device: that is an answer, not a failure.
  const blkid = await ctx.runner.run({ ...blkidCommand(device), okCodes: [0, 2] });
  const dump = await ctx.runner.run({ ...dumpe2fsCommand(device), okCodes: [0, 1] });
  return checkedFacts(device, blkid.stdout, dump.stdout);
}

function checkedFacts(device: string, blkid: string, dumpe2fs: string): FsFacts {
  const facts = fsFacts(blkid, dumpe2fs);
  if (typeof facts === 'string') {
    throw new RefusedError(`${device} ${facts}: zshield images only ext2/3/4 file systems (e2image)`);
  }
  return facts;
}

/**
 * The LVM lock is held while snapshots are probed, made and removed, not for the long copy from a
 * temporary snapshot: that LV belongs to this job alone (no backup, repair or restore touches an LV
 * of that name, and the pid file keeps a second image job out), so the daily backup can rotate
 * snap0 meanwhile. Reading snap0 itself is different: a backup would remove it under e2image, so
 * for that source the lock is held until the copy is done. The plan says where it lets go.
 */
async function attemptImage(ctx: Context, o: Attempt): Promise<Manifest> {
  const job = new AttemptState(ctx, o);
  await job.lock();
  try {
    const plan = await prepare(ctx, o, job.actions());
    job.plan = plan;
    await runPlan(ctx, plan, { confirm: 'none', show: 'log' }).catch((err: unknown) => {
      if (err instanceof CommandError && plan.findings.snapshotOverflowed) throw overflowed(plan.source);
      throw asVerifyError(err, plan.verify);
    });
    return job.manifest!;
  } finally {
    await job.unlock();
  }
}

/** One attempt's lock, plan and result, and the actions its plan calls. */
class AttemptState {
  plan: CreatePlan | null = null;
  manifest: Manifest | null = null;
  private held: LockHandle | null = null;
  private readonly t0: Date;

  constructor(
    private readonly ctx: Context,
    private readonly o: Attempt,
  ) {
    this.t0 = ctx.clock.now();
  }

  async lock(): Promise<void> {
    if (this.held) return;
    this.held = await acquireLvmLock({
      runDir: this.ctx.config.paths.runDir,
      log: this.ctx.log,
      purpose: `image (${this.o.source})`,
      // After SIGTERM there is little time (systemd kills after 90 s): do not queue for long.
      waitMs: this.ctx.signal.aborted ? Math.min(this.o.waitMs, 30_000) : this.o.waitMs,
    });
  }

  async unlock(): Promise<void> {
    const l = this.held;
    this.held = null;
    await l?.release();
  }

  actions(): CreateActions {
    return {
      unlock: () => this.unlock(),
      snapshotState: () => this.snapshotState(),
      makeMountPoint: (mnt) => mkdirSync(mnt, { recursive: true, mode: 0o700 }),
      writeIdentity: (mnt, id) => writeIdentity(this.ctx.log, mnt, id),
      finish: () => this.finish(),
      publish: () => publish(this.plan!),
      removeFiles: (files) => {
        for (const f of files) rmSync(f, { force: true });
      },
    };
  }

  /** Probed with commands that run after SIGTERM too: the cleanup needs the answer then. */
  private async snapshotState(): Promise<'gone' | 'valid' | 'invalid'> {
    await this.lock();
    const { vg, snapshot } = this.plan!.source;
    const out = await this.ctx.runner.run({ ...lvsCommand(vg), runsAfterAbort: true });
    const lv = parseLvs(out.stdout).find((l) => l.vg === vg && l.name === snapshot);
    return !lv ? 'gone' : lv.invalid ? 'invalid' : 'valid';
  }

  private async finish(): Promise<void> {
    const plan = this.plan!;
    const fs = checkedFacts(plan.source.device, plan.findings.blkid, plan.findings.dumpe2fs);
    const copy = plan.verify.unpack ? plan.paths.rawPart : null;
    const content = judgeContent(this.ctx, plan.verify, copy, fs.sizeBytes);
    if (content.rawBytes !== fs.sizeBytes) {
      throw new VerifyError(
        `image verification failed: it unpacks to ${content.rawBytes} bytes, the file system has ${fs.sizeBytes}`,
      );
    }
    fsyncFile(plan.paths.imagePart);
    const imageBytes = statSync(plan.paths.imagePart).size;
    // The hash of the bytes as tee wrote them; from snap0 the image was also unpacked and checked.
    const sha256 = plan.findings.sha256;
    if (!/^[0-9a-f]{64}$/.test(sha256))
      throw new VerifyError('image: sha256sum gave no checksum of the image');
    this.ctx.log.info(`image: written ${formatBytes(imageBytes)}, SHA-256 ${sha256}`);
    const manifest = manifestOf(this.ctx, plan, this.o, { fs, content, sha256, imageBytes, t0: this.t0 });
    writeDurable(plan.paths.sumPart, sumFileText(sha256, manifest.image));
    writeDurable(plan.paths.manifestPart, `${JSON.stringify(manifest, null, 2)}\n`);
    this.manifest = manifest;
  }
}

interface ImageRecord {
  result: 'ok' | 'failed';
  at: string;
  tries: number;
  image?: string;
  error?: string;
}

function record(ctx: Context, rec: ImageRecord): void {
  try {
    writeJsonAtomic(ctx.writes, lastImageFile(ctx.config.paths.stateDir), rec);
  } catch (err) {
    ctx.log.warn(`could not record the image result: ${(err as Error).message}`);
  }
}
