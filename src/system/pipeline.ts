import { type ChildProcess, spawn } from 'node:child_process';
import { CommandError, InterruptedError } from '../errors.js';
import { type Command, type CommandResult, argvOf, formatArgv } from './command.js';

/**
 * Commands joined stdout-to-stdin, like `e2image -ra - dev | zstd -o img` but without a shell:
 * every stage is an argument array. The stages are connected by a real OS pipe (each child's stdout
 * is handed to the next child as its stdin), so the data, gigabytes of it for an image, never passes
 * through node. One stage is allowed: a single command that a job's own signal can stop.
 *
 * Only the Runner runs these (`runner.pipeline`), so dry-run stays in one place.
 */
export interface Pipeline {
  /** The commands, first to last. Their `onLine` sees stderr (and the last stage's stdout). */
  stages: readonly Command[];
  /** Does it change the system? Dry-run skips the whole pipeline (the stages' own flag is not read). */
  mutates: boolean;
  /** Stops this pipeline (a job's own signal, e.g. the daemon's image job), besides the runner's. */
  signal?: AbortSignal;
}

export interface PipelineResult {
  /** One per stage. For stages other than the last, stdout is empty (it went down the pipe). */
  stages: CommandResult[];
  skipped: boolean;
}

/** `a -x | b -y`, each stage quoted like formatArgv. */
export function formatPipeline(p: Pick<Pipeline, 'stages'>): string {
  return p.stages.map((s) => formatArgv(argvOf(s))).join(' | ');
}

export interface SpawnOptions {
  /** Absolute path of each stage's program (already looked up: a missing tool is the caller's error). */
  resolved: readonly string[];
  /** The environment of a stage's child. */
  env: (cmd: Command) => Record<string, string>;
  /** Signals that stop the pipeline (the runner's and the pipeline's own). */
  signals: readonly (AbortSignal | undefined)[];
  /** After SIGTERM, how long before SIGKILL. */
  killGraceMs?: number;
}

/** Output kept per stream (the tail, for error messages; progress goes through onLine as it comes). */
const KEEP_BYTES = 1024 * 1024;

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  spawnError: Error | null;
  timedOut: boolean;
}

/**
 * Start the stages, wait for all of them, and judge the result. The error reported is the LAST
 * stage that failed: when zstd dies (disk full), e2image before it dies of the broken pipe as a
 * consequence; when e2image fails, zstd after it sees a normal end of input and exits 0.
 */
export async function spawnPipeline(p: Pipeline, opts: SpawnOptions): Promise<PipelineResult> {
  if (p.stages.length === 0) throw new Error('a pipeline needs at least one command');
  const signals = opts.signals.filter((s): s is AbortSignal => s !== undefined);
  const name = p.stages.map((s) => s.file).join(' | ');
  if (signals.some((s) => s.aborted)) throw new InterruptedError(`interrupted before running ${name}`);

  const children: ChildProcess[] = [];
  const outcomes: Promise<Outcome>[] = [];
  let aborted = false;
  const killAll = (sig: NodeJS.Signals) => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(sig);
  };
  const onAbort = () => {
    aborted = true;
    killAll('SIGTERM');
    setTimeout(() => killAll('SIGKILL'), opts.killGraceMs ?? 5000).unref();
  };

  try {
    const last = p.stages.length - 1;
    for (const [i, s] of p.stages.entries()) {
      const prev = children[i - 1];
      const child = spawn(opts.resolved[i] ?? s.file, [...s.args], {
        // The previous child's stdout is passed as this child's stdin: the kernel pipe joins them.
        stdio: [prev ? prev.stdout! : s.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        env: opts.env(s),
        cwd: s.cwd,
        shell: false,
      });
      // spawn() has duplicated the pipe's read end into the child. Close ours: a reader left open
      // here would keep the writer blocked forever if the child that reads it died.
      prev?.stdout?.destroy();
      children.push(child);
      outcomes.push(watch(child, s, i === last));
      if (i === 0 && s.input !== undefined && child.stdin) {
        child.stdin.on('error', () => {}); // EPIPE when the child exits without reading it all
        child.stdin.end(s.input);
      }
    }
  } catch (err) {
    killAll('SIGKILL');
    throw err;
  }

  for (const s of signals) s.addEventListener('abort', onAbort, { once: true });
  let results: Outcome[];
  try {
    results = await Promise.all(outcomes);
  } finally {
    for (const s of signals) s.removeEventListener('abort', onAbort);
  }
  if (aborted) throw new InterruptedError(`interrupted while running ${name}`);

  const stageResults: CommandResult[] = [];
  let failure: CommandError | null = null;
  for (const [i, s] of p.stages.entries()) {
    const r = results[i]!;
    const argv = argvOf(s);
    const ok = (s.okCodes ?? [0]).includes(r.code ?? -1) && r.signal === null && r.spawnError === null;
    if (!ok) {
      failure = new CommandError({
        argv,
        code: r.spawnError ? 127 : (r.code ?? undefined),
        signal: r.timedOut ? `timeout after ${s.timeoutMs} ms` : (r.signal ?? undefined),
        stdout: r.stdout,
        stderr: r.spawnError ? `${r.stderr}${r.spawnError.message}\n` : r.stderr,
      });
    }
    stageResults.push({ argv, exitCode: r.code ?? -1, stdout: r.stdout, stderr: r.stderr, skipped: false });
  }
  if (failure) throw failure;
  return { stages: stageResults, skipped: false };
}

function watch(child: ChildProcess, cmd: Command, isLast: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const out = { stdout: '', stderr: '' };
    let spawnError: Error | null = null;
    let timedOut = false;
    const timer =
      cmd.timeoutMs === undefined
        ? null
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, cmd.timeoutMs);
    for (const stream of ['stdout', 'stderr'] as const) {
      const s = child[stream];
      // A middle stage's stdout is the next stage's stdin (ours was closed): nothing to read.
      if (!s || (stream === 'stdout' && !isLast)) continue;
      let pending = '';
      s.setEncoding('utf8');
      s.on('data', (chunk: string) => {
        out[stream] = (out[stream] + chunk).slice(-KEEP_BYTES);
        if (!cmd.onLine) return;
        pending += chunk;
        // Progress meters (e2image -p, dd status=progress) rewrite their line with \r.
        const parts = pending.split(/[\r\n]/);
        pending = parts.pop() ?? '';
        for (const part of parts) if (part.trim()) cmd.onLine(part, stream);
      });
      s.on('end', () => {
        if (cmd.onLine && pending.trim()) cmd.onLine(pending, stream);
        pending = '';
      });
    }
    let done = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      resolve({ code, signal, ...out, spawnError, timedOut });
    };
    child.on('error', (err) => {
      spawnError = err;
      // A child that never started may not emit 'close'.
      if (child.pid === undefined) setImmediate(() => finish(null, null));
    });
    child.on('close', finish);
  });
}
