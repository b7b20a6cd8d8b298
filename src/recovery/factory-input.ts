import type { Config } from '../config/schema.js';
import type { GoldenFacts } from '../golden/index.js';
import type { CommandStep, Plan, CommandStep as Step } from '../plan/plan.js';
import type { Disk, DiskProbe } from '../system/disks.js';
import type { PvInfo } from '../system/pvs.js';

/** What a factory reset is planned from (factory.ts) and what its steps are made of (factory-steps.ts). */

export interface FactoryInput {
  config: Config;
  disks: DiskProbe;
  pvs: PvInfo[];
  golden: GoldenFacts;
  /** Fresh UUID for the new /boot file system (fstab names it before mkfs runs). */
  bootUuid: string;
  now: Date;
  /** Serial or WWN from the command line, overriding the config. */
  targetOverride?: string;
  /** The new root's files from elsewhere than the golden root (a disaster restore); see RootFill. */
  root?: RootFill;
}

/**
 * Another source for the new root than the golden root: the same layout, boot loader and first
 * snap0, but the root's files from, e.g., a fingerprint of the history (offbox.ts). Its
 * /boot is the one captured inside that root (<stateDir>/boot), so the kernel matches its modules.
 */
export interface RootFill {
  /** Where the files come from, for the plan ("fingerprint 3f... from target site"). */
  what: string;
  /** Commands that fill the new root mounted at `mnt` (with its new /boot mounted at mnt/boot). */
  steps: (mnt: string) => Step[];
  /** The VG's mark while the restore runs (instead of FACTORY_TAG: a cut restore is not resumed as a factory reset). */
  mark: string;
  /** Reason tag of the first snap0. */
  reason: string;
  /** What the files take (checked against the new root volume before anything is written). */
  bytes: number;
}

export interface FactoryPlan extends Plan<CommandStep> {
  /** The /boot partition this plan makes (the disk was just partitioned by it). */
  bootDevice: string;
}

/** What the steps of a factory reset are made from (chosen and checked first). */
export interface Target {
  input: FactoryInput;
  config: Config;
  golden: GoldenFacts;
  disk: Disk;
  /** How the target was chosen, for the plan. */
  why: string;
  vg: string;
  /** Where the new root is mounted while it is filled. */
  mnt: string;
  bootPart: string;
  lvmPart: string;
  rootVol: Config['layout']['volumes'][number];
  rootDev: string;
  bootSectors: number;
  lvmBytes: number;
  /** Volume groups found on the target (deactivated before the wipe). */
  vgsOnTarget: string[];
}
