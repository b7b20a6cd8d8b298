/**
 * Typed errors. Code below the CLI entry throws these; only `cli/main.ts` turns them into an exit
 * code. Each class owns one documented exit code (see README "Exit codes").
 */

export const ExitCode = {
  ok: 0,
  internal: 1,
  usage: 2,
  config: 3,
  missingTool: 4,
  notFound: 5,
  refused: 6,
  busy: 7,
  commandFailed: 8,
  interrupted: 9,
  verifyFailed: 10,
  remoteFailed: 11,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export abstract class ZshieldError extends Error {
  abstract readonly exitCode: ExitCodeValue;
  /** A hint for the operator: what to do next. Printed on its own line after the message. */
  readonly hint: string | undefined;
  /**
   * What did succeed before the failure (each target's result when one target is down): the
   * `--json` failure document carries it as `result`, beside code, message and hint.
   */
  readonly result: unknown;
  constructor(message: string, options?: { hint?: string; cause?: unknown; result?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options?.hint;
    this.result = options?.result;
  }
}

/** Bad command line: unknown subcommand or flag, a value out of range. */
export class UsageError extends ZshieldError {
  readonly exitCode = ExitCode.usage;
}

export interface ConfigProblem {
  /** Where: `file:line:col` for syntax, `file: a.b.c` for a value. */
  where: string;
  message: string;
}

/** The config file is unreadable, malformed or fails validation. Carries every problem found. */
export class ConfigError extends ZshieldError {
  readonly exitCode = ExitCode.config;
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[], options?: { hint?: string }) {
    const first = problems[0];
    const head = first ? `${first.where}: ${first.message}` : 'invalid config';
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem(s))` : '';
    super(`config: ${head}${more}`, options);
    this.problems = problems;
  }
}

/** A program we need is not installed (or not on PATH). */
export class MissingToolError extends ZshieldError {
  readonly exitCode = ExitCode.missingTool;
  readonly tool: string;
  constructor(tool: string, options?: { hint?: string }) {
    super(`required tool not found: ${tool}`, options);
    this.tool = tool;
  }
}

/** A named thing (VG, LV, disk, file) does not exist. */
export class NotFoundError extends ZshieldError {
  readonly exitCode = ExitCode.notFound;
}

/** A precondition that protects data failed: no space, invalid snapshot, merge pending, wrong disk. */
export class RefusedError extends ZshieldError {
  readonly exitCode = ExitCode.refused;
}

/** Another zshield instance holds the lock. */
export class BusyError extends ZshieldError {
  readonly exitCode = ExitCode.busy;
}

/** The job was stopped by SIGINT or SIGTERM. */
export class InterruptedError extends ZshieldError {
  readonly exitCode = ExitCode.interrupted;
}

/** Something we produced failed its verification (checksum, fsck). */
export class VerifyError extends ZshieldError {
  readonly exitCode = ExitCode.verifyFailed;
}

/** The remote host could not be used: unreachable, authentication refused, the SSH session lost. */
export class RemoteError extends ZshieldError {
  readonly exitCode = ExitCode.remoteFailed;
}

/**
 * No peer answered within the wait: `clone send` with no receiver, `clone receive` with no sender.
 * A remote failure (exit 11): the network or the other side, not this box, is what to check.
 */
export class NoPeerError extends RemoteError {}

/** An external command exited non-zero or was killed. Carries everything needed to diagnose it. */
export class CommandError extends ZshieldError {
  readonly exitCode = ExitCode.commandFailed;
  readonly argv: readonly string[];
  readonly code: number | undefined;
  readonly signal: string | undefined;
  readonly stdout: string;
  readonly stderr: string;
  constructor(init: {
    argv: readonly string[];
    code: number | undefined;
    signal: string | undefined;
    stdout: string;
    stderr: string;
    /** Why it never ran (the spawn's error: a cwd or /dev/null missing), when it did not start. */
    notStarted?: string;
  }) {
    const reason = init.notStarted
      ? `did not start: ${init.notStarted}`
      : describeFailure(init.code, init.signal);
    const detail = lastLine(init.stderr) || lastLine(init.stdout);
    super(`${init.argv[0]} failed (${reason})${detail ? `: ${detail}` : ''}`);
    this.argv = init.argv;
    this.code = init.code;
    this.signal = init.signal;
    this.stdout = init.stdout;
    this.stderr = init.stderr;
  }
}

/** A bug: something that should not happen. */
export class InternalError extends ZshieldError {
  readonly exitCode = ExitCode.internal;
}

/**
 * A dry run reached a command or a write that changes something: the runner and every writer
 * refuse it (system/writes.ts), so a forgotten `if (dryRun)` fails loudly instead of changing the
 * box. A bug (exit 1), never a silent skip.
 */
export class DryRunError extends ZshieldError {
  readonly exitCode = ExitCode.internal;
  /** What would have been changed: the command line, or the file. */
  readonly what: string;
  constructor(what: string) {
    super(`dry run: refused to change anything (${what})`);
    this.what = what;
  }
}

function describeFailure(code: number | undefined, signal: string | undefined): string {
  if (signal) return `killed by ${signal}`;
  if (code === 126) return 'exit 126: not executable';
  if (code === 127) return 'exit 127: command not found';
  return `exit ${code ?? '?'}`;
}

function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.at(-1) ?? '';
}

export function exitCodeOf(err: unknown): ExitCodeValue {
  return err instanceof ZshieldError ? err.exitCode : ExitCode.internal;
}

/**
 * Runs checks one after another and keeps each one's typed failure instead of stopping at the first
 * (`config check` reports every problem); anything else (a bug) is thrown.
 */
export function errorCollector(): { errors: ZshieldError[]; collect(check: () => unknown): Promise<void> } {
  const errors: ZshieldError[] = [];
  return {
    errors,
    async collect(check) {
      try {
        await check();
      } catch (err) {
        if (!(err instanceof ZshieldError)) throw err;
        errors.push(err);
      }
    },
  };
}
