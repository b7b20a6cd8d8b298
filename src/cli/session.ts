import { type Context, type ContextOptions, systemClock } from '../context.js';
import type { Logger } from '../log/logger.js';
import type { GlobalArgs } from '../output.js';

/**
 * What a command's context is made of, loaded when a command makes one: the config's schema (zod),
 * the logger (winston) and the runner (execa) are most of the program's start, and `--version`,
 * `--help` or a usage error need none of them.
 */
async function contextParts() {
  const [{ loadConfig }, { createLogger }, { LvmScopedRunner }, { ExecaRunner }, { writesFor }] =
    await Promise.all([
      import('../config/load.js'),
      import('../log/logger.js'),
      import('../system/lvm-scope.js'),
      import('../system/runner.js'),
      import('../system/writes.js'),
    ]);
  return { loadConfig, createLogger, LvmScopedRunner, ExecaRunner, writesFor };
}

/**
 * One run of the binary: the one context builder, the logger it makes (main() reports the final
 * error through it) and the signal handling.
 */
export class Session {
  log: Logger | undefined;
  /** The context the command made (main() writes the metrics file after a job with it). */
  lastContext: Context | undefined;
  private readonly abort = new AbortController();
  private readonly onSignal = (sig: NodeJS.Signals) => {
    this.log?.warn(`${sig} received: stopping`);
    this.abort.abort();
  };

  /**
   * Config, logger, runner. Dry-run is decided here, once: the runner refuses mutating commands and
   * `writes` refuses every file and remote write, so no flow can turn a dry run into a real one.
   */
  readonly context = async (a: GlobalArgs, opts: ContextOptions = {}): Promise<Context> => {
    const { loadConfig, createLogger, LvmScopedRunner, ExecaRunner, writesFor } = await contextParts();
    const loaded = await loadConfig(a.config);
    const config = loaded.config;
    const dryRun = a['dry-run'];
    this.log = createLogger({
      level: config.log.level,
      // --verbose wins over a command's quiet terminal: it asked to see the commands run.
      consoleLevel: a.quiet ? 'warn' : a.verbose ? 'debug' : opts.quietConsole ? 'warn' : 'info',
      file: opts.logFile === false ? null : config.log.file,
    });
    for (const w of loaded.warnings) this.log.warn(`config: ${w.where}: ${w.message}`);
    if (opts.abortOnSignal ?? true) {
      process.on('SIGINT', this.onSignal);
      process.on('SIGTERM', this.onSignal);
    }
    this.lastContext = {
      config,
      configFile: loaded.file,
      // LVM commands see the system disk's PVs only when another disk has a VG of the same name.
      runner: new LvmScopedRunner(new ExecaRunner({ log: this.log, dryRun, signal: this.abort.signal }), {
        vg: config.lvm.vg,
        systemIds: [config.disks.system.serial, config.disks.system.wwn].filter((x): x is string => !!x),
      }),
      log: this.log,
      clock: systemClock,
      out: { print: (t) => process.stdout.write(`${t}\n`) },
      dryRun,
      writes: writesFor(dryRun),
      signal: this.abort.signal,
    };
    return this.lastContext;
  };

  async close(): Promise<void> {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    await this.log?.close();
  }
}
