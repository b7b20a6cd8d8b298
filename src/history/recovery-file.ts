import { readFileSync } from 'node:fs';
import { parseRecoveryFile, type RecoveryFile } from '../config/recovery-file.js';
import { ConfigError, NotFoundError, RefusedError, UsageError } from '../errors.js';
import { checkPrivateFile } from '../system/secrets.js';

/**
 * The recovery file of the off-box restore (config/recovery-file.ts has its schema) read from a
 * file and checked: by `recover offbox` (recovery/offbox.ts) and by `config check` (check.ts).
 */

/** Where QEMU's fw_cfg shows `-fw_cfg name=opt/zshield-recovery,...` (the bench's removable medium). */
export const FW_CFG_RECOVERY_FILE = '/sys/firmware/qemu_fw_cfg/by_name/opt/zshield-recovery/raw';
/** The file read and checked: one line naming the first problem, exit 3, nothing changed. */
export function readRecoveryFile(file: string): RecoveryFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new NotFoundError(`no recovery file at ${file}`, {
        hint: 'give one with --recovery-file (see README, "Recover from off-box backup")',
      });
    throw new UsageError(`cannot read the recovery file ${file}: ${code ?? String(err)}`);
  }
  checkRecoveryFileMode(file);
  const r = parseRecoveryFile(text);
  if (!r.ok) throw new ConfigError([{ where: `recovery file ${file}`, message: r.problem }]);
  return r.file;
}

/**
 * The recovery file holds the repository password and a login key in clear: like a key file, one
 * that group or others can read is refused (exit 6), before a word of it is used. fw_cfg's entry
 * is 0400 (the kernel makes it so); a FAT stick shows every file with the mount's fmask.
 */
export function checkRecoveryFileMode(file: string): void {
  try {
    checkPrivateFile(file, 'recovery file');
  } catch (err) {
    if (!(err instanceof RefusedError) || !/accessible by group or others/.test(err.message)) throw err;
    throw new RefusedError(err.message, {
      hint: `chmod 600 ${file} (on a FAT stick: mount it with -o fmask=0077,dmask=0077); if others could read it, treat its passwords and key as leaked and replace them`,
    });
  }
}
