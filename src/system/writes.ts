import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { DryRunError, NotFoundError } from '../errors.js';

/**
 * The right to change the box outside the Runner: files zshield writes itself (state, config, keys,
 * catalogs, the boot menu), SFTP writes, helpers started in node. Made once per run (cli/session.ts)
 * from `--dry-run` and handed down in the context; every writer takes one and asks it first, so a
 * dry run cannot write by construction, not by each flow remembering to check.
 */
export interface Writes {
  readonly dryRun: boolean;
  /** Throws DryRunError in a dry run; `what` names the change (a path, a command). */
  allow(what: string): void;
}

export function writesFor(dryRun: boolean): Writes {
  return {
    dryRun,
    allow(what: string): void {
      if (dryRun) throw new DryRunError(what);
    },
  };
}

/** For code that runs only outside a dry run (the daemon, tests of writers). */
export const REAL_WRITES: Writes = writesFor(false);

/**
 * For scratch files a dry run's own checks need (secrets staged 0600 under the run directory, a
 * tmpfs, and removed after): they change nothing the box keeps. Never for state, config or keys.
 */
export const SCRATCH_WRITES: Writes = writesFor(false);

/**
 * A file zshield is about to create needs its folder: said as a NotFoundError (exit 5) naming the
 * folder, not the bare ENOENT of open(2). A check, so a dry run makes it too.
 */
export function requireFolderFor(file: string, what: string): void {
  const dir = path.dirname(path.resolve(file));
  let isDir = false;
  try {
    isDir = existsSync(dir) && statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) {
    throw new NotFoundError(`cannot write ${what} ${file}: the folder ${dir} does not exist`, {
      hint: `make the folder first (mkdir -p ${dir}), or give a path in an existing folder`,
    });
  }
}
