import {
  closeSync,
  existsSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { CommandError, RefusedError, UsageError, VerifyError } from '../errors.js';
import { namesOf } from '../snapshot/rotation.js';
import { writeJsonAtomic } from '../state/store.js';
import { type LockHandle, acquireLvmLock } from '../system/lock.js';
import { type LvInfo, probeVg } from '../system/lvm.js';
import { argvOf } from '../system/runner.js';
import { requireTools } from '../system/tools.js';
import { VERSION } from '../version.js';
import {
  ARCHIVE_MEMBER,
  hostKind,
  listImages,
  planPrune,
  type PrunePlan,
  sumFileText,
  sha256File,
} from './files.js';
import { claimImageJob } from './job.js';
import {
  blkidCommand,
  dumpe2fsCommand,
  type FsFacts,
  fsFacts,
  MANIFEST_FORMAT,
  type Manifest,
} from './manifest.js';
import { type Identity, readHostname, rewriteHosts, rewriteInterfaces } from './identity.js';
import {
  type CreatePlan,
  formatImagePlan,
  type IdentityPlan,
  identityMountPoint,
  planCreate,
} from './plan.js';
import { withProgress } from './progress.js';
import { applyPrune } from './prune.js';
import { deviceOfDir, freeBytesAt } from './space.js';
import { checkContent } from './verify.js';

export interface CreateOptions {
  /** Wins over image.source. */
  source?: 'temporary' | 'snap0';
  /** How long to queue behind another holder of the LVM lock. */
  waitMs: number;
  /** The host part of the image's name; default this host's name (or the identity's). */
  kind?: string;
  /** Another network identity for the image (--hostname, --ip). */
  identity?: Identity | null;
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
 * temporary snapshot, checked before it counts. One attempt: probe and plan under the LVM lock,
 * make the temporary snapshot, copy (e2image | zstd), remove the snapshot, verify the written file
 * (checksum, unpack, fsck, look inside), write checksum and manifest, give all three their final
 * names. A failed attempt leaves nothing behind; up to image.tries attempts are made. SIGINT or
 * SIGTERM stops it the same way (exit 9). Dry-run shows the plan of the first attempt.
 */
export async function runImageCreate(ctx: Context, opts: CreateOptions): Promise<CreateOutcome | null> {
  const cfg = ctx.config.image;
  const source = opts.source ?? cfg.source;
  const identity = opts.identity ?? null;
  // An image with another identity is the standby's: named, listed and pruned as its host.
  const kind = opts.kind ?? hostKind(identity?.hostname);
  await requireTools(ctx.runner, [
    'lvs',
    'vgs',
    'blkid',
    'dumpe2fs',
    'e2image',
    'zstd',
    'e2fsck',
    'debugfs',
    ...(source === 'temporary' ? ['lvcreate', 'lvremove'] : []),
  ]);
  if (identity && source === 'snap0') {
    // Checked again by planCreate; here so that it is refused before anything is claimed or probed.
    throw new UsageError(
      `--hostname needs a temporary snapshot (--source temporary): ${ctx.config.lvm.snapshot} is the restore point and is never modified`,
    );
  }
  if (ctx.dryRun) {
    const plan = await prepare(ctx, source, kind, identity);
    ctx.out.print(formatImagePlan(plan));
    return null;
  }
  const job = claimImageJob(ctx.config.paths.runDir, 'image create', ctx.log);
  const started = ctx.clock.now();
  try {
    mkdirSync(cfg.dir, { recursive: true, mode: 0o755 });
    removeLeftovers(ctx, kind);
    for (let attempt = 1; ; attempt++) {
      try {
        const manifest = await attemptImage(ctx, { source, kind, attempt, waitMs: opts.waitMs, identity });
        const image = path.join(cfg.dir, manifest.image);
        ctx.log.info(
          `image done: ${image} (${formatBytes(manifest.sizes.imageBytes)} for ${formatBytes(manifest.filesystem.usedBytes)} in use, SHA-256 ${manifest.checksums.sha256.slice(0, 16)}…, fsck ${manifest.verification.fsck})`,
        );
        const pruned = pruneOwn(ctx, kind);
        record(ctx, { result: 'ok', at: started.toISOString(), image, tries: attempt });
        return { image, manifest, tries: attempt, pruned };
      } catch (err) {
        const retryable = (err instanceof VerifyError || err instanceof CommandError) && !ctx.signal.aborted;
        const msg = err instanceof Error ? err.message : String(err);
        if (retryable && attempt < cfg.tries) {
          ctx.log.warn(
            `image: attempt ${attempt} of ${cfg.tries} failed: ${msg}; its files were removed, trying again`,
          );
          continue;
        }
        // The file's record: the caller reports the error itself (the CLI's one line, the daemon's own).
        ctx.log.toFile(
          'error',
          `image: attempt ${attempt} of ${cfg.tries} failed: ${msg}; no image was kept`,
        );
        record(ctx, { result: 'failed', at: started.toISOString(), tries: attempt, error: msg });
        if (err instanceof VerifyError && cfg.tries > 1) {
          throw new VerifyError(`no verified image after ${attempt} attempts: ${msg}`, { cause: err });
        }
        throw err;
      }
    }
  } finally {
    job.release();
  }
}

/** Probe, read the file system's facts, plan. */
async function prepare(
  ctx: Context,
  source: 'temporary' | 'snap0',
  kind: string,
  identity: Identity | null,
  signal?: AbortSignal,
): Promise<CreatePlan> {
  const names = namesOf(ctx.config);
  const state = await probeVg(ctx.runner, names.vg);
  // The space estimate needs the data's size before any snapshot exists: a temporary snapshot
  // holds what lv-root holds now, so lv-root's own superblock tells it (read-only, works mounted).
  const root = state.lvs.find((l) => l.name === names.root);
  const measured = state.lvs.find((l) => l.name === (source === 'snap0' ? names.snap : names.root));
  // An overflowed snap0 cannot even be read: planCreate refuses it with its own message.
  const readable = measured && !(source === 'snap0' && (measured.invalid || measured.kind !== 'snapshot'));
  const fs = readable ? await factsOf(ctx, measured.path || `/dev/${names.vg}/${measured.name}`) : null;
  return planCreate({
    state,
    config: ctx.config,
    source,
    now: ctx.clock.now(),
    kind,
    // planCreate refuses a missing source with its own message before it reads these.
    fs: fs ?? {
      type: 'ext4',
      uuid: null,
      label: null,
      blockSize: 0,
      blockCount: 0,
      freeBlocks: 0,
      sizeBytes: 0,
      usedBytes: 0,
    },
    freeBytes: freeBytesAt(ctx.config.image.dir),
    dirOnRoot: onRoot(ctx.config.image.dir, root),
    identity,
    ...(signal ? { signal } : {}),
  });
}

function onRoot(dir: string, root: LvInfo | undefined): boolean {
  const dev = deviceOfDir(dir);
  return !!root && !!dev && root.kernelMajor === dev.major && root.kernelMinor === dev.minor;
}

async function factsOf(ctx: Context, device: string): Promise<FsFacts> {
  // blkid exits 2 when it finds nothing on the device: that is an answer, not a failure.
  const blkid = await ctx.runner.run({ ...blkidCommand(device), okCodes: [0, 2] });
  const dump = await ctx.runner.run({ ...dumpe2fsCommand(device), okCodes: [0, 1] });
  const facts = fsFacts(blkid.stdout, dump.stdout);
  if (typeof facts === 'string') {
    throw new RefusedError(`${device} ${facts}: zshield images only ext2/3/4 file systems (e2image)`);
  }
  return facts;
}

interface Attempt {
  source: 'temporary' | 'snap0';
  kind: string;
  attempt: number;
  waitMs: number;
  identity: Identity | null;
}

/**
 * The LVM lock is held while snapshots are probed, made and removed, not for the long copy from a
 * temporary snapshot: that LV belongs to this job alone (no backup, repair or restore touches an LV
 * of that name, and the pid file keeps a second image job out), so the daily backup can rotate
 * snap0 meanwhile. Reading snap0 itself is different: a backup would remove it under e2image, so
 * for that source the lock is held until the copy is done.
 */
async function attemptImage(ctx: Context, o: Attempt): Promise<Manifest> {
  const t0 = ctx.clock.now();
  let lock: LockHandle | null = await acquireLvmLock({
    runDir: ctx.config.paths.runDir,
    log: ctx.log,
    purpose: `image (${o.source})`,
    waitMs: o.waitMs,
  });
  const unlock = async () => {
    const l = lock;
    lock = null;
    await l?.release();
  };
  let plan: CreatePlan | null = null;
  let snapshotMade = false;
  try {
    plan = await prepare(ctx, o.source, o.kind, o.identity, ctx.signal);
    for (const line of formatImagePlan(plan).split('\n')) ctx.log.info(line);
    if (existsSync(plan.paths.image)) {
      throw new RefusedError(`an image of this snapshot already exists: ${plan.paths.image}`, {
        hint: 'check it with zshield image verify, or remove it to make it again',
      });
    }
    if (plan.leftover) {
      // A job killed while the snapshot was mounted for its identity left the mount too.
      await unmountIfMounted(ctx, identityMountPoint(ctx.config));
      ctx.log.info(`image: ${plan.leftover.title}`);
      await ctx.runner.run(plan.leftover.command);
    }
    if (plan.createSnapshot) {
      ctx.log.info(`image: ${plan.createSnapshot.title}`);
      await ctx.runner.run(plan.createSnapshot.command);
      snapshotMade = true;
      await unlock();
    }
    if (plan.identity) await giveIdentity(ctx, plan.identity);
    // The manifest describes what was read: the snapshot's own superblock.
    const fs = await factsOf(ctx, plan.source.device);
    ctx.log.info(`image: ${plan.extract.title}`);
    try {
      await ctx.runner.pipeline(withProgress(ctx, plan.extract.pipeline));
    } catch (err) {
      if (err instanceof CommandError && plan.createSnapshot && (await tempSnapshotInvalid(ctx, plan))) {
        throw overflowed(plan);
      }
      throw err;
    }
    if (plan.removeSnapshot) {
      if (await tempSnapshotInvalid(ctx, plan)) throw overflowed(plan);
      await removeTempSnapshot(ctx, plan, o.waitMs);
      snapshotMade = false;
    }
    await unlock();
    ctx.log.info(`image: ${plan.copy.title}`);
    await ctx.runner.pipeline(plan.copy.pipeline);
    rmSync(plan.paths.rawPart, { force: true });
    await unlock();

    const imagePart = plan.paths.imagePart;
    fsyncFile(imagePart);
    const imageBytes = statSync(imagePart).size;
    ctx.log.info(`image: written ${formatBytes(imageBytes)}; computing its SHA-256`);
    const sha256 = await sha256File(imagePart, ctx.signal);
    const content = await checkContent(ctx, plan, plan.paths.rawPart);
    if (content.rawBytes !== fs.sizeBytes) {
      throw new VerifyError(
        `image verification failed: it unpacks to ${content.rawBytes} bytes, the file system has ${fs.sizeBytes}`,
      );
    }
    const zstd = plan.copy.pipeline.stages.at(-1)!;
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      image: path.basename(plan.paths.image),
      createdAt: ctx.clock.now().toISOString(),
      agent: { name: 'zshield', version: VERSION },
      host: { hostname: hostname(), kind: o.kind },
      source: {
        vg: plan.source.vg,
        lv: plan.source.lv,
        snapshot: plan.source.snapshot,
        kind: plan.source.kind,
        snapshotTime: plan.source.time.toISOString(),
        snapshotReason: plan.source.reason,
        lvSizeBytes: plan.source.lvSizeBytes,
      },
      filesystem: fs,
      compression: {
        format: 'zstd',
        // The options that shape the file (not where this run wrote it).
        command: argvOf(zstd).filter((a, i, all) => a !== '-f' && a !== '-o' && all[i - 1] !== '-o'),
        frameChecksum: zstd.args.includes('--check'),
      },
      archive: { format: 'tar-sparse', member: ARCHIVE_MEMBER },
      identity: plan.identity ? plan.identity.identity : null,
      sizes: { imageBytes, rawBytes: content.rawBytes },
      checksums: { sha256 },
      verification: {
        at: ctx.clock.now().toISOString(),
        fsck: content.fsck,
        contains: content.contains,
        tries: o.attempt,
      },
      durationMs: ctx.clock.now().getTime() - t0.getTime(),
    };
    writeDurable(plan.paths.sumPart, sumFileText(sha256, manifest.image));
    writeDurable(plan.paths.manifestPart, `${JSON.stringify(manifest, null, 2)}\n`);
    // Final names: the companions first, the image last, so an .img.zst under its final name
    // always has its checksum and manifest beside it.
    renameSync(plan.paths.sumPart, plan.paths.sum);
    renameSync(plan.paths.manifestPart, plan.paths.manifest);
    renameSync(imagePart, plan.paths.image);
    fsyncFile(plan.paths.dir);
    return manifest;
  } finally {
    if (snapshotMade && plan) {
      try {
        await removeTempSnapshot(ctx, plan, o.waitMs, lock);
      } catch (err) {
        ctx.log.error(
          `image: could not remove the temporary snapshot ${plan.source.vg}/${plan.source.snapshot}: ${(err as Error).message}; the next image job removes it`,
        );
      }
    }
    await unlock();
    if (plan) {
      for (const p of [
        plan.paths.imagePart,
        plan.paths.rawPart,
        plan.paths.sumPart,
        plan.paths.manifestPart,
      ]) {
        rmSync(p, { force: true });
      }
    }
  }
}

/**
 * Mount the job's own snapshot, write the other identity into it, unmount. The paths are checked to
 * stay inside the mounted snapshot: a symlink in the image (etc -> /etc) must not make zshield
 * rewrite the running system's files.
 */
async function giveIdentity(ctx: Context, ip: IdentityPlan): Promise<void> {
  mkdirSync(ip.mountPoint, { recursive: true, mode: 0o700 });
  ctx.log.info(`image: ${ip.mount.title}`);
  await ctx.runner.run(ip.mount.command);
  try {
    ctx.log.info(`image: ${ip.edit.title}`);
    const root = realpathSync(ip.mountPoint);
    const inside = (rel: string): string | null => {
      const full = path.join(root, rel);
      if (!existsSync(path.dirname(full))) return null;
      const dir = realpathSync(path.dirname(full));
      if (dir !== root && !dir.startsWith(`${root}/`)) {
        throw new RefusedError(
          `the image's /${path.dirname(rel)} leads outside it (a symlink): its identity is not changed`,
        );
      }
      const st = lstatSync(full, { throwIfNoEntry: false });
      if (st && !st.isFile()) {
        throw new RefusedError(`the image's /${rel} is not a regular file: its identity is not changed`);
      }
      return full;
    };
    const read = (rel: string) => {
      const f = inside(rel);
      return f && existsSync(f) ? readFileSync(f, 'utf8') : null;
    };
    const write = (rel: string, text: string) => {
      const f = inside(rel);
      if (!f) throw new RefusedError(`the image has no /${path.dirname(rel)}: its identity is not changed`);
      const mode = existsSync(f) ? statSync(f).mode & 0o7777 : 0o644;
      writeFileSync(f, text, { mode });
    };
    const id = ip.identity;
    const oldName = readHostname(read('etc/hostname') ?? '');
    let oldAddress: string | null = null;
    if (id.ip) {
      const ifaces = read('etc/network/interfaces');
      if (ifaces === null) {
        throw new RefusedError('the image has no /etc/network/interfaces: --ip has no address to change', {
          hint: 'make the image without --ip and set the address on the standby itself',
        });
      }
      const r = rewriteInterfaces(ifaces, id.ip);
      oldAddress = r.oldAddress;
      write('etc/network/interfaces', r.text);
    }
    write('etc/hostname', `${id.hostname}\n`);
    write('etc/hosts', rewriteHosts(read('etc/hosts') ?? '', { hostname: oldName, address: oldAddress }, id));
    ctx.log.info(
      `image: identity ${oldName ?? '(none)'} -> ${id.hostname}${id.ip ? `, ${oldAddress} -> ${id.ip}` : ''}`,
    );
  } finally {
    ctx.log.info(`image: ${ip.unmount.title}`);
    await ctx.runner.run(ip.unmount.command);
  }
}

async function unmountIfMounted(ctx: Context, mnt: string): Promise<void> {
  let mounts = '';
  try {
    mounts = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return;
  }
  if (mounts.split('\n').some((l) => l.split(' ')[1] === mnt)) {
    ctx.log.warn(`image: unmounting ${mnt}, left mounted by an image job that did not finish`);
    await ctx.runner.run({ file: 'umount', args: [mnt], mutates: true });
  }
}

async function tempSnapshotInvalid(ctx: Context, plan: CreatePlan): Promise<boolean> {
  const state = await probeVg(ctx.runner, plan.source.vg);
  const lv = state.lvs.find((l) => l.name === plan.source.snapshot);
  return !lv || lv.invalid;
}

function overflowed(plan: CreatePlan): VerifyError {
  return new VerifyError(
    `the temporary snapshot ${plan.source.vg}/${plan.source.snapshot} overflowed during the copy (too much was written to ${plan.source.lv} meanwhile)`,
    { hint: 'raise image.tempSnapshotSize, or make the image at a quieter time' },
  );
}

/** Remove the job's temporary snapshot under the LVM lock (taken here unless `held`). Runs after an abort too. */
async function removeTempSnapshot(
  ctx: Context,
  plan: CreatePlan,
  waitMs: number,
  held: LockHandle | null = null,
): Promise<void> {
  if (!plan.removeSnapshot) return;
  const lock =
    held ??
    (await acquireLvmLock({
      runDir: ctx.config.paths.runDir,
      log: ctx.log,
      purpose: 'image (remove the temporary snapshot)',
      // After SIGTERM there is little time (systemd kills after 90 s): do not queue for long.
      waitMs: ctx.signal.aborted ? Math.min(waitMs, 30_000) : waitMs,
    }));
  try {
    ctx.log.info(`image: ${plan.removeSnapshot.title}`);
    await ctx.runner.run(plan.removeSnapshot.command);
  } finally {
    if (!held) await lock.release();
  }
}

/** Stale work files and orphaned companions of this host's images (no job runs: we hold the pid file). */
function removeLeftovers(ctx: Context, kind: string): void {
  const listing = listImages(ctx.config.image.dir);
  const own = {
    images: listing.images.filter((e) => e.kind === kind),
    parts: listing.parts.filter((f) => f.name.startsWith(`zshield-${kind}-`)),
  };
  const plan = planPrune(own, Number.MAX_SAFE_INTEGER, false);
  for (const f of [...plan.parts, ...plan.orphans]) {
    ctx.log.warn(`image: removing ${f.path}, left by an image job that did not finish`);
    rmSync(f.path, { force: true });
  }
}

function pruneOwn(ctx: Context, kind: string): string[] {
  const listing = listImages(ctx.config.image.dir);
  const plan: PrunePlan = planPrune(
    { images: listing.images.filter((e) => e.kind === kind), parts: [] },
    ctx.config.image.keep,
    true,
  );
  try {
    return applyPrune(ctx, plan);
  } catch (err) {
    ctx.log.warn(`image: pruning old images failed: ${(err as Error).message}`);
    return [];
  }
}

function writeDurable(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o644 });
  fsyncFile(file);
}

function fsyncFile(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
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
    writeJsonAtomic(lastImageFile(ctx.config.paths.stateDir), rec);
  } catch (err) {
    ctx.log.warn(`could not record the image result: ${(err as Error).message}`);
  }
}
