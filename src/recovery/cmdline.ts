import { UsageError } from '../errors.js';

export type RecoveryRequest = 'none' | 'default' | 'latest' | 'offbox';

/**
 * Read `zshield_recovery=` from a kernel command line. Quoting follows the kernel's rules (a value
 * may be in double quotes). An unknown value is a UsageError: the boot hook prints it on the
 * console and touches nothing.
 */
export function recoveryRequest(cmdline: string): RecoveryRequest {
  const values: string[] = [];
  for (const m of cmdline.matchAll(/(?:^|\s)zshield_recovery(?:=("[^"]*"|\S*))?/g)) {
    values.push((m[1] ?? '').replace(/^"(.*)"$/, '$1'));
  }
  if (values.length === 0) return 'none';
  const v = values.at(-1)!; // the kernel's convention: the last one wins
  if (v === 'default' || v === 'latest' || v === 'offbox') return v;
  throw new UsageError(`unknown zshield_recovery value "${v}" on the kernel command line`, {
    hint: 'expected zshield_recovery=default (factory reset), latest (restore the latest backup) or offbox (restore a blank disk from the off-box backup); nothing was changed',
  });
}
