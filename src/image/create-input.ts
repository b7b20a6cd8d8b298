import path from 'node:path';
import type { Config } from '../config/schema.js';
import type { Plan } from '../plan/plan.js';
import type { VgState } from '../system/lvm.js';
import type { Command } from '../system/command.js';
import type { ImagePaths } from './files.js';
import type { Identity } from './identity.js';
import type { FsFacts } from './manifest.js';
import type { VerifySteps } from './plan-verify.js';

/**
 * What an image job's plan is made from (the facts read before it) and what it gives back: the
 * input, the actions its edit steps call, the findings gathered as it runs (plan-create.ts).
 */
/** The LV name of the image job's own snapshot of lv-root. Nothing else in zshield touches it. */
export const tempSnapshotName = (config: Config) => `${config.lvm.snapshot}-image`;

/** The image's size is unknown until it is written: plan for the data plus a tenth (zstd seldom grows it). */
export const IMAGE_SPACE_FACTOR = 1.1;

/**
 * Below this share of the file system in use, the data goes through a sparse file (e2image writes
 * only the blocks in use there, tar --sparse carries only them into zstd): the free space never
 * crosses a pipe. Above it, one stream: the file system's bytes read whole by dd in 4 MiB reads,
 * compressed, written and hashed once. Measured in the QEMU bench (512 MiB): at 5 % full a stream
 * cost as much as the plain full read (1.13) and the sparse file a quarter of it (0.26); at 50 %
 * e2image's stream (one 4 KiB write per block) cost 1.37x the plain tools.
 */
export const SPARSE_BELOW = 0.4;

export type ImageLayout = 'stream' | 'sparse';

export const layoutFor = (fs: Pick<FsFacts, 'usedBytes' | 'sizeBytes'>): ImageLayout =>
  fs.sizeBytes > 0 && fs.usedBytes / fs.sizeBytes < SPARSE_BELOW ? 'sparse' : 'stream';

/** Where the job mounts its temporary snapshot to give the image another identity. */
export const identityMountPoint = (config: Config) => path.join(config.paths.runDir, 'image-identity');

export interface SourceInfo {
  vg: string;
  /** lv-root. */
  lv: string;
  /** The LV read: snap0 or the temporary snapshot. */
  snapshot: string;
  device: string;
  kind: 'temporary' | 'snap0';
  time: Date;
  reason: string | null;
  lvSizeBytes: number;
}

/**
 * What the job does in node at the points the plan names (the plan's edit steps and conditions
 * call these): the planner stays pure, the flow (create.ts) supplies them.
 */
export interface CreateActions {
  /** Let go of the LVM lock. */
  unlock(): Promise<void>;
  /** The temporary snapshot as LVM sees it now, probed under the LVM lock (taken again if let go). */
  snapshotState(): Promise<'gone' | 'valid' | 'invalid'>;
  makeMountPoint(mountPoint: string): void;
  writeIdentity(mountPoint: string, identity: Identity): void;
  /** Judge the verification, hash the image, write its checksum and manifest (as .part files). */
  finish(): Promise<void>;
  /** Give the three files their final names, the image last. */
  publish(): void;
  removeFiles(files: readonly string[]): void;
}

/** Output of read-only steps, gathered as they run, for the manifest. */
export interface CreateFindings {
  blkid: string;
  dumpe2fs: string;
  /** sha256sum of the image's bytes as tee wrote them. */
  sha256: string;
  /** The temporary snapshot was found invalid (it overflowed) when its removal was considered. */
  snapshotOverflowed: boolean;
}

export interface CreatePlan extends Plan {
  source: SourceInfo;
  paths: ImagePaths;
  /** Bytes the image directory must have free. */
  needBytes: number;
  identity: Identity | null;
  /** stream: the raw file system compressed; sparse: a tar --sparse archive of it, compressed. */
  layout: ImageLayout;
  /** The compressing stage (its options shape the file, and the manifest records them). */
  compressor: Command;
  verify: VerifySteps;
  findings: CreateFindings;
}

export interface CreateInput {
  state: VgState;
  config: Config;
  source: 'temporary' | 'snap0';
  now: Date;
  /** The host part of the image's name. */
  kind: string;
  /** The file system to be imaged (for a temporary snapshot: lv-root's own, as it is now). */
  fs: FsFacts;
  /** Free bytes in the image directory (statfs, for unprivileged use as well). */
  freeBytes: number;
  /** Is the image directory on lv-root's own file system? */
  dirOnRoot: boolean;
  /** Signal for the long pipelines (the job's own). */
  signal?: AbortSignal;
  /** Another hostname (and IP) for the image: only with a temporary snapshot. */
  identity?: Identity | null;
  /** Where the LVM lock lives (shown in the plan where the job lets go of it). */
  lockFile?: string;
}

/** Actions that do nothing: for showing a plan, and for tests of the planner. */
export const noActions: CreateActions = {
  unlock: async () => {},
  snapshotState: async () => 'gone',
  makeMountPoint: () => {},
  writeIdentity: () => {},
  finish: async () => {},
  publish: () => {},
  removeFiles: () => {},
};
