import type { InferredOptionTypes, Options } from 'yargs';
import type { GlobalArgs } from '../output.js';

// The command modules of the capability folders read these values as GlobalArgs (output.ts):
// importing cli/ would make a circle, cli/ wires them.

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
} as const satisfies Record<keyof GlobalArgs, Options>;

/** What yargs infers from GLOBAL_OPTIONS is what the handlers are typed with: tsc fails otherwise. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const GLOBAL_ARGS_MATCH: Same<InferredOptionTypes<typeof GLOBAL_OPTIONS>, GlobalArgs> = true;
