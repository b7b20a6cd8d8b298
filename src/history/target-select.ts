// Which targets a history job acts on (all, or those named), and one history job at a time.
import type { HistoryConfig, TargetConfig } from '../config/history.js';
import type { Context } from '../context.js';
import { ConfigError, NotFoundError } from '../errors.js';
import { acquireLock, type LockHandle } from '../system/lock.js';

export function selectTargets(h: HistoryConfig, only?: readonly string[]): TargetConfig[] {
  if (!h.targets.length)
    throw new ConfigError([{ where: 'history.targets', message: 'no target is configured' }], {
      hint: 'zshield history target add NAME USER@HOST:DIR --key FILE sets one up',
    });
  if (!only?.length) return h.targets;
  const unknown = only.filter((n) => !h.targets.some((t) => t.name === n));
  if (unknown.length)
    throw new NotFoundError(`no history target named ${unknown.join(', ')}`, {
      hint: 'zshield history target list shows the targets',
    });
  return h.targets.filter((t) => only.includes(t.name));
}

/** One history job at a time: take, replicate and prune all write the repository or the targets. */
export function historyLock(ctx: Context, purpose: string): Promise<LockHandle> {
  return acquireLock('history', purpose, {
    runDir: ctx.config.paths.runDir,
    log: ctx.log,
    waitMs: 0,
    title: 'history',
    busy: (who) => `another history job is running: ${who}`,
    hint: 'wait for it to finish',
  });
}
