import type { Config } from './config/schema.js';
import type { Logger } from './log/logger.js';
import type { Runner } from './system/runner.js';

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
  dryRun: boolean;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}
