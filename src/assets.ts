import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InternalError } from './errors.js';

/**
 * Files shipped inside the single executable (Node SEA assets, listed in build/build.sh): the GRUB
 * script and the boot hooks. Run from source, they are read from the repository.
 */
export const ASSETS = {
  grubScript: 'grub/40_zshield',
  bootUnit: 'rc/zshield-boot.service',
  daemonUnit: 'rc/zshield.service',
  rcLocal: 'rc/rc.local.snippet',
  rescueInit: 'rc/rescue-init',
  rescueUdhcpc: 'rc/rescue-udhcpc',
} as const;

export function asset(name: keyof typeof ASSETS): string {
  const rel = ASSETS[name];
  try {
    const req = createRequire(typeof __filename === 'string' ? __filename : fileURLToPath(import.meta.url));
    const sea = req('node:sea') as { isSea(): boolean; getAsset(key: string, encoding: string): string };
    if (sea.isSea()) return sea.getAsset(rel, 'utf8');
  } catch {
    // node:sea is missing in older runtimes: not a single executable.
  }
  let dir = path.dirname(typeof __filename === 'string' ? __filename : fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, rel);
    if (existsSync(candidate)) return readFileSync(candidate, 'utf8');
    dir = path.dirname(dir);
  }
  throw new InternalError(`asset ${rel} not found`);
}

/** This program's own file when it runs as the single executable; null when run from source. */
export function singleExecutable(): string | null {
  try {
    const req = createRequire(typeof __filename === 'string' ? __filename : fileURLToPath(import.meta.url));
    const sea = req('node:sea') as { isSea(): boolean };
    if (sea.isSea()) return process.execPath;
  } catch {
    // node:sea is missing in older runtimes: not a single executable.
  }
  return null;
}

declare const __filename: string | undefined;
