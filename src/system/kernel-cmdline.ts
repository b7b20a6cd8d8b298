import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';

/** The kernel command line (/proc/cmdline, or a file standing in for it in tests). */
export function readCmdline(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `cannot read the kernel command line from ${file}: ${(err as NodeJS.ErrnoException).code}`,
    );
  }
}
