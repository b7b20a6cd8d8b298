import type { Context } from '../context.js';
import type { Plan, Step } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { type VgState, decodeLvAttr, parseVgs, probeVg, vgsCommand } from '../system/lvm.js';
import { isRunningRoot } from '../system/mounts.js';
import { probePvs } from '../system/pvs.js';
import { requireTools } from '../system/tools.js';
import { refreshBootMenu, repairCutRotation } from '../restore-point/index.js';
import { type BootFs, findBoot } from './boot-fs.js';
import { mergeWaitStep, planFinish, restoreMarks } from './finish.js';
import { type ConfirmOptions, lockFor, planRunOptions } from './options.js';
import { eventStep } from './record.js';
import { afterMerge, checkRestorable, planMerge, restoreLabelOf, restoreOfTag } from './latest-merge.js';
import { namesOf } from '../names/snapshots.js';
import { RESTORE_TAG } from '../names/lvm-tags.js';

export interface RestoreProbe {
  /** null: there is no such VG. */
  state: VgState | null;
  boot: BootFs | null;
}

/**
 * Read what a restore needs, changing nothing: the VG's metadata (`vgs`/`lvs` read it whether the
 * VG is active or not) and the block devices (`blkid`), never `vgchange -ay`.
 */
export async function probeRestore(ctx: Context): Promise<RestoreProbe> {
  const vg = ctx.config.lvm.vg;
  await requireTools(ctx.runner, ['vgs', 'lvs', 'blkid']);
  const all = parseVgs((await ctx.runner.run(vgsCommand())).stdout);
  if (!all.some((v) => v.name === vg)) return { state: null, boot: null };
  const state = await probeVg(ctx.runner, vg);
  const boot = await findBoot({
    runner: ctx.runner,
    vgTags: state.vg.tags,
    pvDevices: async () => (await probePvs(ctx.runner)).filter((p) => p.vgName === vg).map((p) => p.pvName),
  });
  return { state, boot };
}

export interface RestorePlan extends Plan {
  /** The kernel defers the merge (lv-root is in use): the finishing phase is in `later`. */
  deferred: boolean;
  /** When the restore point was taken. */
  restorePoint: Date | null;
}

/**
 * `recover latest` as one plan: the checks (restorable, /boot found, room for the new snap0, mount
 * points), the merge, and the finishing phase, or the finishing phase "after the next boot" when
 * the merge is deferred. A pure function of the probe (the steps do the I/O when applied).
 */
export function planRestore(ctx: Context, probe: RestoreProbe, started: Date): RestorePlan {
  const n = namesOf(ctx.config);
  const snap = checkRestorable(probe.state, ctx.config);
  const state = probe.state!;
  const root = state.lvs.find((l) => l.name === n.root)!;
  const running = isRunningRoot(root);
  const originOpen = running || decodeLvAttr(root.attr).open;
  const merge = planMerge({ config: ctx.config, state, snapshot: snap, originOpen }, ctx.config.paths.runDir);
  const label = restoreLabelOf([restoreOfTag(snap)]);
  const { time, reason } = label;
  const finish = planFinish(ctx, {
    // A deferred merge is finished by the next boot of the system disk, where lv-root is the root.
    running: originOpen,
    boot: probe.boot ?? { kind: 'lost', why: 'the system disk was not probed for /boot' },
    label,
    merged: afterMerge(state, n.snap),
    marks: restoreMarks(state.vg.tags, [RESTORE_TAG, restoreOfTag(snap)]),
    started,
  });
  const title = `Restore ${n.vg}/${n.root} from ${n.snap}`;
  const notes = [...merge.notes, ...finish.notes];
  if (!originOpen) {
    return {
      title,
      notes,
      checks: finish.checks,
      steps: [...merge.steps, ...finish.steps],
      always: [...merge.always, ...finish.always],
      deferred: false,
      restorePoint: time,
    };
  }
  const steps: Step[] = [...merge.steps];
  if (running) {
    steps.push(
      eventStep(ctx, ctx.config.boot.dir, 'record that the restore finishes at the next boot', () => ({
        at: started.toISOString(),
        event: 'restore-deferred',
        result: 'pending',
        detail: `merge deferred to the next activation of ${n.root}`,
        snapshotTime: time?.toISOString() ?? null,
        snapshotReason: reason,
      })),
    );
  }
  return {
    title,
    notes,
    checks: finish.checks,
    steps,
    always: merge.always,
    later: [mergeWaitStep(n.vg, n.root), ...finish.steps],
    deferred: true,
    restorePoint: time,
  };
}

/**
 * A backup rotation cut short is repaired first (under the lock), so the restore point restored is
 * the one the repair keeps: the newest complete one, never "no backup" while a complete one exists.
 * On a dry run the repair is only shown and its result simulated.
 */
export async function repaired(
  ctx: Context,
  probe: RestoreProbe,
  json = false,
): Promise<RestoreProbe & { repair?: Plan }> {
  if (!probe.state) return probe;
  // With --json stdout holds one document: the repair goes into it (below), not printed as text.
  const r = await repairCutRotation(ctx, probe.state, json ? 'none' : ctx.dryRun ? 'out' : 'log');
  return { ...probe, state: r.state, ...(r.repair ? { repair: r.repair } : {}) };
}

/**
 * The plan shown with --json: on a dry run the repair's steps come first (they would run first);
 * after a real repair (already applied) a note says what it did.
 */
function withRepair<P extends Plan>(ctx: Context, plan: P, repair: Plan | undefined): P {
  if (!repair) return plan;
  if (ctx.dryRun)
    return { ...plan, notes: [...repair.notes, ...plan.notes], steps: [...repair.steps, ...plan.steps] };
  return {
    ...plan,
    notes: [`repaired first: ${repair.steps.map((s) => s.title).join('; ')}`, ...plan.notes],
  };
}

/** Restore the latest backup: lock, probe (read-only), plan, runPlan, say what happened. */
export async function runRestore(ctx: Context, opts: ConfirmOptions): Promise<void> {
  const lock = ctx.dryRun ? null : await lockFor(ctx, 'restore');
  const started = ctx.clock.now();
  // The boot menu's refresh follows as a plan of its own (it ends a dry run).
  let planned = false;
  try {
    const probe = await repaired(ctx, await probeRestore(ctx), opts.json === true);
    const plan = opts.json
      ? withRepair(ctx, planRestore(ctx, probe, started), probe.repair)
      : planRestore(ctx, probe, started);
    const run = await runPlan(ctx, plan, { ...planRunOptions(opts, 'The restore'), notLast: true });
    planned = true;
    if (!run.applied) return;
    const n = namesOf(ctx.config);
    if (plan.deferred) {
      ctx.out.print(
        `the merge is deferred: ${n.root} is in use. It starts at the next boot; zshield then puts /boot back and takes a new ${n.snap}. Reboot now.`,
      );
      return;
    }
    const at = plan.restorePoint?.toISOString() ?? 'the backup';
    ctx.out.print(`restore done: ${n.root} is back at ${at}; a new ${n.snap} was taken`);
  } finally {
    // Done, deferred (none available until merged) or failed; not after a dry run stopped at a check.
    if (planned || !ctx.dryRun) await refreshBootMenu(ctx, {}, refreshShow(ctx, opts));
    await lock?.release();
  }
}

/** Where the boot menu's refresh after a recovery is shown: a dry run's --json document is the recovery's plan. */
export const refreshShow = (ctx: Context, opts: ConfirmOptions) =>
  opts.json && ctx.dryRun ? { show: 'none' as const } : {};
