import type { Config } from '../config/schema.js';
import { formatBytes, resolveSize } from '../config/size.js';
import { NotFoundError, RefusedError } from '../errors.js';
import type { CommandStep, Plan, CommandStep as Step } from '../plan/plan.js';
import {
  FACTORY_TAG,
  IMAGE_RESTORE_TAG,
  ROOT_FILLING_TAGS,
  type Reason,
  ROTATING_TAG,
  TAG_BOOT,
  TAG_REASON,
  TAG_TIME,
  tagValue,
} from '../names/lvm-tags.js';
import { type SnapshotNames, namesOf } from '../names/snapshots.js';
import {
  type LvInfo,
  type VgState,
  lvRemoveCommand,
  lvRenameCommand,
  snapshotAllocation,
  snapshotCreateCommand,
  vgTagCommand,
} from '../system/lvm.js';

export interface SnapshotLabel {
  reason: string | null;
  time: Date | null;
}

export function labelOf(lv: LvInfo): SnapshotLabel {
  const reason = tagValue(lv.tags, TAG_REASON);
  const t = tagValue(lv.tags, TAG_TIME);
  const time = t && /^\d+$/.test(t) ? new Date(Number(t) * 1000) : lv.created;
  return { reason, time };
}

function find(state: VgState, name: string): LvInfo | undefined {
  return state.lvs.find((l) => l.name === name);
}

export function requireRoot(state: VgState, names: SnapshotNames): LvInfo {
  const root = find(state, names.root);
  if (!root) {
    throw new NotFoundError(`logical volume "${names.vg}/${names.root}" not found`, {
      hint: 'check lvm.rootLv in the config; `lvs` lists the logical volumes',
    });
  }
  return root;
}

/**
 * A rotation cut short (crash, kill, power cut) leaves one of these behind, told apart by the
 * snapshots that exist:
 * - `next` exists: the new snapshot was made; finish the job (drop the old one, rename the new).
 *   An invalid `next`, or one of another origin, is not a restore point: it is removed instead.
 * - only the tag: nothing was made (or the old was dropped first); just clear the mark. The
 *   caller then takes a backup if no snapshot is left.
 */
export interface RepairDecision {
  /** snap0-next is a complete snapshot of lv-root: it becomes snap0 (the old one, if any, goes). */
  promoteNext: boolean;
  /** snap0-next exists but is not a usable snapshot of lv-root: it is removed. */
  discardNext: boolean;
  /** The old snap0 is removed (only when snap0-next replaces it). */
  dropOld: boolean;
  clearMark: boolean;
}

/** What a repair does, decided from the snapshots that exist (null: nothing was cut short). */
export function decideRepair(state: VgState, names: SnapshotNames): RepairDecision | null {
  const next = find(state, names.next);
  const tagged = state.vg.tags.includes(ROTATING_TAG);
  if (!next && !tagged) return null;
  const usable = !!next && next.kind === 'snapshot' && next.origin === names.root && !next.invalid;
  return {
    promoteNext: usable,
    discardNext: !!next && !usable,
    dropOld: usable && !!find(state, names.snap),
    clearMark: tagged,
  };
}

export function planRepair(state: VgState, names: SnapshotNames): Plan<CommandStep> | null {
  const d = decideRepair(state, names);
  if (!d) return null;
  const steps: Step[] = [];
  const notes: string[] = ['a previous backup rotation did not finish'];
  if (d.promoteNext) notes.push(`${names.next} was completed; it becomes ${names.snap}`);
  if (d.dropOld)
    steps.push({ title: `remove the old ${names.snap}`, command: lvRemoveCommand(names.vg, names.snap) });
  if (d.promoteNext) {
    steps.push({
      title: `rename ${names.next} to ${names.snap}`,
      command: lvRenameCommand(names.vg, names.next, names.snap),
    });
  }
  if (d.discardNext) {
    notes.push(`${names.next} is not a usable snapshot of ${names.root}; it is discarded`);
    steps.push({
      title: `remove the unusable ${names.next}`,
      command: lvRemoveCommand(names.vg, names.next),
    });
  }
  if (d.clearMark) {
    steps.push({ title: 'clear the rotation mark', command: vgTagCommand(names.vg, 'del', ROTATING_TAG) });
  }
  if (!d.promoteNext && !find(state, names.snap)) {
    notes.push(`no restore point is left (the old ${names.snap} was dropped first): a backup is taken next`);
  }
  return { title: `Repair the interrupted rotation in ${names.vg}`, notes, steps };
}

export interface RotationInput {
  state: VgState;
  config: Config;
  reason: Reason;
  now: Date;
  /** Is lv-root the file system mounted at / right now? Only then is /boot this root's /boot. */
  rootIsRunning: boolean;
}

/** Plan a backup: a new snapshot of lv-root, replacing the old one, never leaving none by choice. */
export function planRotation(input: RotationInput): Plan<CommandStep> {
  const { state, config, reason, now } = input;
  const names = namesOf(config);
  const { root, cur } = checkRotatable(state, names);
  const extent = state.vg.extentBytes;
  const need = snapshotAllocation(resolveSize(config.snapshot.size, root.sizeBytes), root.sizeBytes, extent);
  const free = state.vg.freeExtents * extent;
  const capture = config.boot.capture && input.rootIsRunning;
  const tags = [
    `${TAG_REASON}${reason}`,
    `${TAG_TIME}${Math.floor(now.getTime() / 1000)}`,
    `${TAG_BOOT}${capture ? 'captured' : 'none'}`,
  ];
  const notes = [
    `snapshot size ${formatBytes(need)} (${config.snapshot.size.kind === 'percent' ? `${config.snapshot.size.percent}% of` : 'for'} ${names.root} of ${formatBytes(root.sizeBytes)}); VG ${names.vg} has ${formatBytes(free)} free`,
  ];
  const steps: Step[] = [...captureBootSteps(config, names, capture, notes)];
  const create = (name: string): Step => ({
    title: `create ${name}, a snapshot of ${names.root} (reason: ${reason})`,
    command: snapshotCreateCommand({ vg: names.vg, origin: names.root, name, sizeBytes: need, tags }),
  });
  steps.push(...rotationSteps({ names, cur, need, free, rotation: config.snapshot.rotation, create, notes }));
  return { title: `Back up ${names.vg}/${names.root} to ${names.snap} (reason: ${reason})`, notes, steps };
}

/** What refuses a rotation before anything is planned. */
function checkRotatable(state: VgState, names: SnapshotNames): { root: LvInfo; cur: LvInfo | undefined } {
  const root = requireRoot(state, names);
  if (root.merging) {
    throw new RefusedError(`a merge of a snapshot into ${names.vg}/${names.root} is pending`, {
      hint: 'the restore finishes when lv-root is next activated (reboot); take the backup after that',
    });
  }
  if (find(state, names.next) || state.vg.tags.includes(ROTATING_TAG)) {
    throw new RefusedError('an interrupted rotation must be repaired first');
  }
  if (tagValue(state.vg.tags, IMAGE_RESTORE_TAG) !== null) {
    // A snapshot of a half-written root would be a restore point of a broken system.
    throw new RefusedError(
      `${names.vg}/${names.root} is half-written by an image restore that was cut short: no backup is taken of it`,
      {
        hint: 'boot the golden medium (its next boot finishes the restore), or run zshield image restore FILE --yes from it; zshield status names the image',
      },
    );
  }
  const filling = ROOT_FILLING_TAGS.find((t) => state.vg.tags.includes(t));
  if (filling) {
    // The root is being filled by a factory reset or an off-box restore that a boot runs again.
    const what = filling === FACTORY_TAG ? 'a factory reset' : 'an off-box restore';
    throw new RefusedError(
      `${names.vg}/${names.root} is being filled by ${what} that was cut short: no backup is taken of it`,
      {
        hint: 'boot the golden medium: its next boot runs it again (zshield status says which)',
      },
    );
  }
  const cur = find(state, names.snap);
  if (cur && cur.kind !== 'snapshot') {
    throw new RefusedError(
      `${names.vg}/${names.snap} exists but is not a snapshot; zshield will not remove it`,
      {
        hint: 'rename that volume or choose another lvm.snapshot name',
      },
    );
  }
  if (cur && cur.origin !== names.root) {
    throw new RefusedError(`${names.vg}/${names.snap} is a snapshot of ${cur.origin}, not of ${names.root}`);
  }
  return { root, cur };
}

/** /boot copied into lv-root before the snapshot, so a restore can put back the matching kernel. */
function captureBootSteps(config: Config, names: SnapshotNames, capture: boolean, notes: string[]): Step[] {
  if (!capture) {
    if (config.boot.capture)
      notes.push(`${names.root} is not the running root: ${config.boot.dir} is not captured`);
    return [];
  }
  const dest = `${config.paths.stateDir}/boot`;
  notes.push(
    `${config.boot.dir} is copied into ${names.root} (${dest}) so a restore can put back the matching kernel`,
  );
  return [
    { title: `make ${dest}`, command: { file: 'mkdir', args: ['-p', dest], mutates: true } },
    {
      title: `capture ${config.boot.dir} inside ${names.root}`,
      command: {
        file: 'rsync',
        args: ['-a', '--delete', '--numeric-ids', `${config.boot.dir}/`, `${dest}/`],
        mutates: true,
        timeoutMs: 600_000,
      },
    },
  ];
}

/** First snapshot, create-first when the VG has room for two, drop-first only when allowed; else refuse. */
function rotationSteps(o: {
  names: SnapshotNames;
  cur: LvInfo | undefined;
  need: number;
  free: number;
  rotation: Config['snapshot']['rotation'];
  create: (name: string) => Step;
  notes: string[];
}): Step[] {
  const { names, cur, need, free, create, notes } = o;
  const mark = {
    title: 'mark the rotation as started',
    command: vgTagCommand(names.vg, 'add', ROTATING_TAG),
  };
  const unmark = { title: 'clear the rotation mark', command: vgTagCommand(names.vg, 'del', ROTATING_TAG) };
  const dropOld = { title: `remove the old ${names.snap}`, command: lvRemoveCommand(names.vg, names.snap) };
  if (!cur) {
    if (free < need) throw noSpace(names, need, free, null);
    notes.push(`there is no ${names.snap} yet: this is the first restore point`);
    return [create(names.snap)];
  }
  if (free >= need) {
    notes.push(`the old ${names.snap}${describe(cur)} is removed only after the new one exists`);
    const rename = {
      title: `rename ${names.next} to ${names.snap}`,
      command: lvRenameCommand(names.vg, names.next, names.snap),
    };
    return [mark, create(names.next), dropOld, rename, unmark];
  }
  if (o.rotation === 'auto' && free + cur.sizeBytes >= need) {
    notes.push(
      `VG ${names.vg} has no room for two snapshots: the old ${names.snap}${describe(cur)} is removed first, and until the new one exists there is no restore point`,
    );
    return [mark, dropOld, create(names.snap), unmark];
  }
  throw noSpace(names, need, free, o.rotation === 'auto' ? free + cur.sizeBytes : null);
}

function describe(lv: LvInfo): string {
  const { reason, time } = labelOf(lv);
  const parts = [time ? time.toISOString() : null, reason].filter(Boolean);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

function noSpace(
  names: SnapshotNames,
  need: number,
  free: number,
  freeIfDropped: number | null,
): RefusedError {
  const dropped = freeIfDropped === null ? '' : `, ${formatBytes(freeIfDropped)} even without the old one`;
  return new RefusedError(
    `not enough space in VG ${names.vg} for a new ${names.snap}: need ${formatBytes(need)}, ${formatBytes(free)} free${dropped}; the old ${names.snap} is kept`,
    { hint: 'free space in the VG (vgextend, or shrink another LV), or lower snapshot.size in the config' },
  );
}
