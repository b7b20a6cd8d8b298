import type { Config } from './config/schema.js';
import type { Logger } from './log/logger.js';
import type { GlobalArgs } from './output.js';
import type { Runner } from './system/runner.js';
import type { Writes } from './system/writes.js';

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** Operator-facing output (stdout): results, plans, tables. Logs go to the logger. */
export interface Output {
  print(text: string): void;
}

/** Everything a command needs, passed in rather than reached through globals. */
export interface Context {
  config: Config;
  configFile: string | null;
  runner: Runner;
  log: Logger;
  clock: Clock;
  out: Output;
  /**
   * With --json: stdout, which carries the command's one JSON document (`out` is then silent; see
   * output.ts jsonOutput). runPlan prints a dry run's plan there.
   */
  doc?: Output;
  dryRun: boolean;
  /** The right to write files and change things outside the runner: refused in a dry run. */
  writes: Writes;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}

export interface ContextOptions {
  /**
   * Keep the terminal to warnings and errors, e.g. when stdout carries a report (`status`,
   * `--json`). `--verbose` still shows every command run.
   */
  quietConsole?: boolean;
  /**
   * SIGINT/SIGTERM abort ctx.signal (default true). The daemon handles them itself: it finishes a
   * running backup before it stops.
   */
  abortOnSignal?: boolean;
  /** Write config.log.file (default true). Commands that only read the config do not. */
  logFile?: boolean;
}

/** What main() gives every capability's command module. */
export interface CommandKit {
  /**
   * The context a command needs (config, logger, runner, dry-run). Called in the handler, so that
   * `--help` and usage errors need no config.
   */
  context(a: GlobalArgs, opts?: ContextOptions): Promise<Context>;
}
