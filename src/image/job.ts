import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BusyError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { pidAlive } from '../system/lock.js';

/**
 * `<runDir>/image.pid`: one image job (create or restore) at a time, and the process other
 * programs signal to stop it. SIGTERM or SIGINT to that pid stops the
 * job, removes its temporary snapshot and partial files, and the command exits 9.
 */
export const pidFileOf = (runDir: string) => path.join(runDir, 'image.pid');

export interface JobHandle {
  release(): void;
}

/** The pid of a running image job, or null (no file, or its process is gone). */
export function runningImageJob(runDir: string): number | null {
  try {
    const pid = Number(readFileSync(pidFileOf(runDir), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && pidAlive(pid) ? pid : null;
  } catch {
    return null;
  }
}

export function claimImageJob(runDir: string, what: string, log: Logger): JobHandle {
  mkdirSync(runDir, { recursive: true, mode: 0o755 });
  const file = pidFileOf(runDir);
  for (let attempt = 0; ; attempt++) {
    try {
      // wx: created here or not at all; two jobs starting together cannot both win.
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      return {
        release: () => {
          try {
            if (readFileSync(file, 'utf8').trim() === String(process.pid)) rmSync(file, { force: true });
          } catch {
            // Already gone.
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = runningImageJob(runDir);
      if (pid !== null && pid !== process.pid) {
        throw new BusyError(`an image job is running (pid ${pid}, ${file})`, {
          hint: `wait for it, or stop it with kill ${pid} (it cleans up after itself)`,
        });
      }
      if (attempt > 0) throw new BusyError(`cannot claim ${file}`);
      log.warn(`image: ${file} was left by a job that is gone; taking it over for ${what}`);
      rmSync(file, { force: true });
    }
  }
}
