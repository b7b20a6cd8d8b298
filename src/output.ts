import type { Options } from 'yargs';

// Beside errors.ts, importing nothing of zshield: every capability's cli.ts uses it, config/'s
// too (which context.ts and plan/ are built on).

/** Where a command's document goes (the Context's `out`). */
interface Output {
  print(text: string): void;
}

/**
 * `--json`, declared once for every command that has it (all but `daemon`, `boot`, `config edit`):
 * stdout carries one JSON document, the plan on a dry run or the result, and a failure is
 * `{code, message, hint}` there too (cli/main.ts), with what did succeed when a command has it.
 */
export const JSON_OPTION = {
  type: 'boolean',
  default: false,
  describe:
    'print one JSON document on stdout: the plan (with --dry-run) or the result; a failure as {code, message, hint}',
} as const satisfies Options;

/** Whether the command line asked for JSON. */
export const wantsJson = (a: Record<string, unknown>): boolean => a['json'] === true;

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
