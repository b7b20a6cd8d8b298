import path from 'node:path';
import { type Command, argvOf, formatArgv } from '../system/command.js';
import { type Pipeline, formatPipeline } from '../system/pipeline.js';

/**
 * The one plan model. A destructive flow is `plan(probedState, config) -> Plan` (pure) and
 * `runPlan(ctx, plan)` (plan/run.ts): the preview prints the very Step objects that are applied,
 * so what is shown is what runs. A step is a command, a pipeline, or an in-process edit (a file
 * zshield writes itself, e.g. fstab or an env block).
 */
export type Step = CommandStep | PipelineStep | EditStep;

/**
 * The last line of every dry run that went through runPlan, in one wording (the contract suite,
 * test/contract, expects exactly this line).
 */
export const DRY_RUN_DONE = 'dry run: nothing was changed';

interface StepBase {
  /** What this step does, in words. */
  title: string;
  /**
   * A step that runs only when something found at that point holds ("if snap0 holds a captured
   * /boot"). The text is shown in the preview; the test is made when the step is reached.
   */
  when?: Condition;
  /** Reads progress lines of a long step (rsync, lvconvert, e2image, dd) for the progress bar. */
  progress?: ProgressParser;
}

export interface Condition {
  text: string;
  holds: () => Promise<boolean> | boolean;
}

/** A line of a tool's output turned into progress: a fraction (0..1) when known, the text to log. */
export type ProgressParser = (line: string) => { fraction?: number; text: string; final?: boolean } | null;

export interface CommandStep extends StepBase {
  command: Command;
}

export interface PipelineStep extends StepBase {
  pipeline: Pipeline;
}

export interface EditStep extends StepBase {
  edit: Edit;
}

/** Files zshield writes in node (no tool): shown as the paths, applied by `apply`. */
export interface Edit {
  files: readonly string[];
  /** Written into, e.g. a mounted snapshot: shown as root + file. */
  root?: string;
  apply: () => Promise<void> | void;
}

export interface Plan<S extends Step = Step> {
  title: string;
  /** Facts the operator should see before it runs (sizes, what is kept, what is erased). */
  notes: string[];
  steps: S[];
  /**
   * Steps that run after `steps` whatever happened (unmount, remove a temporary snapshot): shown
   * in the preview under "always". They run even after SIGINT/SIGTERM only if their command says
   * `runsAfterAbort`.
   */
  always?: Step[];
  /**
   * Checks that can fail, made after the tools are found and before the first step: every one of
   * them runs before anything irreversible. Read-only, so a dry run makes them too.
   */
  checks?: Check[];
  /**
   * What happens at the next boot, not in this run (a merge deferred by the kernel, the finishing
   * phase of a restore). Shown, never applied by this run.
   */
  later?: Step[];
  /**
   * Set by runPlan when the runner restricts LVM commands to the system disk's PVs (another disk
   * has a VG of the same name): the argv shown lacks the `--devices` the runner adds, so this says it.
   */
  lvmScope?: { devices: readonly string[]; text: string };
}

export interface Check {
  title: string;
  /** Throws a typed error (RefusedError, NotFoundError, ...) when the check fails. */
  run: () => Promise<void> | void;
}

export const isCommand = (s: Step): s is CommandStep => 'command' in s;
export const isPipeline = (s: Step): s is PipelineStep => 'pipeline' in s;
export const isEdit = (s: Step): s is EditStep => 'edit' in s;

export const editPaths = (e: Edit): string[] => e.files.map((f) => (e.root ? path.join(e.root, f) : f));

/** A step as it is shown: its argv, its pipeline, or the files zshield writes. */
export function describeStep(s: Step): string {
  if (isPipeline(s)) return `$ ${formatPipeline(s.pipeline)}`;
  if (isEdit(s)) {
    return s.edit.files.length
      ? `(zshield writes ${editPaths(s.edit).join(', ')})`
      : '(in zshield; nothing written)';
  }
  return `$ ${formatArgv(argvOf(s.command))}`;
}

export const stepMutates = (s: Step): boolean =>
  isPipeline(s) ? s.pipeline.mutates : isEdit(s) ? s.edit.files.length > 0 : s.command.mutates;

export function formatPlan(plan: Plan): string {
  const lines = [plan.title];
  for (const n of plan.notes) lines.push(`  note: ${n}`);
  if (plan.lvmScope) lines.push(`  note: ${plan.lvmScope.text}`);
  if (plan.checks?.length) lines.push(`  checks first: ${plan.checks.map((c) => c.title).join('; ')}`);
  if (plan.steps.length === 0 && !plan.always?.length && !plan.later?.length) lines.push('  No changes.');
  const list = (steps: readonly Step[], first: number) =>
    steps.forEach((s, i) => {
      lines.push(`  ${first + i}. ${s.title}${s.when ? ` (only ${s.when.text})` : ''}`);
      lines.push(`     ${describeStep(s)}`);
    });
  list(plan.steps, 1);
  if (plan.always?.length) {
    lines.push('  always, at the end (also after a failure):');
    list(plan.always, plan.steps.length + 1);
  }
  if (plan.later?.length) {
    lines.push('  after the next boot:');
    list(plan.later, plan.steps.length + (plan.always?.length ?? 0) + 1);
  }
  return lines.join('\n');
}

export function stepToJson(s: Step): Record<string, unknown> {
  const base = { title: s.title, mutates: stepMutates(s), ...(s.when ? { when: s.when.text } : {}) };
  if (isPipeline(s)) return { ...base, pipeline: s.pipeline.stages.map((c) => argvOf(c)) };
  if (isEdit(s)) return { ...base, edit: editPaths(s.edit) };
  return { ...base, argv: argvOf(s.command) };
}

export function planToJson(plan: Plan): Record<string, unknown> {
  return {
    title: plan.title,
    notes: plan.notes,
    ...(plan.checks?.length ? { checks: plan.checks.map((c) => c.title) } : {}),
    steps: plan.steps.map(stepToJson),
    ...(plan.always?.length ? { always: plan.always.map(stepToJson) } : {}),
    ...(plan.later?.length ? { later: plan.later.map(stepToJson) } : {}),
    ...(plan.lvmScope ? { lvmScope: plan.lvmScope } : {}),
  };
}

/** Every program the plan runs in this run (checked before the first write). */
export function toolsOf(plan: Pick<Plan, 'steps' | 'always'>): string[] {
  return [...plan.steps, ...(plan.always ?? [])].flatMap((s) =>
    isPipeline(s) ? s.pipeline.stages.map((c) => c.file) : isEdit(s) ? [] : [s.command.file],
  );
}

/** Plans joined in order (a repair before a rotation, mounts before a copy). */
export function joinPlans(title: string, ...plans: Plan[]): Plan {
  return {
    title,
    notes: plans.flatMap((p) => p.notes),
    checks: plans.flatMap((p) => p.checks ?? []),
    steps: plans.flatMap((p) => p.steps),
    always: plans.flatMap((p) => p.always ?? []),
    later: plans.flatMap((p) => p.later ?? []),
  };
}
