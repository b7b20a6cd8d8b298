import { constants, accessSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import type { EditStep } from '../plan/plan.js';
import { type RecoveryEvent, appendEvent, eventLogUnder } from '../state/events.js';
import { type HookResult, runHooks } from './hooks.js';

/** The site hooks that would run now (executables in hooksDir, in name order): read, not run. */
export function listHooks(hooksDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(hooksDir).sort();
  } catch {
    return [];
  }
  return names.filter((n) => {
    try {
      const f = path.join(hooksDir, n);
      if (!statSync(f).isFile()) return false;
      accessSync(f, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * The last step of a recovery: run the site hooks (the OEM's factory test) and append the event to
 * the log on the system disk's /boot, outside lv-root, so a later rollback does not erase it. One
 * in-process step, because a failing hook is recorded with its exit code, not fatal: the recovery
 * is done by then. The hooks are named in the step's title when the plan is made.
 */
export function recordStep(
  ctx: Context,
  opts: {
    hookEvent: string;
    bootDir: string;
    env: Record<string, string>;
    event: (hooks: HookResult[]) => RecoveryEvent;
  },
): EditStep {
  const hooks = listHooks(ctx.config.recovery.hooksDir);
  const file = eventLogUnder(opts.bootDir, ctx.config.paths.eventLog);
  return {
    title: `${hooks.length ? `run the site hooks (${hooks.join(', ')}), then ` : ''}record the ${opts.hookEvent} in the event log`,
    edit: {
      files: [file],
      apply: async () => {
        const results = await runHooks(ctx, opts.hookEvent, opts.env);
        try {
          appendEvent(file, opts.event(results));
        } catch (err) {
          // The recovery itself is done: a full or read-only /boot must not undo that.
          ctx.log.warn(`could not write the event log ${file}: ${(err as Error).message}`);
        }
      },
    },
  };
}

/** A plain record without hooks (a deferred restore: the hooks run when it is finished). */
export function eventStep(
  ctx: Context,
  bootDir: string,
  title: string,
  event: () => RecoveryEvent,
): EditStep {
  const file = eventLogUnder(bootDir, ctx.config.paths.eventLog);
  return {
    title,
    edit: {
      files: [file],
      apply: () => {
        try {
          appendEvent(file, event());
        } catch (err) {
          ctx.log.warn(`could not write the event log ${file}: ${(err as Error).message}`);
        }
      },
    },
  };
}
