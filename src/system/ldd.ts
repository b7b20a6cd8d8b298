import { CommandError } from '../errors.js';
import type { Runner } from './runner.js';

/**
 * The shared libraries an ELF program loads, as `ldd` (glibc's) resolves them on this machine:
 * what a minimal root (an initramfs) must hold for the program to start there. A static program
 * has none.
 */
export async function sharedLibraries(runner: Runner, program: string): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await runner.run({ file: 'ldd', args: [program], mutates: false, okCodes: [0, 1] }));
  } catch (err) {
    if (err instanceof CommandError) return [];
    throw err;
  }
  return parseLdd(stdout, program);
}

/**
 * `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", the loader alone
 * ("/lib64/ld-linux-x86-64.so.2 (0x...)"), the vDSO (no file), "not a dynamic executable" or
 * "statically linked". A library ldd cannot find ("=> not found") would make the program fail
 * to start: an error naming it.
 */
export function parseLdd(stdout: string, program: string): string[] {
  const out: string[] = [];
  for (const raw of stdout.split('\n')) {
    const line = raw.trim();
    if (!line || /statically linked|not a dynamic executable/.test(line)) continue;
    const missing = /^(\S+) => not found/.exec(line);
    if (missing) throw new Error(`${program} needs ${missing[1]}, which ldd does not find on this machine`);
    const arrow = /=> (\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    const bare = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    const file = arrow?.[1] ?? bare?.[1];
    if (file && !out.includes(file)) out.push(file);
  }
  return out;
}
