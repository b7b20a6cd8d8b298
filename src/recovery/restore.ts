import type { Config } from '../config/schema.js';
import { NotFoundError, RefusedError } from '../errors.js';
import type { CommandStep, Plan, CommandStep as Step } from '../plan/plan.js';
import { type LvInfo, type VgState, tagValue } from '../system/lvm.js';
import { TAG_BOOT, labelOf, namesOf } from '../snapshot/rotation.js';

export { RESTORE_OF_TAG, RESTORE_TAG } from '../names/lvm-tags.js';
import { RESTORE_OF_TAG, RESTORE_TAG } from '../names/lvm-tags.js';

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

export interface MergeFacts {
  snapshot: LvInfo;
  /** lv-root is open (mounted): the kernel delays the merge until its next activation. */
  originOpen: boolean;
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

/** Phase 1: mark the VG and merge snap0 into lv-root (lvconvert polls every second and reports progress). */
export function planMerge(config: Config, facts: MergeFacts): Plan<CommandStep> {
  const n = namesOf(config);
  const { reason, time } = labelOf(facts.snapshot);
  const notes = [
    `restore point: ${n.vg}/${n.snap}, taken ${time ? time.toISOString() : 'at an unknown time'} (reason: ${reason ?? 'unknown'})`,
    `${n.root} is rolled back to that moment; the other volumes are not touched`,
  ];
  if (facts.originOpen) {
    notes.push(
      `${n.root} is in use: the kernel starts the merge when it is next activated (at the next boot)`,
    );
  }
  const steps: Step[] = [
    {
      title: 'mark the restore as started',
      command: {
        file: 'vgchange',
        args: [
          '--addtag',
          RESTORE_TAG,
          '--addtag',
          `${RESTORE_OF_TAG}${time ? Math.floor(time.getTime() / 1000) : 'unknown'}.${reason ?? 'unknown'}.${tagValue(facts.snapshot.tags, TAG_BOOT) ?? 'unknown'}`,
          n.vg,
        ],
        mutates: true,
      },
    },
    {
      title: `merge ${n.snap} into ${n.root}`,
      command: {
        file: 'lvconvert',
        // -i 1: report progress every second (the default is 15 s).
        args: ['--merge', '-i', '1', `${n.vg}/${n.snap}`],
        mutates: true,
        timeoutMs: 24 * 3600_000,
      },
    },
  ];
  return { title: `Restore ${n.vg}/${n.root} from ${n.snap}`, notes, steps };
}

export interface FinishFacts {
  /** Where the restored root is: '/' when it is the running root, else a mount point we make. */
  rootDir: string;
  bootDir: string;
  /** Mounts to make first (when booted from the golden medium), as [device, dir, readOnly]. */
  mounts: [string, string, boolean][];
  /** Does the restored root hold a captured /boot? */
  captured: boolean;
}

/** Phase 2 (after the merge), when booted from the golden medium: mount the restored root and /boot. */
export function planRestoreMounts(mounts: [string, string, boolean][]): Plan<CommandStep> {
  const steps: Step[] = [];
  for (const [, dir] of mounts)
    steps.push({ title: `make ${dir}`, command: { file: 'mkdir', args: ['-p', dir], mutates: true } });
  for (const [dev, dir, ro] of mounts) {
    steps.push({
      title: `mount ${dev} on ${dir}`,
      command: { file: 'mount', args: [...(ro ? ['-o', 'ro'] : []), dev, dir], mutates: true },
    });
  }
  return { title: 'Mount the restored root and /boot', notes: [], steps };
}

/** Phase 3: put back the /boot that belongs to the restored root (captured inside it at backup time). */
export function planPutBackBoot(
  config: Config,
  f: { rootDir: string; bootDir: string; captured: boolean },
): Plan<CommandStep> {
  const steps: Step[] = [];
  const notes: string[] = [];
  if (f.captured) {
    const src = `${f.rootDir === '/' ? '' : f.rootDir}${config.paths.stateDir}/boot/`;
    steps.push({
      title: 'put back the /boot of the restored root (kernel matching its modules)',
      command: {
        file: 'rsync',
        // /boot/zshield holds the event log: it describes the restores and must outlive them.
        args: [
          '-a',
          '--delete',
          '--numeric-ids',
          '--exclude=/zshield/',
          '--exclude=/lost+found',
          src,
          `${f.bootDir}/`,
        ],
        mutates: true,
        timeoutMs: 600_000,
      },
    });
  } else {
    notes.push(
      'the restored root holds no captured /boot (taken before this version, or not the running root): /boot is left as it is',
    );
  }
  return { title: 'Put back /boot', notes, steps };
}

export function planUnmount(mounts: [string, string, boolean][]): Plan<CommandStep> {
  const steps: Step[] = [...mounts]
    .reverse()
    .map(([, dir]) => ({ title: `unmount ${dir}`, command: { file: 'umount', args: [dir], mutates: true } }));
  return { title: 'Finish the restore', notes: [], steps };
}
