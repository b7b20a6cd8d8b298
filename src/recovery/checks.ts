import { accessSync, constants, existsSync } from 'node:fs';
import path from 'node:path';
import { RefusedError } from '../errors.js';
import type { Check } from '../plan/plan.js';

/** The run directory (a tmpfs at boot) can hold the mount points the plan makes. */
export function mountPointCheck(runDir: string): Check {
  return {
    title: `mount points can be made under ${runDir}`,
    run: () => {
      let dir = runDir;
      while (!existsSync(dir)) dir = path.dirname(dir);
      try {
        accessSync(dir, constants.W_OK);
      } catch {
        throw new RefusedError(`cannot make mount points under ${runDir}: ${dir} is not writable`, {
          hint: 'set paths.runDir to a writable folder (a tmpfs such as /run/zshield); nothing was changed',
        });
      }
    },
  };
}
