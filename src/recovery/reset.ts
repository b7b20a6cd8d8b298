import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Context } from '../context.js';
import { type GoldenFacts, probeGoldenRoot, unmountIfMounted } from '../golden/index.js';
import { type Plan, type Step, joinPlans } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { type DiskProbe, probeDisks } from '../system/disks.js';
import { type PvInfo, probePvs } from '../system/pvs.js';
import { unscoped } from '../system/lvm-scope.js';
import { mutating } from '../system/root-copy.js';
import { requireTools } from '../system/tools.js';
import { planFactoryReset } from './factory.js';
import type { RootFill } from './factory-input.js';
import { recordStep } from './record.js';
import { type ConfirmOptions, lockFor, planRunOptions } from './options.js';
import { refreshBootMenu } from '../restore-point/index.js';
import { mountArgv, umountArgv } from '../system/mount-commands.js';

export interface FactoryOptions extends ConfirmOptions {
  target?: string;
  /** The new root from elsewhere than the golden root (a disaster restore from the history). */
  root?: RootFill;
}

/** What a factory reset reads of the machine (tests pass stand-ins; the real ones read this box). */
export interface FactoryProbes {
  disks: (ctx: Context) => Promise<DiskProbe>;
  pvs: (ctx: Context) => Promise<PvInfo[]>;
  golden: (ctx: Context) => Promise<GoldenFacts>;
}

export const realFactoryProbes: FactoryProbes = {
  disks: (ctx) => probeDisks(ctx.runner),
  // Every PV, not only the system disk's: the target check must see a same-named VG elsewhere.
  pvs: (ctx) => probePvs(unscoped(ctx.runner)),
  golden: probeGoldenRoot,
};

/**
 * The whole factory reset as one plan: the reset itself (factory.ts), then the system's new /boot
 * mounted for a moment to run the site hooks and record the event there.
 */
export async function planFactory(
  ctx: Context,
  opts: FactoryOptions,
  probes: FactoryProbes,
  started: Date,
): Promise<Plan> {
  await requireTools(ctx.runner, ['lsblk', 'pvs']);
  const reset = planFactoryReset({
    config: ctx.config,
    disks: await probes.disks(ctx),
    pvs: await probes.pvs(ctx),
    golden: await probes.golden(ctx),
    bootUuid: randomUUID(),
    now: started,
    ...(opts.target ? { targetOverride: opts.target } : {}),
    ...(opts.root ? { root: opts.root } : {}),
  });
  const what = opts.root ? 'offbox-restore' : 'factory-reset';
  // The golden root is read-only: the event log goes to the new /boot, mounted under the run dir.
  const bootDir = path.join(ctx.config.paths.runDir, 'boot');
  const record: Step[] = [
    { title: `make ${bootDir}`, command: mutating('mkdir', ['-p', bootDir]) },
    {
      title: 'mount the new /boot',
      command: mutating(...mountArgv(reset.bootDevice, bootDir, { type: 'ext4' })),
    },
    recordStep(ctx, {
      hookEvent: what,
      bootDir,
      env: { ZSHIELD_BOOT_DIR: bootDir },
      event: (hooks) => ({
        at: started.toISOString(),
        event: opts.root ? 'restore' : 'factory-reset',
        result: 'ok',
        detail: reset.title,
        hooks,
        durationMs: ctx.clock.now().getTime() - started.getTime(),
      }),
    }),
    { title: `unmount ${bootDir}`, command: mutating(...umountArgv(bootDir)) },
  ];
  return joinPlans(reset.title, reset, {
    title: '',
    notes: [],
    steps: record,
    always: [unmountIfMounted(bootDir)],
  });
}

/** Factory reset: lock, probe, plan, then runPlan (show, tools, checks, confirm, apply). */
export async function runFactoryReset(
  ctx: Context,
  opts: FactoryOptions,
  probes: FactoryProbes = realFactoryProbes,
): Promise<void> {
  const lock = ctx.dryRun
    ? null
    : await lockFor(ctx, opts.root ? 'restore from off-box backup' : 'factory reset');
  const started = ctx.clock.now();
  try {
    const plan = await planFactory(ctx, opts, probes, started);
    const run = await runPlan(
      ctx,
      plan,
      planRunOptions(opts, opts.root ? 'The restore' : 'The factory reset'),
    );
    if (!run.applied) return;
    ctx.out.print(
      `${opts.root ? 'restore from off-box backup' : 'factory reset'} done in ${Math.round((ctx.clock.now().getTime() - started.getTime()) / 1000)} s`,
    );
    await refreshBootMenu(ctx, { pairGolden: true }); // and the golden menu reads it from this disk
  } finally {
    await lock?.release();
  }
}
