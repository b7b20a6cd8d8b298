import type { Context } from '../context.js';
import type { Confirm } from '../output.js';
import type { RunPlanOptions } from '../plan/run.js';
import { acquireLvmLock } from '../system/lock.js';
import type { Prompter } from '../system/prompt.js';

export interface ConfirmOptions {
  /** 'countdown': at boot, the console shows the plan and counts down; 'yes': confirmed by a flag; 'ask': refused without one. */
  confirm: Confirm;
  /** Print the plan as JSON (stdout) instead of text. */
  json?: boolean;
  /** The console for the countdown (default: stdin/stdout). */
  prompter?: Prompter;
}

export function planRunOptions(opts: ConfirmOptions, what: string): RunPlanOptions {
  return {
    confirm: opts.confirm,
    what,
    show: opts.json ? 'json' : 'out',
    ...(opts.prompter ? { prompter: opts.prompter } : {}),
  };
}

/** Every command that changes LVM holds this lock (the daemon's backup never races a recovery). */
export function lockFor(ctx: Context, purpose: string) {
  return acquireLvmLock({ runDir: ctx.config.paths.runDir, log: ctx.log, purpose, waitMs: 60_000 });
}
