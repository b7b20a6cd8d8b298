import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { CommandError, DryRunError, InterruptedError, MissingToolError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { type Command, type CommandResult, argvOf, formatArgv } from './command.js';
import { type Pipeline, type PipelineResult, formatPipeline, spawnPipeline } from './pipeline.js';

export interface Runner {
  readonly dryRun: boolean;
  run(cmd: Command): Promise<CommandResult>;
  /** Commands joined stdout-to-stdin, without a shell (see pipeline.ts). */
  pipeline(p: Pipeline): Promise<PipelineResult>;
  /** Absolute path of a tool on PATH, or null. */
  which(tool: string): Promise<string | null>;
  /**
   * A read-only command run by a library on zshield's behalf (systeminformation's lsblk): not run
   * here, but shown in the transcript and the verbose log like the commands zshield runs itself.
   */
  noteExternal(argv: readonly string[], via: string): void;
  /**
   * Starts a long-running command whose stdout node reads as a stream (udp-receiver: the stream
   * header must be checked before anything is written). Optional: runners for tests of other
   * capabilities need not have it.
   */
  start?(cmd: Command): Promise<Started>;
}

/** A command started by `Runner.start`. */
export interface Started {
  pid: number | undefined;
  stdout: NodeJS.ReadableStream;
  /** Settles when the child has exited: like `run`, rejects with CommandError outside okCodes. */
  done: Promise<CommandResult>;
  kill(signal?: NodeJS.Signals): void;
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ExecaRunnerOptions {
  log: Logger;
  dryRun?: boolean;
  /** PATH used to find tools; default: the process PATH plus the sbin directories. */
  pathEnv?: string;
  /** Aborted on SIGINT/SIGTERM: running children are killed and the run rejects InterruptedError. */
  signal?: AbortSignal;
}

/**
 * The only place zshield starts processes. The child gets a small, fixed environment (C locale for
 * parseable output, no inherited secrets) and never a shell.
 */
export class ExecaRunner implements Runner {
  readonly dryRun: boolean;
  private readonly log: Logger;
  private readonly pathEnv: string;
  private readonly signal: AbortSignal | undefined;
  private readonly found = new Map<string, string>();

  constructor(opts: ExecaRunnerOptions) {
    this.log = opts.log;
    this.dryRun = opts.dryRun ?? false;
    this.signal = opts.signal;
    const inherited = process.env['PATH'] ?? '';
    this.pathEnv = opts.pathEnv ?? [inherited, DEFAULT_PATH].filter(Boolean).join(':');
  }

  noteExternal(argv: readonly string[], via: string): void {
    this.log.debug(`$ ${formatArgv(argv)} (run by ${via})`);
  }

  async which(tool: string): Promise<string | null> {
    if (tool.includes('/')) return (await isExecutable(tool)) ? tool : null;
    const cached = this.found.get(tool);
    if (cached) return cached;
    for (const dir of this.pathEnv.split(':')) {
      if (!dir) continue;
      const candidate = path.join(dir, tool);
      if (await isExecutable(candidate)) {
        this.found.set(tool, candidate);
        return candidate;
      }
    }
    return null;
  }

  /** The tool's path, or MissingToolError naming it. */
  private async resolve(tool: string): Promise<string> {
    const found = await this.which(tool);
    if (!found) throw new MissingToolError(tool, { hint: `install the package that provides ${tool}` });
    return found;
  }

  /** What run() and start() do before a command starts: find it, honour an abort, log it. */
  private async ready(cmd: Command, argv: readonly string[], afterAbort: boolean): Promise<string> {
    const resolved = await this.resolve(cmd.file);
    if (this.signal?.aborted && !afterAbort)
      throw new InterruptedError(`interrupted before running ${cmd.file}`);
    this.log.log(cmd.mutates ? 'info' : 'debug', `$ ${formatArgv(argv)}`);
    return resolved;
  }

  async run(cmd: Command): Promise<CommandResult> {
    const argv = argvOf(cmd);
    // A dry run never changes anything: a mutating command reaching the runner is a flow that forgot
    // to stop (runPlan stops before its steps), refused loudly rather than skipped.
    if (cmd.mutates && this.dryRun) throw new DryRunError(formatArgv(argv));
    const resolved = await this.ready(cmd, argv, !!cmd.runsAfterAbort);

    const child = execa(resolved, [...cmd.args], {
      reject: false,
      shell: false,
      extendEnv: false,
      env: this.childEnv(cmd),
      cwd: cmd.cwd,
      input: cmd.input,
      stdin: cmd.input === undefined ? 'ignore' : undefined,
      timeout: cmd.timeoutMs,
      cancelSignal: cmd.runsAfterAbort ? undefined : this.signal,
      stripFinalNewline: false,
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
      buffer: true,
    });
    if (cmd.onLine) attachLineReaders(child, cmd.onLine);
    const res = await child;
    const stdout = String(res.stdout ?? '');
    const stderr = String(res.stderr ?? '');
    if (res.isCanceled) throw new InterruptedError(`interrupted while running ${cmd.file}`);
    const ok = cmd.okCodes ?? [0];
    if (res.exitCode === undefined || !ok.includes(res.exitCode) || res.signal) {
      throw new CommandError({
        argv,
        code: res.exitCode,
        signal: res.timedOut ? `timeout after ${cmd.timeoutMs} ms` : res.signal,
        stdout,
        stderr,
        notStarted: notStarted(res),
      });
    }
    return { argv, exitCode: res.exitCode, stdout, stderr, skipped: false };
  }

  async pipeline(p: Pipeline): Promise<PipelineResult> {
    const text = formatPipeline(p);
    if (p.mutates && this.dryRun) throw new DryRunError(text);
    const resolved: string[] = [];
    for (const s of p.stages) resolved.push(await this.resolve(s.file));
    this.log.log(p.mutates ? 'info' : 'debug', `$ ${text}`);
    return spawnPipeline(p, { resolved, env: (c) => this.childEnv(c), signals: [this.signal, p.signal] });
  }

  async start(cmd: Command): Promise<Started> {
    const argv = argvOf(cmd);
    if (cmd.mutates && this.dryRun) throw new DryRunError(formatArgv(argv));
    const resolved = await this.ready(cmd, argv, false);
    const child = execa(resolved, [...cmd.args], {
      reject: false,
      shell: false,
      extendEnv: false,
      env: this.childEnv(cmd),
      cwd: cmd.cwd,
      stdin: 'ignore',
      stdout: 'pipe',
      timeout: cmd.timeoutMs,
      cancelSignal: this.signal,
      // stdout is the caller's stream; only stderr is kept (its tail names the failure).
      buffer: { stdout: false, stderr: true },
      encoding: 'buffer',
      stripFinalNewline: false,
    });
    if (cmd.onLine) attachLineReaders({ stdout: null, stderr: child.stderr }, cmd.onLine);
    const done = child.then((res) => {
      const stderr = Buffer.from(res.stderr ?? '').toString();
      if (res.isCanceled) throw new InterruptedError(`interrupted while running ${cmd.file}`);
      const ok = cmd.okCodes ?? [0];
      if (res.exitCode === undefined || !ok.includes(res.exitCode) || res.signal) {
        throw new CommandError({
          argv,
          code: res.exitCode,
          signal: res.timedOut ? `timeout after ${cmd.timeoutMs} ms` : res.signal,
          stdout: '',
          stderr,
          notStarted: notStarted(res),
        });
      }
      return { argv, exitCode: res.exitCode, stdout: '', stderr, skipped: false };
    });
    return {
      pid: child.pid,
      stdout: child.stdout,
      done,
      kill: (sig: NodeJS.Signals = 'SIGTERM') => {
        child.kill(sig);
      },
    };
  }

  private childEnv(cmd: Command): Record<string, string> {
    return {
      PATH: this.pathEnv,
      LC_ALL: 'C',
      LANG: 'C',
      // LVM complains about every inherited descriptor (node keeps some open); it is noise.
      LVM_SUPPRESS_FD_WARNINGS: '1',
      ...cmd.env,
    };
  }
}

/**
 * Why a command never ran: execa's result has no exit code and no signal then, and its cause is
 * the spawn's error (ENOENT for a missing cwd, or /dev/null missing in a bare root); "exit ?"
 * would hide it.
 */
function notStarted(res: { exitCode?: number; signal?: string; cause?: unknown }): string | undefined {
  if (res.exitCode !== undefined || res.signal) return undefined;
  return res.cause instanceof Error ? res.cause.message : 'no exit code and no signal';
}

function attachLineReaders(
  child: { stdout: NodeJS.ReadableStream | null; stderr: NodeJS.ReadableStream | null },
  onLine: (line: string, stream: 'stdout' | 'stderr') => void,
): void {
  for (const stream of ['stdout', 'stderr'] as const) {
    const s = child[stream];
    if (!s) continue;
    let pending = '';
    s.on('data', (chunk: Buffer | string) => {
      pending += chunk.toString();
      // rsync --info=progress2 rewrites its line with \r: treat both as line ends.
      const parts = pending.split(/[\r\n]/);
      pending = parts.pop() ?? '';
      for (const p of parts) if (p.trim()) onLine(p, stream);
    });
    // The last line may have no newline (a final progress line, an error without one).
    s.on('end', () => {
      if (pending.trim()) onLine(pending, stream);
      pending = '';
    });
  }
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}
