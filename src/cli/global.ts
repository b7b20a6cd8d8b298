import type { Options } from 'yargs';
import type { CommandArgs } from '../context.js';
import { UsageError } from '../errors.js';

// The command modules of the capability folders get these values through the CommandKit
// (context.ts): importing cli/ would make a circle, cli/ wires them.

/** The options every command has. Declared once here; the values are parsed by main(). */
export const GLOBAL_OPTIONS = {
  config: {
    alias: 'c',
    type: 'string',
    requiresArg: true,
    describe: 'config file (default /etc/zshield/zshield.conf)',
  },
  'dry-run': {
    alias: 'n',
    type: 'boolean',
    default: false,
    describe: 'show what would be done; change nothing',
  },
  verbose: { alias: 'v', type: 'boolean', default: false, describe: 'show every command run' },
  quiet: {
    alias: 'q',
    type: 'boolean',
    default: false,
    describe: 'only warnings and errors on the terminal',
  },
} as const satisfies Record<string, Options>;

export const WAIT_OPTION = {
  type: 'number',
  requiresArg: true,
  default: 0,
  describe: 'seconds to wait for another zshield holding the LVM lock',
} as const satisfies Options;

export function waitMs(a: CommandArgs): number {
  const n = Number(a['wait'] ?? 0);
  if (!Number.isFinite(n) || n < 0) throw new UsageError('--wait must be a number of seconds >= 0');
  return n * 1000;
}
