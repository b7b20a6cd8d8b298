import { CommandError, DryRunError, InterruptedError, MissingToolError } from '../errors.js';
import { type Pipeline, type PipelineResult, formatPipeline } from './pipeline.js';
import type { Runner } from './runner.js';
import { type Command, type CommandResult, argvOf, formatArgv } from './command.js';

export interface CannedReply {
  exitCode?: number;
  stdout?: string;
  stderr?: string;
}

type Matcher = string | RegExp | ((argv: readonly string[]) => boolean);

/**
 * A runner for fast unit tests: records every argv and answers from canned replies. It honours
 * dry-run exactly like the real one: a mutating command is refused (DryRunError), recorded with `!`
 * so a transcript shows what a dry run tried to change.
 */
export class RecordingRunner implements Runner {
  readonly calls: {
    argv: string[];
    mutates: boolean;
    skipped: boolean;
    input?: string;
    /** For a pipeline: each stage's argv (argv is then the stages joined by '|'). */
    stages?: string[][];
    /** Run by a library on zshield's behalf (noteExternal), not by this runner. */
    via?: string;
    /** The environment the command was given on top of the runner's own (a password, say). */
    env?: Record<string, string>;
  }[] = [];
  private readonly replies: {
    match: Matcher;
    reply: CannedReply | ((argv: readonly string[]) => CannedReply);
  }[] = [];
  private readonly missing = new Set<string>();

  constructor(readonly dryRun = false) {}

  /** Reply to commands whose formatted argv starts with (string) or matches (RegExp) the matcher. Later rules win. */
  on(match: Matcher, reply: CannedReply | ((argv: readonly string[]) => CannedReply)): this {
    this.replies.unshift({ match, reply });
    return this;
  }

  withoutTool(tool: string): this {
    this.missing.add(tool);
    return this;
  }

  noteExternal(argv: readonly string[], via: string): void {
    this.calls.push({ argv: [...argv], mutates: false, skipped: false, via });
  }

  async which(tool: string): Promise<string | null> {
    return this.missing.has(tool) ? null : `/usr/sbin/${tool}`;
  }

  async run(cmd: Command): Promise<CommandResult> {
    const argv = argvOf(cmd);
    const input = cmd.input === undefined ? undefined : String(cmd.input);
    if (cmd.mutates && this.dryRun) {
      this.calls.push({ argv, mutates: true, skipped: true, ...(input === undefined ? {} : { input }) });
      throw new DryRunError(formatArgv(argv));
    }
    if (this.missing.has(cmd.file)) throw new MissingToolError(cmd.file);
    this.calls.push({
      argv,
      mutates: cmd.mutates,
      skipped: false,
      ...(input === undefined ? {} : { input }),
      ...(cmd.env === undefined ? {} : { env: cmd.env }),
    });
    const res = this.answer(argv);
    // As the real runner does: each line of the answer, as it would have come.
    if (cmd.onLine) {
      for (const stream of ['stdout', 'stderr'] as const)
        for (const line of res[stream].split('\n')) if (line.trim()) cmd.onLine(line, stream);
    }
    if (!(cmd.okCodes ?? [0]).includes(res.exitCode)) throw failed(res);
    return res;
  }

  /** Recorded as one call; each stage answered by the rules. The last failing stage is the error. */
  async pipeline(p: Pipeline): Promise<PipelineResult> {
    const stages = p.stages.map((s) => argvOf(s));
    const argv = stages.flatMap((a, i) => (i === 0 ? a : ['|', ...a]));
    if (p.mutates && this.dryRun) {
      this.calls.push({ argv, mutates: true, skipped: true, stages });
      throw new DryRunError(formatPipeline(p));
    }
    for (const s of p.stages) if (this.missing.has(s.file)) throw new MissingToolError(s.file);
    if (p.signal?.aborted) throw new InterruptedError(`interrupted before running ${formatPipeline(p)}`);
    this.calls.push({ argv, mutates: p.mutates, skipped: false, stages });
    const results = stages.map((a) => this.answer(a));
    const bad = results.findLast((r, i) => !(p.stages[i]!.okCodes ?? [0]).includes(r.exitCode));
    if (bad) throw failed(bad);
    return { stages: results, skipped: false };
  }

  private answer(argv: readonly string[]): CommandResult {
    const text = formatArgv(argv);
    const rule = this.replies.find(({ match }) =>
      typeof match === 'string'
        ? text.startsWith(match)
        : match instanceof RegExp
          ? match.test(text)
          : match(argv),
    );
    const reply = rule ? (typeof rule.reply === 'function' ? rule.reply(argv) : rule.reply) : {};
    return {
      argv,
      exitCode: reply.exitCode ?? 0,
      stdout: reply.stdout ?? '',
      stderr: reply.stderr ?? '',
      skipped: false,
    };
  }

  /** The argv lines run so far, formatted; skipped ones prefixed with `!`. */
  transcript(): string[] {
    return this.calls.map(
      (c) =>
        `${c.skipped ? '!' : '$'} ${c.stages ? c.stages.map((a) => formatArgv(a)).join(' | ') : formatArgv(c.argv)}`,
    );
  }
}

function failed(res: CommandResult): CommandError {
  return new CommandError({
    argv: res.argv,
    code: res.exitCode,
    signal: undefined,
    stdout: res.stdout,
    stderr: res.stderr,
  });
}
