import { MissingToolError } from '../errors.js';
import type { Runner } from './runner.js';

/** Check every tool a plan (or a list) needs before the first write: a missing one fails early, all named. */
export async function requireTools(runner: Runner, tools: Iterable<string>): Promise<void> {
  const missing: string[] = [];
  for (const t of new Set(tools)) if (!(await runner.which(t))) missing.push(t);
  if (missing.length === 1) throw new MissingToolError(missing[0]!, { hint: hintFor(missing) });
  if (missing.length > 1) throw new MissingToolError(missing.join(', '), { hint: hintFor(missing) });
}

function hintFor(tools: string[]): string {
  const lvm = tools.some((t) => /^(lv|vg|pv)/.test(t));
  return lvm
    ? 'install lvm2 (it provides lvs, vgs, lvcreate, lvconvert, ...)'
    : `install ${tools.join(', ')}`;
}
