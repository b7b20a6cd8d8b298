import path from 'node:path';
import yargs, { type Argv } from 'yargs';
import { loadConfig } from '../config/load.js';
import { renderConfig } from '../config/render.js';
import type { Config } from '../config/schema.js';
import { type Context, systemClock } from '../context.js';
import { ConfigError, ExitCode, NotFoundError, UsageError, ZshieldError, exitCodeOf } from '../errors.js';
import { type Logger, createLogger } from '../log/logger.js';
import { imageCommand } from '../image/cli.js';
import { historyCommands, recoverFingerprintCommand } from '../history/cli.js';
import { configEditCommand, keygenCommand, remoteCommand } from '../remote/cli.js';
import { REASONS, type Reason } from '../snapshot/rotation.js';
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
    .usage(
      '$0 <command> [options]\n\nOn-device recovery agent: restore points of the root file system, factory reset, restore.',
    )
    .version(VERSION)
    .option('config', {
      alias: 'c',
      type: 'string',
      describe: 'config file (default /etc/zshield/zshield.conf)',
    })
    .option('dry-run', {
      alias: 'n',
      type: 'boolean',
      default: false,
      describe: 'show what would be done; change nothing',
    })
    .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'show every command run' })
    .option('quiet', {
      alias: 'q',
      type: 'boolean',
      default: false,
      describe: 'only warnings and errors on the terminal',
    })
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
          .option('wait', {
            type: 'number',
            default: 0,
            describe: 'seconds to wait for another zshield holding the LVM lock',
          }),
      async (a) => {
        const ctx = await setup(a as unknown as GlobalArgs);
        const wait = Number(a['wait']);
        if (!Number.isFinite(wait) || wait < 0)
          throw new UsageError('--wait must be a number of seconds >= 0');
        const { runBackup } = await import('../snapshot/backup.js');
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
        const { formatStatus, gatherStatus } = await import('../status/status.js');
        const report = await gatherStatus(ctx);
        ctx.out.print(a['json'] ? JSON.stringify(report, null, 2) : formatStatus(report));
        // The report is printed either way; a missing VG or root LV also makes the exit code say so.
        if (!report.vg) throw new NotFoundError(`volume group "${ctx.config.lvm.vg}" not found`);
        if (!report.root)
          throw new NotFoundError(`logical volume "${ctx.config.lvm.vg}/${ctx.config.lvm.rootLv}" not found`);
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
        const { runDaemon } = await import('../daemon/daemon.js');
        await runDaemon(ctx, {
          reloadConfig: async (): Promise<Config> => (await loadConfig(ga.config)).config,
        });
      },
    )
    .command(
      'boot',
      'run at every boot: act on zshield_recovery= from the kernel command line (factory reset, restore latest)',
      (y: Argv) =>
        y
          .option('cmdline-file', {
            type: 'string',
            default: '/proc/cmdline',
            describe: 'where to read the kernel command line',
          })
          .option('daemon', {
            type: 'boolean',
            default: false,
            describe: 'then go on as the backup daemon (only when running from the system disk)',
          }),
      async (a) => {
        // Started from rc.local on the console: when rcS ends, the console's session hangs up.
        // Ignore SIGHUP so the boot hook (and the daemon it becomes) survives it; the daemon adds
        // its own reload handler.
        process.on('SIGHUP', () => {});
        const ctx = await setup(a as unknown as GlobalArgs);
        const { recoveryRequest } = await import('../recovery/cmdline.js');
        const { readCmdline, resumeInterrupted, runFactoryReset, runRestore } = await import(
          '../recovery/run.js'
        );
        const request = recoveryRequest(readCmdline(String(a['cmdline-file'])));
        const confirm = { confirm: 'countdown' as const };
        let acted: string;
        if (request === 'default') {
          await runFactoryReset(ctx, confirm);
          acted = 'factory';
        } else if (request === 'latest') {
          await runRestore(ctx, confirm);
          acted = 'restore';
        } else {
          acted = await resumeInterrupted(ctx, confirm);
          if (acted === 'none') ctx.log.info('zshield boot: no recovery requested');
        }
        if (acted !== 'none' && !ctx.dryRun && ctx.config.recovery.reboot) {
          ctx.out.print('zshield: rebooting into the system disk');
          // busybox and systemd reboot return once init has the request; the log is closed after.
          await ctx.runner.run({ file: 'reboot', args: [], mutates: true });
          return;
        }
        if (a['daemon'] && (await lvRootIsRunning(ctx))) {
          const { runDaemon } = await import('../daemon/daemon.js');
          await runDaemon(ctx, {
            reloadConfig: async () => (await loadConfig((a as unknown as GlobalArgs).config)).config,
          });
        }
      },
    )
    .command('recover', 'recover the system disk now (what the GRUB recovery entries do)', (y: Argv) =>
      y
        .command(
          'factory',
          'factory reset: rebuild the system disk from the golden root (erases it)',
          (yy: Argv) =>
            yy
              .option('yes', { type: 'boolean', default: false, describe: 'confirm: erase the target disk' })
              .option('target', {
                type: 'string',
                describe: 'serial or WWN of the system disk (overrides the config)',
              })
              .option('json', { type: 'boolean', default: false, describe: 'print the plan as JSON' }),
          async (a) => {
            const ctx = await setup(a as unknown as GlobalArgs);
            const { runFactoryReset } = await import('../recovery/run.js');
            await runFactoryReset(ctx, {
              confirm: a['yes'] ? 'yes' : 'ask',
              json: Boolean(a['json']),
              ...(a['target'] ? { target: String(a['target']) } : {}),
            });
          },
        )
        .command(
          'latest',
          'restore the latest backup: merge snap0 into lv-root, put /boot back, take a new snap0',
          (yy: Argv) =>
            yy
              .option('yes', { type: 'boolean', default: false, describe: 'confirm: roll lv-root back' })
              .option('json', { type: 'boolean', default: false, describe: 'print the plan as JSON' }),
          async (a) => {
            const ctx = await setup(a as unknown as GlobalArgs);
            const { runRestore } = await import('../recovery/run.js');
            await runRestore(ctx, { confirm: a['yes'] ? 'yes' : 'ask', json: Boolean(a['json']) });
          },
        )
        .command(recoverFingerprintCommand(setup))
        .demandCommand(1, 'say which: recover factory | recover latest | recover fingerprint ID'),
    )
    .command('golden', 'the golden medium', (y: Argv) =>
      y
        .command(
          'prepare',
          'write a golden medium from this (prototype) system: GRUB, read-only root, recovery entries, boot hook',
          (yy: Argv) =>
            yy
              .option('target', {
                type: 'string',
                describe: 'serial or WWN of the medium (else disks.golden.serial)',
              })
              .option('yes', { type: 'boolean', default: false, describe: 'confirm: erase the medium' })
              .option('json', { type: 'boolean', default: false, describe: 'print the plan as JSON' }),
          async (a) => {
            const ctx = await setup(a as unknown as GlobalArgs);
            const { runGoldenPrepare } = await import('../recovery/run.js');
            await runGoldenPrepare(ctx, {
              confirm: a['yes'] ? 'yes' : 'ask',
              json: Boolean(a['json']),
              ...(a['target'] ? { target: String(a['target']) } : {}),
            });
          },
        )
        .demandCommand(1, 'say which: golden prepare'),
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
            for (const w of loaded.warnings)
              process.stderr.write(`zshield: warning: ${w.where}: ${w.message}\n`);
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
        .command(configEditCommand(setup))
        .demandCommand(1, 'say which: config check | config show | config edit'),
    )
    .command(imageCommand(setup))
    .command(remoteCommand(setup))
    .command(keygenCommand(setup))
    .command(historyCommands(setup))
    .demandCommand(1, 'a command is needed; see zshield --help')
    .strict()
    .recommendCommands()
    .help()
    .alias('help', 'h')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      // yargs spreads some messages over lines ("Invalid values:\n  Argument: ..."): errors are one line.
      const oneLine = (msg ?? 'invalid command line').replace(/\s*\n\s*/g, ' ').trim();
      throw new UsageError(oneLine, { hint: 'see zshield --help' });
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

async function lvRootIsRunning(ctx: Context): Promise<boolean> {
  const { probeVg } = await import('../system/lvm.js');
  const { isRunningRoot } = await import('../system/mounts.js');
  try {
    const state = await probeVg(ctx.runner, ctx.config.lvm.vg);
    return isRunningRoot(state.lvs.find((l) => l.name === ctx.config.lvm.rootLv));
  } catch {
    return false;
  }
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
    log?.toFile('error', err.message);
  } else {
    const e = err as Error;
    process.stderr.write(`zshield: internal error: ${e?.message ?? String(err)}\n`);
    log?.toFile('error', `internal error: ${e?.stack ?? String(err)}`);
  }
  return code;
}

/** The name this binary was started under (a symlink named zshield_backup selects the backup). */
export function invokedName(): string {
  const first = path.basename(process.argv0 || '');
  if (first && first !== 'node' && !first.startsWith('node')) return first;
  return path.basename(process.argv[1] ?? 'zshield').replace(/\.(c?js|ts)$/, '');
}
