import path from 'node:path';
import yargs, { type Argv } from 'yargs';
import { cloneCommand } from '../clone/cli.js';
import type { CommandKit, Context } from '../context.js';
import { daemonCommand, type StartDaemon, startDaemon } from '../daemon/cli.js';
import { ConfigError, ExitCode, exitCodeOf, UsageError, ZshieldError } from '../errors.js';
import { fleetCommand } from '../fleet/cli.js';
import { goldenCommand } from '../golden/cli.js';
import { historyCommands } from '../history/cli.js';
import { aptHookCommand } from '../hooks/cli.js';
import { imageCommand } from '../image/cli.js';
import type { Logger } from '../log/logger.js';
import type { Reason } from '../names/lvm-tags.js';
import type { CliCommand } from '../output.js';
import { bootCommand, recoverCommand } from '../recovery/cli.js';
import { configEditCommand, keygenCommand, remoteCommand, remoteConfigCheck } from '../remote/cli.js';
import { backupCommand } from '../backup/cli.js';
import { statusCommand } from '../status/cli.js';
import { VERSION } from '../version.js';
import { configCommand } from './config.js';
import { GLOBAL_OPTIONS } from './global.js';
import { Session } from './session.js';

/** `config check` runs each section's own checks: those its commands make (loaded when it runs). */
const historyConfigCheck = async (ctx: Context) =>
  (await import('../history/index.js')).checkHistoryConfig(ctx);
const cloneConfigCheck = async (ctx: Context) => (await import('../clone/index.js')).checkCloneConfig(ctx);

/**
 * Every command, from the capability that owns it (its `cli.ts`). Also read by build/docs.ts for
 * the README's command tables.
 */
export function commandModules(kit: CommandKit, opts: { defaultReason: Reason }): CliCommand[] {
  // The daemon writes the metrics file after each health check (one writer: src/metrics).
  const daemon: StartDaemon = (ctx, a) => startDaemon(ctx, a, { afterCheck: metricsAfterJob });
  return [
    backupCommand(kit, opts),
    statusCommand(kit),
    daemonCommand(kit, daemon),
    bootCommand(kit, { daemon }),
    recoverCommand(kit),
    goldenCommand(kit),
    configCommand(kit, {
      checks: [remoteConfigCheck, historyConfigCheck, cloneConfigCheck],
      edit: configEditCommand(kit),
    }),
    imageCommand(kit),
    cloneCommand(kit),
    remoteCommand(kit),
    keygenCommand(kit),
    ...historyCommands(kit),
    fleetCommand(kit),
    aptHookCommand(kit),
  ];
}

/**
 * The entry. The only place that decides exit codes and calls process.exit. The same binary run as
 * `zshield_backup` (a symlink) takes a pre-upgrade backup.
 */
export async function main(argv: string[], invokedAs: string): Promise<number> {
  const asBackup = invokedAs === 'zshield_backup';
  const args = asBackup ? ['backup', ...argv] : argv;
  const session = new Session();
  const kit: CommandKit = { context: session.context };
  // Whether the command asked for JSON: then a failure is reported on stdout as JSON too.
  let json: boolean | undefined;
  // The command that ran (yargs' first word), for the metrics file after a job.
  let command = '';
  const parser = cliParser(
    args,
    commandModules(kit, { defaultReason: asBackup ? 'pre-upgrade' : 'manual' }),
  ).middleware((a) => {
    json = a['json'] === true;
    command = String(a._[0] ?? '');
  });
  let exit: number = ExitCode.ok;
  try {
    await parser.parseAsync();
  } catch (err) {
    exit = report(err, session.log, json ?? args.includes('--json'));
  } finally {
    // After a job, successful or not, the metrics file says what it left (a failed backup too).
    if (session.lastContext && JOB_COMMANDS.has(command)) {
      await metricsAfterJob(session.lastContext);
    }
    await session.close();
  }
  return exit;
}

/** The commands after which the metrics file is rewritten (the daemon's after each check). */
const JOB_COMMANDS = new Set(['backup', 'apt-hook', 'recover', 'boot', 'image', 'history', 'remote']);

/** Never throws (src/metrics logs its own failure); loaded only when it writes. */
async function metricsAfterJob(ctx: Context): Promise<void> {
  const { writeMetrics } = await import('../status/index.js');
  await writeMetrics(ctx);
}

export function cliParser(args: string[], commands: CliCommand[]): Argv {
  let y = yargs(args)
    .scriptName('zshield')
    .usage(
      '$0 <command> [options]\n\nOn-device recovery agent: restore points of the root file system, factory reset, restore.',
    )
    .version(VERSION)
    .options(GLOBAL_OPTIONS)
    .check(oneValueEach);
  for (const c of commands) y = y.command(c);
  return y
    .demandCommand(1, 'a command is needed; see zshield --help')
    .strict()
    .recommendCommands()
    .help()
    .alias('help', 'h')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      // A command's own error passes through; yargs' own (YError: a failed check, a missing value)
      // is a usage error like its plain messages.
      if (err instanceof Error && err.name !== 'YError') throw err;
      // yargs spreads some messages over lines ("Invalid values:\n  Argument: ..."): errors are one line.
      const oneLine = (msg ?? 'invalid command line')
        .replace(/\s*\n\s*/g, ' ')
        .replace(/^Not enough arguments following: (\S+)$/, 'option --$1 needs a value')
        .trim();
      throw new UsageError(oneLine, { hint: 'see zshield --help' });
    });
}

/**
 * An option given twice is refused rather than joined into a list (`--reason a --reason b` would
 * become the tag value "a,b", which LVM refuses) or silently resolved. An empty value (`--config ''`,
 * `--target=`) is refused too, before anything reads "" as a file name or as "not given". Options
 * and positionals declared as lists (`array: true`, e.g. the words after `--` of `golden update`)
 * are lists whatever was given: yargs names them in `options.array`.
 */
function oneValueEach(a: Record<string, unknown>, options?: { array?: readonly string[] }): true | string {
  const lists = new Set(options?.array ?? []);
  const named = Object.keys(a).filter((k) => k !== '_' && k !== '$0' && k.length > 1 && !/[A-Z]/.test(k));
  const empty = named.find((k) => a[k] === '');
  if (empty) return `option --${empty} needs a value`;
  const repeated = named.find((k) => Array.isArray(a[k]) && !lists.has(k));
  return repeated ? `option --${repeated} was given more than once: give it once` : true;
}

/** The one place an error becomes an exit code and the lines the operator sees. */
function report(err: unknown, log: Logger | undefined, json: boolean): number {
  const code = exitCodeOf(err);
  let message: string;
  let hint: string | undefined;
  if (err instanceof ZshieldError) {
    ({ message, hint } = err);
    log?.debug(`${err.name}: ${err.message}`);
    process.stderr.write(`zshield: ${err.message}\n`);
    if (err instanceof ConfigError && err.problems.length > 1) {
      for (const p of err.problems) process.stderr.write(`  ${p.where}: ${p.message}\n`);
    }
    if (err.hint) process.stderr.write(`  hint: ${err.hint}\n`);
    log?.toFile('error', err.message);
  } else {
    const e = err as Error;
    message = `internal error: ${e?.message ?? String(err)}`;
    process.stderr.write(`zshield: ${message}\n`);
    log?.toFile('error', `internal error: ${e?.stack ?? String(err)}`);
  }
  // A script that asked for JSON gets the failure as JSON on stdout (and the same exit code).
  if (json) {
    const problems = err instanceof ConfigError && err.problems.length > 1 ? { problems: err.problems } : {};
    const result = err instanceof ZshieldError && err.result !== undefined ? { result: err.result } : {};
    process.stdout.write(
      `${JSON.stringify({ code, message, hint: hint ?? null, ...problems, ...result }, null, 2)}\n`,
    );
  }
  return code;
}

/** The name this binary was started under (a symlink named zshield_backup selects the backup). */
export function invokedName(): string {
  const first = path.basename(process.argv0 || '');
  if (first && first !== 'node' && !first.startsWith('node')) return first;
  return path.basename(process.argv[1] ?? 'zshield').replace(/\.(c?js|ts)$/, '');
}
