import path from 'node:path';
import type { Config } from '../config/schema.js';
import { NotFoundError, RefusedError } from '../errors.js';
import { unmountIfMounted } from '../golden/index.js';
import type { Step } from '../plan/plan.js';
import { progressParsers } from '../plan/progress.js';
import type { Command } from '../system/command.js';
import {
  LV_ATTR,
  type LvInfo,
  type VgState,
  lvMergeArgv,
  vgActivateArgv,
  vgTagsArgv,
  withLvAttr,
} from '../system/lvm.js';
import { tagValue } from '../names/lvm-tags.js';
import { mutating } from '../system/root-copy.js';
import { labelOf } from '../restore-point/index.js';
import { RESTORE_OF_TAG, RESTORE_TAG, TAG_BOOT } from '../names/lvm-tags.js';
import { namesOf } from '../names/snapshots.js';
import { mountArgv, umountArgv } from '../system/mount-commands.js';

export function restoreLabelOf(vgTags: readonly string[]): {
  time: Date | null;
  reason: string | null;
  captured: boolean;
} {
  const v = vgTags.find((t) => t.startsWith(RESTORE_OF_TAG))?.slice(RESTORE_OF_TAG.length);
  const [epoch, reason, boot] = (v ?? '').split('.');
  return {
    time: epoch && /^\d+$/.test(epoch) ? new Date(Number(epoch) * 1000) : null,
    reason: reason || null,
    captured: boot !== 'none',
  };
}

/** Refuse what cannot be restored, with what to do instead; otherwise describe the restore point. */
export function checkRestorable(state: VgState | null, config: Config): LvInfo {
  const n = namesOf(config);
  if (!state) {
    throw new NotFoundError(`no volume group ${n.vg}: there is no backup to restore`, {
      hint: 'use "Recover to factory default" (zshield_recovery=default) to rebuild the system disk',
    });
  }
  const root = state.lvs.find((l) => l.name === n.root);
  if (!root)
    throw new NotFoundError(`no ${n.vg}/${n.root}: there is nothing to restore into`, {
      hint: 'use the factory reset',
    });
  const snap = state.lvs.find((l) => l.name === n.snap);
  if (root.merging || snap?.merging) {
    throw new RefusedError(`a restore (merge of ${n.snap} into ${n.root}) is already pending`, {
      hint: 'it completes when lv-root is next activated: boot the system disk (or run `lvchange -an`/`-ay` on it)',
    });
  }
  if (!snap) {
    throw new RefusedError(`there is no backup to restore: ${n.vg}/${n.snap} does not exist`, {
      hint: 'use "Recover to factory default" instead',
    });
  }
  if (snap.kind !== 'snapshot' || snap.origin !== n.root) {
    throw new RefusedError(`${n.vg}/${n.snap} is not a snapshot of ${n.root}`);
  }
  if (snap.invalid) {
    throw new RefusedError(`the backup ${n.vg}/${n.snap} is invalid (it overflowed) and cannot be restored`, {
      hint: 'use "Recover to factory default" instead',
    });
  }
  return snap;
}

/** The VG tag naming the restore point being restored: `<epoch>.<reason>.<boot>`. */
export function restoreOfTag(snapshot: LvInfo): string {
  const { reason, time } = labelOf(snapshot);
  return `${RESTORE_OF_TAG}${time ? Math.floor(time.getTime() / 1000) : 'unknown'}.${reason ?? 'unknown'}.${tagValue(snapshot.tags, TAG_BOOT) ?? 'unknown'}`;
}

export interface MergeFacts {
  config: Config;
  state: VgState;
  snapshot: LvInfo;
  /** lv-root is open (mounted): the kernel delays the merge until its next activation. */
  originOpen: boolean;
}

/**
 * Before the merge, the steps that can still fail without harm: activate the VG when it is not
 * (from the golden medium; a dry run never does), and mount snap0 read-only without replaying its
 * journal (`ro,noload` writes nothing), so a restore point whose file system cannot be read is
 * refused while lv-root is still as it was. Then mark the VG and merge.
 */
export function planMerge(f: MergeFacts, runDir: string): { notes: string[]; steps: Step[]; always: Step[] } {
  const n = namesOf(f.config);
  const { reason, time } = labelOf(f.snapshot);
  const notes = [
    `restore point: ${n.vg}/${n.snap}, taken ${time ? time.toISOString() : 'at an unknown time'} (reason: ${reason ?? 'unknown'})`,
    `${n.root} is rolled back to that moment; the other volumes are not touched`,
  ];
  const steps: Step[] = [];
  const active = f.state.lvs.find((l) => l.name === n.root)?.active && f.snapshot.active;
  if (!active) {
    notes.push(
      `${n.vg} is not active: the plan activates it first (a dry run does not, so it cannot look into ${n.snap})`,
    );
    steps.push({ title: `activate the volume group ${n.vg}`, command: vgActivateCommand(n.vg) });
  }
  if (f.originOpen) {
    notes.push(
      `${n.root} is in use: the kernel starts the merge when it is next activated (at the next boot)`,
    );
  }
  const look = path.join(runDir, 'restore', n.snap);
  steps.push(
    { title: `make ${look}`, command: mutating('mkdir', ['-p', look]) },
    {
      title: `mount ${n.snap} read-only to check its file system before the merge`,
      command: mutating(...mountArgv(`/dev/${n.vg}/${n.snap}`, look, { options: 'ro,noload' })),
    },
    { title: `unmount ${n.snap}`, command: mutating(...umountArgv(look)) },
    {
      title: 'mark the restore as started',
      command: mutating(...vgTagsArgv(n.vg, { add: [RESTORE_TAG, restoreOfTag(f.snapshot)] })),
    },
    {
      title: `merge ${n.snap} into ${n.root}`,
      command: mutating(...lvMergeArgv(n.vg, n.snap), {
        timeoutMs: 24 * 3600_000,
      }),
      progress: progressParsers.merge,
    },
  );
  return { notes, steps, always: [unmountIfMounted(look)] };
}

export function vgActivateCommand(vg: string): Command {
  return mutating(...vgActivateArgv(vg), { timeoutMs: 300_000 });
}

/**
 * The state the VG will be in once the merge is done: snap0 gone (its space free again), lv-root
 * no longer an origin. Planned from now, so the new snap0's room is checked before the merge.
 */
export function afterMerge(state: VgState, snapName: string): VgState {
  const snap = state.lvs.find((l) => l.name === snapName);
  const freed = snap ? Math.ceil(snap.sizeBytes / state.vg.extentBytes) : 0;
  return {
    vg: {
      ...state.vg,
      freeExtents: state.vg.freeExtents + freed,
      freeBytes: state.vg.freeBytes + freed * state.vg.extentBytes,
    },
    lvs: state.lvs
      .filter((l) => l !== snap)
      .map((l) =>
        l.name === snap?.origin
          ? { ...l, kind: 'plain' as const, merging: false, attr: withLvAttr(l.attr, LV_ATTR.type, '-') }
          : l,
      ),
  };
}
