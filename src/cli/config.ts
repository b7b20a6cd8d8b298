import { renderConfig } from '../config/render.js';
import type { Config } from '../config/schema.js';
import { ConfigError, type ConfigProblem, type ZshieldError } from '../errors.js';
import { type CliCommand, group, printJson, withJson } from '../output.js';

// context.ts (the Context, the CommandKit) is built on config/, so this module names only what it
// needs of them: main() passes the real kit, and C is its Context.

interface ConfigContext {
  config: Config;
  configFile: string | null;
  out: { print(text: string): void };
}
interface ConfigKit<C extends ConfigContext> {
  context(a: { config?: string }, opts?: { quietConsole?: boolean; logFile?: boolean }): Promise<C>;
}

/**
 * A capability's own checks of its settings, beyond the schema: what its commands would refuse
 * (a file mode, a ciphertext). main() passes each capability's check; config/ imports none of them.
 */
export type ConfigCheck<C> = (ctx: C) => ZshieldError[] | Promise<ZshieldError[]>;

/** `zshield config check | show | edit`; `edit` is the remote module's editor (remote/cli.ts). */
export function configCommand<C extends ConfigContext>(
  kit: ConfigKit<C>,
  opts: { checks: ConfigCheck<C>[]; edit: CliCommand },
) {
  return group({
    command: 'config',
    describe: 'check, show or edit the configuration',
    builder: (y) =>
      y
        .command(
          'check',
          'validate the config file as the commands that use it do (schema, secret files and their modes, the stored password); report every problem',
          (yy) => withJson(yy),
          async (a) => {
            const ctx = await kit.context(a, {
              quietConsole: true,
              logFile: false,
            });
            await runChecks(ctx, opts.checks);
            if (a.json) printJson(ctx.out, { ok: true, file: ctx.configFile });
            else ctx.out.print(`config OK: ${ctx.configFile ?? 'no file, built-in defaults'}`);
          },
        )
        .command(
          'show',
          'print the effective configuration (defaults filled in; JSON with or without --json)',
          (yy) => withJson(yy),
          async (a) => {
            const { loadConfig } = await import('../config/load.js');
            const loaded = await loadConfig(a.config);
            process.stdout.write(`${JSON.stringify(renderConfig(loaded.config), null, 2)}\n`);
          },
        )
        .command(opts.edit)
        .demandCommand(1, 'say which: config check | config show | config edit'),
  });
}

/** Every capability's check; all their problems in one ConfigError (exit 3), the first one's hint. */
async function runChecks<C extends ConfigContext>(ctx: C, checks: ConfigCheck<C>[]): Promise<void> {
  const errors: ZshieldError[] = [];
  for (const check of checks) errors.push(...(await check(ctx)));
  if (!errors.length) return;
  const file = ctx.configFile ?? 'config';
  const problems: ConfigProblem[] = errors.flatMap((e) =>
    e instanceof ConfigError
      ? e.problems.map((p) => (p.where.startsWith(file) ? p : { ...p, where: `${file}: ${p.where}` }))
      : [{ where: file, message: e.message }],
  );
  const hint = errors.find((e) => e.hint)?.hint;
  throw new ConfigError(problems, hint ? { hint } : undefined);
}
