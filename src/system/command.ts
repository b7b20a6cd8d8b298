/** One external command. Always an argument array; there is no shell anywhere in zshield. */
export interface Command {
  file: string;
  args: readonly string[];
  /** Does this command change the system? Dry-run skips mutating commands and only those. */
  mutates: boolean;
  cwd?: string;
  env?: Record<string, string>;
  /** Written to the child's stdin (used for sfdisk scripts and secrets: never argv). */
  input?: string | Buffer;
  timeoutMs?: number;
  /** Exit codes that are not failures (default: only 0). */
  okCodes?: readonly number[];
  /** Called for each stdout/stderr line as it arrives (progress). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /**
   * Runs even after SIGINT/SIGTERM. Only for removing what the interrupted job itself made (the
   * image job's temporary snapshot): anything else stops at the signal.
   */
  runsAfterAbort?: boolean;
}

export interface CommandResult {
  argv: readonly string[];
  exitCode: number;
  stdout: string;
  stderr: string;
  /** True when dry-run skipped the command. */
  skipped: boolean;
}

export function argvOf(cmd: Pick<Command, 'file' | 'args'>): string[] {
  return [cmd.file, ...cmd.args];
}

/** How an argv is shown to people: quoted only where needed, so it can be pasted into a shell. */
export function formatArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ');
}

/**
 * A command line built where its tool's options are written once (mount-commands.ts,
 * disk-commands.ts, the LVM ones in lvm.ts): the tool and its arguments. The flow that runs it
 * decides how (`commandOf`, or root-copy.ts `mutating`).
 */
export type ToolArgv = [file: string, args: string[]];

/** A Command from a built command line and the caller's own fields (mutates, timeout, okCodes...). */
export function commandOf(
  [file, args]: ToolArgv,
  fields: { mutates: boolean } & Omit<Partial<Command>, 'file' | 'args'>,
): Command {
  return { file, args, ...fields };
}
