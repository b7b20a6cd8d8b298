import type { Context } from '../context.js';
import { resumeImageRestore, rootHalfWritten } from '../image/index.js';
import { RefusedError } from '../errors.js';
import type { Plan, Step } from '../plan/plan.js';
import { progressParsers } from '../plan/progress.js';
import { runPlan } from '../plan/run.js';
import { lvMergeArgv, parseVgs, probeVg, vgsCommand } from '../system/lvm.js';
import { isRunningRoot } from '../system/mounts.js';
import { mutating } from '../system/root-copy.js';
import { OFFBOX_RESTORE_TAG, FACTORY_TAG, RESTORE_TAG } from '../names/lvm-tags.js';
import { mergeWaitStep, planFinish, restoreMarks } from './finish.js';
import { type ConfirmOptions, lockFor, planRunOptions } from './options.js';
import { type FactoryProbes, realFactoryProbes, runFactoryReset } from './reset.js';
import { afterMerge, restoreLabelOf, vgActivateCommand } from './latest-merge.js';
import { type RestoreProbe, probeRestore, refreshShow, repaired } from './restore-latest.js';
import { refreshBootMenu } from '../restore-point/index.js';
import { namesOf } from '../names/snapshots.js';

export interface ResumePlan extends Plan {
  /** The merge had not started and lv-root is in use: it starts at the next boot. */
  deferred: boolean;
}

/**
 * Finish a restore that a power cut (or a deferred merge) left marked on the VG: activate the VG
 * when it is not, start the merge if it never started, let LVM's poller finish a merge the kernel
 * resumed at activation, then the same finishing phase as `recover latest`.
 */
export function planResume(ctx: Context, probe: RestoreProbe, started: Date): ResumePlan {
  const n = namesOf(ctx.config);
  const state = probe.state!;
  const root = state.lvs.find((l) => l.name === n.root);
  if (!root) throw new RefusedError(`a restore is marked on ${n.vg}, but ${n.vg}/${n.root} does not exist`);
  const snap = state.lvs.find((l) => l.name === n.snap && l.origin === n.root);
  const running = isRunningRoot(root);
  const notes = ['a restore was interrupted (power cut?) or deferred to this boot: it is finished now'];
  const steps: Step[] = [];
  if (!root.active)
    steps.push({ title: `activate the volume group ${n.vg}`, command: vgActivateCommand(n.vg) });
  let deferred = false;
  if (snap && !snap.merging && !root.merging) {
    if (snap.invalid) {
      throw new RefusedError(
        `the restore of ${n.vg}/${n.snap} never started its merge, and ${n.snap} is now invalid`,
        {
          hint: 'use "Recover to factory default"; lv-root was not changed',
        },
      );
    }
    notes.push(`the merge of ${n.snap} had not started: it is started now`);
    steps.push({
      title: `merge ${n.snap} into ${n.root}`,
      command: mutating(...lvMergeArgv(n.vg, n.snap), {
        timeoutMs: 24 * 3600_000,
      }),
      progress: progressParsers.merge,
    });
    // On the running root the kernel delays it to the next activation: finish after a reboot.
    deferred = running;
  } else if (root.merging || snap?.merging) {
    steps.push(mergeWaitStep(n.vg, n.root));
  }
  const finish = planFinish(ctx, {
    running: running || deferred,
    boot: probe.boot ?? { kind: 'lost', why: 'the system disk was not probed for /boot' },
    label: restoreLabelOf(state.vg.tags),
    merged: snap ? afterMerge(state, n.snap) : state,
    marks: restoreMarks(state.vg.tags),
    started,
  });
  const title = `Finish the restore of ${n.vg}/${n.root}`;
  const base = { title, notes: [...notes, ...finish.notes], checks: finish.checks };
  if (deferred) return { ...base, steps, later: [mergeWaitStep(n.vg, n.root), ...finish.steps], deferred };
  return { ...base, steps: [...steps, ...finish.steps], always: finish.always, deferred };
}

/**
 * At boot without a recovery request: finish what a power cut interrupted. A VG marked by a
 * factory reset is reset again from the wipe (the plan starts from scratch); one marked by an
 * off-box restore has that restore run again (`offbox`, offbox.ts, passed in by cli.ts: the
 * credentials come from the recovery file or the console again); one marked by an image restore
 * has the image written again (image/image-restore.ts); one marked by a restore has its restore finished.
 */
export async function resumeInterrupted(
  ctx: Context,
  opts: ConfirmOptions,
  probes: FactoryProbes = realFactoryProbes,
  offbox?: (ctx: Context) => Promise<void>,
): Promise<'none' | 'factory' | 'offbox' | 'image' | 'restore'> {
  if (!(await ctx.runner.which('vgs'))) return 'none';
  const vg = parseVgs((await ctx.runner.run(vgsCommand())).stdout).find((v) => v.name === ctx.config.lvm.vg);
  if (!vg) return 'none';
  if (vg.tags.includes(OFFBOX_RESTORE_TAG)) {
    if (!offbox) {
      throw new RefusedError(
        `an off-box restore of ${vg.name} was interrupted, and this build cannot run it again`,
        {
          hint: 'boot the golden medium and pick "Recover from off-box backup"',
        },
      );
    }
    if (await runningFromLvRoot(ctx)) {
      // Cut after the boot loader went in: the box booted the restored root. The restore writes
      // the whole disk, so only the golden medium can run it again; status keeps saying so.
      ctx.out.print(
        `zshield: an off-box restore of ${vg.name} was interrupted (power cut?) and this system runs from it: boot the golden medium to run it again`,
      );
      return 'none';
    }
    ctx.out.print(
      `zshield: an off-box restore was interrupted (power cut?): ${ctx.dryRun ? 'the plan to run it again (dry run)' : 'running it again'}`,
    );
    await offbox(ctx);
    return 'offbox';
  }
  if (vg.tags.includes(FACTORY_TAG)) {
    ctx.out.print(
      `zshield: a factory reset was interrupted (power cut?): ${ctx.dryRun ? 'the plan to run it again (dry run)' : 'running it again'}`,
    );
    await runFactoryReset(ctx, opts, probes);
    return 'factory';
  }
  if (rootHalfWritten(vg)) {
    // An image restore cut short: lv-root is half-written; image/ runs the same restore again.
    ctx.out.print(
      `zshield: an image restore was interrupted (power cut?): ${ctx.dryRun ? 'the plan to run it again (dry run)' : 'running it again'}`,
    );
    await resumeImageRestore(ctx);
    return 'image';
  }
  if (!vg.tags.includes(RESTORE_TAG)) return 'none';
  ctx.out.print(
    `zshield: a restore was interrupted or deferred: ${ctx.dryRun ? 'the plan to finish it (dry run)' : 'finishing it'}`,
  );
  const lock = ctx.dryRun ? null : await lockFor(ctx, 'restore (resumed)');
  // The boot menu's refresh follows as a plan of its own (it ends a dry run).
  let planned = false;
  try {
    const plan = planResume(ctx, await repaired(ctx, await probeRestore(ctx)), ctx.clock.now());
    const run = await runPlan(ctx, plan, {
      ...planRunOptions({ ...opts, confirm: 'yes' }, 'Finishing the restore'),
      notLast: true,
    });
    planned = true;
    if (!run.applied) return 'restore';
    const n = namesOf(ctx.config);
    const at = restoreLabelOf(vg.tags).time?.toISOString() ?? 'the backup';
    ctx.out.print(
      plan.deferred
        ? `zshield: the merge of ${n.snap} starts at the next boot: rebooting`
        : `restore done: ${n.root} is back at ${at}; a new ${n.snap} was taken`,
    );
  } finally {
    if (planned || !ctx.dryRun) await refreshBootMenu(ctx, {}, refreshShow(ctx, opts));
    await lock?.release();
  }
  return 'restore';
}

/** Whether the running system's root is the configured VG's lv-root (throws when it cannot probe). */
export async function runningFromLvRoot(ctx: Context): Promise<boolean> {
  const state = await probeVg(ctx.runner, ctx.config.lvm.vg);
  return isRunningRoot(state.lvs.find((l) => l.name === ctx.config.lvm.rootLv));
}
