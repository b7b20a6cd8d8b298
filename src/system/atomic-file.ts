import {
  closeSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import type { Writes } from './writes.js';

export interface AtomicWriteOptions {
  /** The mode the temporary file is created with (the umask applies, as for any open(2)). */
  mode: number;
  /**
   * Also fchmod to `mode` after open, so the umask cannot change it (private files). Not for files
   * that may live on vfat (the GRUB env block on an EFI partition): it refuses most chmods (EPERM).
   */
  exactMode?: boolean;
  /** Mode of the folders made when the file's folder is missing. */
  dirMode: number;
}

/**
 * The one way zshield replaces a small file it owns (state, records, config, keys, the GRUB env
 * block, the metrics file), power-cut safe: a temporary file beside it (a dot name, so nothing that
 * lists the folder by suffix picks it up), written, fsynced, renamed over the old one (atomic within
 * one file system), then the folder fsynced so the rename itself survives. A power cut leaves the
 * old file or the new one, never a torn or missing one. Refused in a dry run (`writes`), first.
 */
export function writeFileAtomic(
  writes: Writes,
  file: string,
  content: string | Buffer,
  opts: AtomicWriteOptions,
): void {
  writes.allow(`write ${file}`);
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: opts.dirMode });
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}`);
  rmSync(tmp, { force: true });
  try {
    const fd = openSync(tmp, 'wx', opts.mode);
    try {
      if (opts.exactMode) fchmodSync(fd, opts.mode);
      writeSync(fd, typeof content === 'string' ? Buffer.from(content) : content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dir);
}

/**
 * A file only its owner can read (0600, in a folder made 0700): secrets, keys, the catalog head and
 * the remote settings.
 */
export function writePrivateFileAtomic(writes: Writes, file: string, content: string | Buffer): void {
  writeFileAtomic(writes, file, content, { mode: 0o600, dirMode: 0o700, exactMode: true });
}

/** Small JSON state files, pretty-printed with a final newline. */
export function writeJsonAtomic(writes: Writes, file: string, value: unknown, mode = 0o644): void {
  writeFileAtomic(writes, file, `${JSON.stringify(value, null, 2)}\n`, { mode, dirMode: 0o755 });
}

/** Makes a rename in `dir` durable. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
