import type { Context } from './context.js';
import { type Command, formatArgv, argvOf } from './system/runner.js';

/**
 * A destructive flow is plan (pure, from probed state) then apply (runs the very same Step
 * objects). The preview prints those objects, so what is shown is what runs.
 */
export interface Step {
  /** What this step does, in words. */
  title: string;
  command: Command;
}

export interface Plan {
  title: string;
  /** Facts the operator should see before it runs (sizes, what is kept, what is erased). */
  notes: string[];
  steps: Step[];
}

export function formatPlan(plan: Plan): string {
  const lines = [plan.title];
  for (const n of plan.notes) lines.push(`  note: ${n}`);
  if (plan.steps.length === 0) lines.push('  No changes.');
  plan.steps.forEach((s, i) => {
    lines.push(`  ${i + 1}. ${s.title}`);
    lines.push(`     $ ${formatArgv(argvOf(s.command))}`);
  });
  return lines.join('\n');
}

export function planToJson(plan: Plan): unknown {
  return {
    title: plan.title,
    notes: plan.notes,
    steps: plan.steps.map((s) => ({ title: s.title, argv: argvOf(s.command), mutates: s.command.mutates })),
  };
}

export async function applyPlan(plan: Plan, ctx: Pick<Context, 'runner' | 'log'>): Promise<void> {
  const n = plan.steps.length;
  for (const [i, step] of plan.steps.entries()) {
    ctx.log.info(`[${i + 1}/${n}] ${step.title}`);
    await ctx.runner.run(step.command);
  }
}
