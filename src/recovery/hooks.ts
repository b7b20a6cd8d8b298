import { constants, accessSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { CommandError } from '../errors.js';

export interface HookResult {
  hook: string;
  code: number | null;
}

/**
 * Run the executables in the hooks folder, in name order (the OEM's factory test, site checks).
 * Each gets the event in ZSHIELD_EVENT; a failing hook is reported and recorded, not fatal: the
 * recovery itself is done by then.
 */
export async function runHooks(
  ctx: Context,
  event: string,
  env: Record<string, string>,
): Promise<HookResult[]> {
  const dir = ctx.config.recovery.hooksDir;
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  const results: HookResult[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
    } catch {
      continue;
    }
    try {
      await ctx.runner.run({
        file,
        args: [],
        mutates: true,
        env: { ZSHIELD_EVENT: event, ...env },
        timeoutMs: 3600_000,
        onLine: (l) => ctx.log.info(`  ${name}: ${l}`),
      });
      ctx.log.info(`hook ${name}: ok`);
      results.push({ hook: name, code: 0 });
    } catch (err) {
      const code = err instanceof CommandError ? (err.code ?? null) : null;
      ctx.log.error(`hook ${name} failed: ${(err as Error).message}`);
      results.push({ hook: name, code });
    }
  }
  return results;
}
