import type { Context } from '../context.js';
import { ROTATING_TAG } from '../names/lvm-tags.js';
import { type SnapshotNames, namesOf } from '../names/snapshots.js';
import type { CommandStep, Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { type VgState, probeVg } from '../system/lvm.js';
import { decideRepair, planRepair } from './rotation.js';

/**
 * A rotation cut short (power cut, kill) must never hide a complete restore point. Every command
 * that may write repairs it first, under the LVM lock (`repairCutRotation`); every reader shows
 * what that repair would leave (`stateAfterRepair`, pure) and says that a rotation was cut short.
 * Both come from `planRepair`, so the two paths cannot disagree on which backup is the latest.
 */

/** What the VG looks like once `planRepair` has run: the same decision, applied to the probed state. */
export function stateAfterRepair(state: VgState, names: SnapshotNames): VgState {
  const d = decideRepair(state, names);
  if (!d) return state;
  const lvs = state.lvs
    .filter((l) => !(d.dropOld && l.name === names.snap) && !(d.discardNext && l.name === names.next))
    .map((l) => (d.promoteNext && l.name === names.next ? { ...l, name: names.snap } : l));
  const tags = d.clearMark ? state.vg.tags.filter((t) => t !== ROTATING_TAG) : state.vg.tags;
  return { vg: { ...state.vg, tags }, lvs };
}

/** A plain sentence for status and the boot menu: what was cut short and what the repair keeps. */
export function describeCutRotation(state: VgState, names: SnapshotNames): string | null {
  const plan = planRepair(state, names);
  if (!plan) return null;
  const d = decideRepair(state, names)!;
  if (d.promoteNext)
    return `a backup rotation was cut short; the repair makes the completed ${names.next} the restore point`;
  if (state.lvs.some((l) => l.name === names.snap))
    return `a backup rotation was cut short; the repair keeps ${names.snap} as it is`;
  return 'a backup rotation was cut short and left no restore point; the next backup (or the daemon at start) takes one';
}

/**
 * For callers holding the LVM lock: when a rotation was cut short, run the repair plan (shown;
 * on a dry run only shown) and return the state after it, probed again or, on a dry run, simulated.
 */
export async function repairCutRotation(
  ctx: Pick<Context, 'runner' | 'log' | 'out' | 'dryRun' | 'signal' | 'config'>,
  state: VgState,
  show: 'out' | 'log' | 'none' = ctx.dryRun ? 'out' : 'log',
): Promise<{ state: VgState; repair: Plan<CommandStep> | null }> {
  const names = namesOf(ctx.config);
  const repair = planRepair(state, names);
  if (!repair) return { state, repair: null };
  // Always followed by the plan the repair makes possible (a rotation, a restore).
  const run = await runPlan(ctx, repair, { confirm: 'none', show, notLast: true });
  const after = run.applied ? await probeVg(ctx.runner, names.vg) : stateAfterRepair(state, names);
  return { state: after, repair };
}
