/**
 * Which files are zshield's backups, and how they group. A backup file is named
 *
 *     zshield-<kind>-<YYYYMMDDTHHMMSSZ>.<ext>
 *
 * `kind` is what made it (for images the host name, e.g. `zshield-appliance7-20260101T030000Z.img.zst`;
 * for logs `log`): letters, digits, `_ . -`, starting with a letter or digit. The time is UTC.
 * `ext` is anything after the first dot following the time. All files with the same kind and time
 * are ONE backup (an image, its `.manifest.json` and its `.sha256` count once against the limit,
 * are copied and pruned together). A name that does not match is not ours: retention never touches
 * it, locally or remotely. Names ending in `.tmp`, `.part`, `.partial` or `.zshield-part` are work
 * in progress, never a backup.
 *
 * Retention counts per kind in the destination directory, so two appliances sharing one directory
 * must not share a kind: a writer whose files are not per-host by nature (logs) puts the host in
 * the kind (`zshield-appliance7.log-...`), or each appliance gets its own destination.
 */
export const BACKUP_NAME =
  /^zshield-([A-Za-z0-9][A-Za-z0-9_.-]*)-(\d{8}T\d{6}Z)\.([A-Za-z0-9][A-Za-z0-9_.-]*)$/;

/** The suffix of an upload in progress on the remote (renamed away once verified). */
export const PART_SUFFIX = '.zshield-part';

const IN_PROGRESS = /\.(tmp|part|partial|zshield-part)$/;

export interface BackupName {
  kind: string;
  /** `YYYYMMDDTHHMMSSZ`: sorts as text in time order. */
  stamp: string;
}

export function parseBackupName(name: string): BackupName | null {
  if (IN_PROGRESS.test(name)) return null;
  const m = BACKUP_NAME.exec(name);
  if (!m) return null;
  const stamp = m[2]!;
  if (!validStamp(stamp)) return null;
  return { kind: m[1]!, stamp };
}

function validStamp(s: string): boolean {
  const iso = `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}Z`;
  const t = Date.parse(iso);
  return Number.isFinite(t) && new Date(t).toISOString().startsWith(iso.slice(0, 19));
}

/** The name of a backup's file for `time` (what the image and log writers use). */
export function backupFileName(kind: string, time: Date, ext: string): string {
  const stamp = time
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replaceAll('-', '')
    .replaceAll(':', '');
  return `zshield-${kind}-${stamp}.${ext}`;
}
