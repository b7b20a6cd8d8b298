import type { Logger } from '../log/logger.js';
import { InterruptedError, RefusedError } from '../errors.js';
import type { Confirm } from '../output.js';
import type { Command } from '../system/command.js';
import type { Pipeline } from '../system/pipeline.js';
import type { Runner } from '../system/runner.js';
import { type Prompter, StreamPrompter } from '../system/prompt.js';
import { requireTools } from '../system/tools.js';
import { describeScope, isLvmTool, lvmScopeOf } from '../system/lvm-scope.js';
import {
  DRY_RUN_DONE,
  type Plan,
  type Step,
  type ProgressParser,
  formatPlan,
  isEdit,
  isPipeline,
  planToJson,
  toolsOf,
} from './plan.js';
import { type Progress, progressFor } from './progress.js';

export interface RunPlanOptions {
  /**
   * How destructive work is confirmed: 'yes' by a flag; 'ask' refuses without one (the command
   * line without --yes); 'countdown' at boot on the console; 'none' for work that destroys nothing
   * the operator would want to keep (a backup rotation).
   */
  confirm: Confirm | 'none';
  /** The job in words, for the confirmation ("The factory reset"). */
  what?: string;
  /** Where the preview goes: stdout (text or --json), the log (a daemon job), or nowhere (shown already). */
  show?: 'out' | 'json' | 'log' | 'none';
  /** The console for the countdown (default: stdin/stdout). */
  prompter?: Prompter;
  /**
   * Another plan of the same command follows (a repair before the rotation it makes possible): a
   * dry run says "nothing was changed" once, after the last.
   */
  notLast?: boolean;
}

export interface PlanRun {
  /** False on a dry run: the plan was shown and checked, nothing applied. */
  applied: boolean;
  /** Titles of the steps run, in order. */
  ran: string[];
  /** Titles of conditional steps whose condition did not hold. */
  skipped: string[];
}

/**
 * What a plan's run needs of a command's context (context.ts Context holds all of it): the plan
 * stands below the context, so that every layer above can run a plan.
 */
export interface PlanContext {
  runner: Runner;
  log: Logger;
  /** Operator-facing output (stdout). */
  out: { print(text: string): void };
  /** With --json: stdout, where a dry run's plan goes. */
  doc?: { print(text: string): void };
  dryRun: boolean;
  signal: AbortSignal;
  config: { recovery: { countdownSeconds: number } };
}

/**
 * The one way a plan runs: show it, check every tool and precondition, (dry run: stop here),
 * confirm, apply each step with progress, run the `always` steps whatever happened. The preview
 * and the run are the same Step objects.
 */
export async function runPlan(ctx: PlanContext, plan: Plan, opts: RunPlanOptions): Promise<PlanRun> {
  // With --json (ctx.doc), stdout is one document: a dry run's is the plan; a real run's is the
  // command's result, so a plan meant for the terminal goes to the log.
  const asked = opts.show ?? 'out';
  const show = ctx.doc && asked === 'out' ? (ctx.dryRun ? 'json' : 'log') : asked;
  const shown = await withLvmScope(ctx, plan);
  // Stdout as one JSON document: the plan only once every check passed; a failed check's error
  // is then the document, not a second one after the plan.
  if (show !== 'json') showPlan(ctx, shown, show);
  await requireTools(ctx.runner, toolsOf(plan));
  for (const check of plan.checks ?? []) await check.run();
  if (show === 'json') showPlan(ctx, shown, show);
  if (ctx.dryRun) {
    if (!opts.notLast) sayNothingChanged(ctx, show);
    return { applied: false, ran: [], skipped: [] };
  }
  await confirm(ctx, plan, opts);
  const result: PlanRun = { applied: true, ran: [], skipped: [] };
  // Stdout carries a JSON document (the plan was asked as JSON): no progress lines on the console.
  const json = show === 'json';
  const n = plan.steps.length + (plan.always?.length ?? 0);
  let failed = false;
  try {
    for (const [i, step] of plan.steps.entries()) {
      if (ctx.signal.aborted) throw new InterruptedError(`interrupted before: ${step.title}`);
      await runStep(ctx, step, `[${i + 1}/${n}]`, result, json);
    }
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await runAlways(ctx, plan, plan.steps.length, n, result, failed, json);
  }
  ctx.log.toFile(
    'info',
    `plan done: ${plan.title} (${result.ran.length} step(s) run, ${result.skipped.length} skipped)`,
  );
  return result;
}

/**
 * A dry run that got past every check says so once, where its plan went: on stdout after a text
 * plan, in the log (stderr) when stdout holds a JSON document or the plan went to the log.
 */
export function sayNothingChanged(
  ctx: Pick<PlanContext, 'out' | 'log'>,
  show: NonNullable<RunPlanOptions['show']>,
): void {
  if (show === 'out') ctx.out.print(DRY_RUN_DONE);
  else ctx.log.info(DRY_RUN_DONE);
}

/** The plan as shown: with the devices its LVM commands are restricted to, if they are. */
async function withLvmScope(ctx: Parameters<typeof runPlan>[0], plan: Plan): Promise<Plan> {
  const scope = toolsOf(plan).some(isLvmTool) ? await lvmScopeOf(ctx.runner) : null;
  const text = scope ? describeScope(scope) : null;
  return scope?.devices && text ? { ...plan, lvmScope: { devices: scope.devices, text } } : plan;
}

export function showPlan(
  ctx: Pick<PlanContext, 'out' | 'doc' | 'log'>,
  plan: Plan,
  show: NonNullable<RunPlanOptions['show']>,
): void {
  if (show === 'json') (ctx.doc ?? ctx.out).print(JSON.stringify(planToJson(plan), null, 2));
  else if (show === 'out') ctx.out.print(formatPlan(plan));
  else if (show === 'log') for (const line of formatPlan(plan).split('\n')) ctx.log.info(line);
}

/**
 * `always` steps: each is tried even when an earlier one failed; the first failure is reported
 * after. After a failed step its failure is the one reported (an unmount that fails because the
 * mount before it failed is only a warning): a throw here would replace it.
 */
async function runAlways(
  ctx: Parameters<typeof runPlan>[0],
  plan: Plan,
  offset: number,
  n: number,
  result: PlanRun,
  afterFailure: boolean,
  json: boolean,
): Promise<void> {
  let first: unknown = null;
  for (const [i, step] of (plan.always ?? []).entries()) {
    try {
      await runStep(ctx, step, `[${offset + i + 1}/${n}]`, result, json);
    } catch (err) {
      ctx.log.warn(`${step.title} failed: ${(err as Error).message}`);
      first ??= err;
    }
  }
  if (first && !afterFailure) throw first;
}

async function runStep(
  ctx: Parameters<typeof runPlan>[0],
  step: Step,
  counter: string,
  result: PlanRun,
  json = false,
): Promise<void> {
  if (step.when && !(await step.when.holds())) {
    ctx.log.info(`${counter} ${step.title}: skipped (not ${step.when.text})`);
    result.skipped.push(step.title);
    return;
  }
  ctx.log.info(`${counter} ${step.title}`);
  const progress = step.progress ? progressFor(ctx, step.title, { json }) : null;
  try {
    if (isEdit(step)) await step.edit.apply();
    else if (isPipeline(step)) await ctx.runner.pipeline(withParser(step.pipeline, step.progress, progress));
    else await ctx.runner.run(withLineParser(step.command, step.progress, progress));
  } finally {
    progress?.done();
  }
  result.ran.push(step.title);
}

function withLineParser(cmd: Command, parse: ProgressParser | undefined, progress: Progress | null): Command {
  if (!parse || !progress) return cmd;
  return {
    ...cmd,
    onLine: (line, stream) => {
      cmd.onLine?.(line, stream);
      const u = parse(line);
      if (u) progress.update(u);
    },
  };
}

function withParser(p: Pipeline, parse: ProgressParser | undefined, progress: Progress | null): Pipeline {
  if (!parse || !progress) return p;
  return { ...p, stages: p.stages.map((s) => withLineParser(s, parse, progress)) };
}

/**
 * Ask before destroying. At boot: a countdown on the console; typing c (or n) and Enter cancels.
 * Without a terminal the countdown simply runs out. On the command line without --yes: refuse.
 */
async function confirm(ctx: Parameters<typeof runPlan>[0], plan: Plan, opts: RunPlanOptions): Promise<void> {
  const what = opts.what ?? plan.title;
  if (opts.confirm === 'yes' || opts.confirm === 'none') return;
  if (opts.confirm === 'ask') {
    throw new RefusedError(`${what} was not started: it needs confirmation`, {
      hint: 'read the plan above, then run again with --yes (or --dry-run to only see the plan)',
    });
  }
  const seconds = ctx.config.recovery.countdownSeconds;
  if (seconds === 0) return;
  const console = opts.prompter ?? new StreamPrompter(process.stdin, process.stdout, ctx.signal);
  try {
    console.print(`${what} starts in ${seconds} s. Type c and Enter to cancel.`);
    for (let left = seconds; left > 0; left--) {
      if (left < seconds && left % 5 === 0) console.print(`  ${left} s...`);
      const answer = await console.lineWithin(1000);
      if (answer !== null && /^\s*[cn]/i.test(answer)) {
        throw new InterruptedError(`${what} was cancelled by the operator; nothing was written`);
      }
    }
  } finally {
    if (!opts.prompter) console.close();
  }
}
