import path from 'node:path';
import yargs, { type Argv } from 'yargs';
import { loadConfig } from '../config/load.js';
import { renderConfig } from '../config/render.js';
import type { Config } from '../config/schema.js';
import { type Context, systemClock } from '../context.js';
import { runDaemon } from '../daemon/daemon.js';
import { ConfigError, ExitCode, NotFoundError, UsageError, ZshieldError, exitCodeOf } from '../errors.js';
import { type Logger, createLogger } from '../log/logger.js';
import { runBackup } from '../snapshot/backup.js';
import { REASONS, type Reason } from '../snapshot/rotation.js';
import { formatStatus, gatherStatus } from '../status/status.js';
import { ExecaRunner } from '../system/runner.js';
import { VERSION } from '../version.js';

interface GlobalArgs {
  config?: string;
  'dry-run': boolean;
  verbose: boolean;
  quiet: boolean;
}

/**
 * The entry. The only place that decides exit codes and calls process.exit. The same binary run as
 * `zshield_backup` (a symlink) takes a pre-upgrade backup.
 */
export async function main(argv: string[], invokedAs: string): Promise<number> {
  const args = invokedAs === 'zshield_backup' ? ['backup', '--reason', 'pre-upgrade', ...argv] : argv;
  const abort = new AbortController();
  let log: Logger | undefined;
  let exit: number = ExitCode.ok;
  const onSignal = (sig: NodeJS.Signals) => {
    log?.warn(`${sig} received: stopping`);
    abort.abort();
  };

  // Builds the context a command needs: config, logger, runner. Commands call it lazily so that
  // `--help` and usage errors need no config.
  const setup = async (a: GlobalArgs, consoleQuiet = false): Promise<Context> => {
    const loaded = await loadConfig(a.config);
    const config = loaded.config;
    log = createLogger({
      level: config.log.level,
      consoleLevel: a.quiet || consoleQuiet ? 'warn' : a.verbose ? 'debug' : 'info',
      file: config.log.file,
    });
    for (const w of loaded.warnings) log.warn(`config: ${w.where}: ${w.message}`);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    return {
      config,
      configFile: loaded.file,
      runner: new ExecaRunner({ log, dryRun: a['dry-run'], signal: abort.signal }),
      log,
      clock: systemClock,
      out: { print: (t) => process.stdout.write(`${t}\n`) },
      dryRun: a['dry-run'],
      signal: abort.signal,
    };
  };

  const parser = yargs(args)
    .scriptName('zshield')
    .usage('$0 <command> [options]\n\nOn-device recovery agent: restore points of the root file system, factory reset, restore.')
    .version(VERSION)
    .option('config', { alias: 'c', type: 'string', describe: 'config file (default /etc/zshield/zshield.conf)' })
    .option('dry-run', { alias: 'n', type: 'boolean', default: false, describe: 'show what would be done; change nothing' })
    .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'show every command run' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'only warnings and errors on the terminal' })
    .command(
      'backup',
      'take a backup now: a new restore point (snapshot of lv-root) replacing the old one',
      (y: Argv) =>
        y
          .option('reason', {
            choices: REASONS as unknown as string[],
            default: 'manual',
            describe: 'why: recorded on the snapshot (zshield_backup uses pre-upgrade)',
          })
          .option('wait', { type: 'number', default: 0, describe: 'seconds to wait for another zshield holding the LVM lock' }),
      async (a) => {
        const ctx = await setup(a as unknown as GlobalArgs);
        const wait = Number(a['wait']);
        if (!Number.isFinite(wait) || wait < 0) throw new UsageError('--wait must be a number of seconds >= 0');
        const outcome = await runBackup(ctx, { reason: a['reason'] as Reason, waitMs: wait * 1000 });
        if (outcome) {
          ctx.out.print(
            `backup taken: ${outcome.snapshot} (${outcome.reason}) at ${outcome.time.toISOString()}${outcome.repaired ? ' after repairing an interrupted rotation' : ''}`,
          );
        }
      },
    )
    .command(
      'status',
      'show the restore point, its health, the last backup and the daemon',
      (y: Argv) => y.option('json', { type: 'boolean', default: false, describe: 'machine-readable output' }),
      async (a) => {
        const ctx = await setup(a as unknown as GlobalArgs, true);
        const report = await gatherStatus(ctx);
        ctx.out.print(a['json'] ? JSON.stringify(report, null, 2) : formatStatus(report));
        // The report is printed either way; a missing VG or root LV also makes the exit code say so.
        if (!report.vg) throw new NotFoundError(`volume group "${ctx.config.lvm.vg}" not found`);
        if (!report.root) throw new NotFoundError(`logical volume "${ctx.config.lvm.vg}/${ctx.config.lvm.rootLv}" not found`);
      },
    )
    .command(
      'daemon',
      'run the backup daemon: daily backup, catch-up, snapshot health checks',
      (y: Argv) => y,
      async (a) => {
        const ga = a as unknown as GlobalArgs;
        const ctx = await setup(ga);
        // The daemon finishes a running backup on SIGTERM instead of killing it: take the
        // signal handling away from the abort controller.
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await runDaemon(ctx, {
          reloadConfig: async (): Promise<Config> => (await loadConfig(ga.config)).config,
        });
      },
    )
    .command('config', 'check or show the configuration', (y: Argv) =>
      y
        .command(
          'check',
          'validate the config file; report every problem',
          (yy: Argv) => yy,
          async (a) => {
            const ga = a as unknown as GlobalArgs;
            const loaded = await loadConfig(ga.config);
            for (const w of loaded.warnings) process.stderr.write(`zshield: warning: ${w.where}: ${w.message}\n`);
            process.stdout.write(`config OK: ${loaded.file ?? 'no file, built-in defaults'}\n`);
          },
        )
        .command(
          'show',
          'print the effective configuration (defaults filled in)',
          (yy: Argv) => yy,
          async (a) => {
            const loaded = await loadConfig((a as unknown as GlobalArgs).config);
            process.stdout.write(`${JSON.stringify(renderConfig(loaded.config), null, 2)}\n`);
          },
        )
        .demandCommand(1, 'say which: config check | config show'),
    )
    .demandCommand(1, 'a command is needed; see zshield --help')
    .strict()
    .recommendCommands()
    .help()
    .alias('help', 'h')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      throw new UsageError(msg ?? 'invalid command line', { hint: 'see zshield --help' });
    });

  try {
    await parser.parseAsync();
  } catch (err) {
    exit = report(err, log);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await log?.close();
  }
  return exit;
}

function report(err: unknown, log: Logger | undefined): number {
  const code = exitCodeOf(err);
  if (err instanceof ZshieldError) {
    log?.debug(`${err.name}: ${err.message}`);
    process.stderr.write(`zshield: ${err.message}\n`);
    if (err instanceof ConfigError && err.problems.length > 1) {
      for (const p of err.problems) process.stderr.write(`  ${p.where}: ${p.message}\n`);
    }
    if (err.hint) process.stderr.write(`  hint: ${err.hint}\n`);
    log?.error(err.message);
  } else {
    const e = err as Error;
    process.stderr.write(`zshield: internal error: ${e?.message ?? String(err)}\n`);
    log?.error(`internal error: ${e?.stack ?? String(err)}`);
  }
  return code;
}

/** The name this binary was started under (a symlink named zshield_backup selects the backup). */
export function invokedName(): string {
  const first = path.basename(process.argv0 || '');
  if (first && first !== 'node' && !first.startsWith('node')) return first;
  return path.basename(process.argv[1] ?? 'zshield').replace(/\.(c?js|ts)$/, '');
}
