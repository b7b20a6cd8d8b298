import type { ArgumentsCamelCase, Argv, Options } from 'yargs';
import { UsageError } from './errors.js';

// Beside errors.ts, importing nothing of zshield but it: every capability's cli.ts uses it,
// config/'s too (which context.ts and plan/ are built on). The command line's shared pieces live
// here for that reason: cli/ wires the capabilities, so they cannot import from it.

/**
 * The global options' values, as every handler receives them (declared in cli/global.ts
 * GLOBAL_OPTIONS, which is checked against this type there).
 */
export interface GlobalArgs {
  config: string | undefined;
  'dry-run': boolean;
  verbose: boolean;
  quiet: boolean;
}

/**
 * Any command, whatever its own options: what a list of commands holds and main() registers.
 * Build one with `command()`, which checks the handler against its builder.
 */
export interface CliCommand {
  command: string;
  describe: string;
  // Methods, not function properties: TypeScript compares method parameters both ways, so a
  // command() whose handler reads more than GlobalArgs fits in a list of these. Sound because
  // yargs calls a handler with exactly what its own builder declared; command() checks that pair.
  builder(y: Argv<GlobalArgs>): Argv<GlobalArgs>;
  handler(a: ArgumentsCamelCase<GlobalArgs>): void | Promise<void>;
}

/**
 * A command whose handler receives the types its builder declared, as yargs infers them from the
 * option declarations: no handler reads an option as `unknown` or casts its arguments.
 */
export function command<A extends GlobalArgs>(m: {
  command: string;
  describe: string;
  builder: (y: Argv<GlobalArgs>) => Argv<A>;
  handler: (a: ArgumentsCamelCase<A>) => void | Promise<void>;
}): CliCommand {
  return m;
}

/** A command that only groups subcommands (`history`, `image`, ...): its builder adds them. */
export function group(m: {
  command: string;
  describe: string;
  builder: (y: Argv<GlobalArgs>) => Argv<GlobalArgs>;
}): CliCommand {
  return { ...m, handler: () => {} };
}

/** How a destructive command is confirmed: `--yes`, a question on the terminal, or a countdown (boot). */
export type Confirm = 'yes' | 'ask' | 'countdown';

/** `--yes`: each command says what it confirms. */
export const withYes = <T>(y: Argv<T>, describe: string) =>
  y.option('yes', { type: 'boolean', default: false, describe });

/** What a command line can give: `--yes`, else asked on the terminal (the countdown is the boot hook's). */
export type CommandLineConfirm = Exclude<Confirm, 'countdown'>;

/** A command line's confirmation. */
export const confirmOf = (a: { yes: boolean }): CommandLineConfirm => (a.yes ? 'yes' : 'ask');

const WAIT_OPTION = {
  type: 'number',
  requiresArg: true,
  default: 0,
  describe: 'seconds to wait for another zshield holding the LVM lock',
} as const satisfies Options;

/** `--wait SECONDS`, for the commands that take the LVM lock. */
export const withWait = <T>(y: Argv<T>) => y.option('wait', WAIT_OPTION);

/** The parsed `--wait` in milliseconds. */
export function waitMs(a: { wait: number }): number {
  const n = Number(a.wait ?? 0);
  if (!Number.isFinite(n) || n < 0) throw new UsageError('--wait must be a number of seconds >= 0');
  return n * 1000;
}

/** Where a command's document goes (the Context's `out`). */
interface Output {
  print(text: string): void;
}

/**
 * `--json`, declared once for every command that has it (all but `daemon`, `boot`, `config edit`):
 * stdout carries one JSON document, the plan on a dry run or the result, and a failure is
 * `{code, message, hint}` there too (cli/main.ts), with what did succeed when a command has it.
 */
const JSON_OPTION = {
  type: 'boolean',
  default: false,
  describe:
    'print one JSON document on stdout: the plan (with --dry-run) or the result; a failure as {code, message, hint}',
} as const satisfies Options;

/** `--json` (above). */
export const withJson = <T>(y: Argv<T>) => y.option('json', JSON_OPTION);

/**
 * With --json, stdout is the one document: the lines a command prints for a person (ctx.out) are
 * dropped, and the document goes to the stdout returned here. Without, ctx is left as it is.
 * `ctx.doc` is also what silences progress lines on the console (plan/progress.ts progressFor,
 * the one place that decides where progress goes: never stdout).
 */
export function jsonOutput(ctx: { out: Output; doc?: Output }, json: boolean): Output {
  if (ctx.doc) return ctx.doc;
  const out = ctx.out;
  if (!json) return out;
  // One document, by construction: a dry run's is its plan (runPlan prints it first), and the
  // result a handler prints after it is not a second one.
  let printed = false;
  ctx.out = { print: () => {} };
  ctx.doc = {
    print: (text) => {
      if (printed) return;
      printed = true;
      out.print(text);
    },
  };
  return ctx.doc;
}

/** The one JSON document of a command (a result object; never a secret). */
export function printJson(out: Output, value: unknown): void {
  out.print(JSON.stringify(value, null, 2));
}

/** Rows under a header, each column as wide as its widest cell, two spaces apart (the result tables). */
export function formatColumns(head: readonly string[], body: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(head), ...body.map(line)].join('\n');
}

/** `--from T` and `--allow-uncataloged`: where a fingerprint is fetched from (history restore, recover fingerprint). */
export const fromTargetOption = {
  type: 'string',
  describe: 'fetch from this target even if the local repository has it',
} as const;
export const allowUncatalogedOption = {
  type: 'boolean',
  default: false,
  describe: 'restore a fingerprint the catalog does not list (you know where it comes from)',
} as const;
