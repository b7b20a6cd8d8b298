import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Config } from '../../../src/config/schema.js';
import { defaultConfig } from '../../../src/config/schema.js';
import type { Clock, Context } from '../../../src/context.js';
import { memoryLogger } from '../../../src/log/logger.js';
import type { Runner } from '../../../src/system/runner.js';
import { writesFor } from '../../../src/system/writes.js';

/** A clock the test moves by hand. */
export class FakeClock implements Clock {
  constructor(public t: Date) {}
  now(): Date {
    return new Date(this.t);
  }
  set(d: Date): void {
    this.t = d;
  }
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'zshield-unit-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestContext extends Context {
  log: ReturnType<typeof memoryLogger>;
  printed: string[];
}

/** A Context with state and run directories under `dir`, a memory logger and no log file. */
export function testContext(opts: {
  runner: Runner;
  dir: string;
  clock: Clock;
  dryRun?: boolean;
  edit?: (c: Config) => void;
}): TestContext {
  const config = defaultConfig();
  config.paths.stateDir = path.join(opts.dir, 'state');
  config.paths.runDir = path.join(opts.dir, 'run');
  config.paths.eventLog = path.join(opts.dir, 'boot', 'events.jsonl');
  config.log.file = null;
  opts.edit?.(config);
  const printed: string[] = [];
  return {
    config,
    configFile: null,
    runner: opts.runner,
    log: memoryLogger(),
    clock: opts.clock,
    out: { print: (t) => printed.push(t) },
    printed,
    dryRun: opts.dryRun ?? false,
    writes: writesFor(opts.dryRun ?? false),
    signal: new AbortController().signal,
  };
}

/**
 * Poll until `cond` holds; fail with `what` after `timeoutMs`, a bound on a hang, not on speed: at
 * load 7 on 2 cores two of the daemon's 1 s ticks took longer than the 4 s this once allowed.
 */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
