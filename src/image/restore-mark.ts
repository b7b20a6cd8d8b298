import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import type { EditStep, Step } from '../plan/plan.js';
import { writeJsonAtomic } from '../state/store.js';
import { type VgInfo, tagValue, vgTagCommand } from '../system/lvm.js';

/**
 * An image restore cut short (a power cut while it writes lv-root) must be known and finished: the
 * VG carries a tag from before the first destructive step until lv-root is whole again, and a file
 * beside the event log (outside lv-root) says which image, with its checksum. The tag is the mark
 * (VG metadata survives the power cut and no rollback erases it); the file is what a resume needs.
 *
 * Tag: `zshield_image_restore=<id>`, a short id (the image's SHA-256 prefix) that ties the tag to its file.
 */
export const IMAGE_RESTORE_TAG = 'zshield_image_restore=';

export interface ImageRestoreMark {
  id: string;
  /** The image being written (absolute path) and its SHA-256, as checked before the first write. */
  image: string;
  sha256: string;
  vg: string;
  startedAt: string;
}

/** The mark file: beside the event log, on the system disk's /boot, outside lv-root. */
export const markFileOf = (config: Pick<Config, 'paths'>) =>
  path.join(path.dirname(config.paths.eventLog), 'image-restore.json');

/** The id of a new mark: the image's SHA-256 prefix (the same in the printed plan and the run). */
export const markIdFor = (sha256: string) => sha256.slice(0, 8);

/** The id of the unfinished image restore the VG's tags name, or null. */
export const markIdOf = (vgTags: readonly string[]): string | null => tagValue(vgTags, IMAGE_RESTORE_TAG);

/**
 * For status and the boot hook (and the backup flow's predicate): the unfinished image restore
 * marked on this VG, with what its file says (null fields when the file is missing or belongs to
 * another id), or null when none is marked. Reads only.
 */
export function unfinishedImageRestore(
  config: Pick<Config, 'paths'>,
  vg: Pick<VgInfo, 'tags'>,
): { id: string; mark: ImageRestoreMark | null } | null {
  const id = markIdOf(vg.tags);
  if (!id) return null;
  const mark = readMark(markFileOf(config));
  return { id, mark: mark?.id === id ? mark : null };
}

/**
 * The backup flow's predicate: lv-root is half-written by an image restore cut short, so a backup
 * (a snapshot of it) would be a restore point of a broken system. Take none.
 */
export const rootHalfWritten = (vg: Pick<VgInfo, 'tags'>): boolean => markIdOf(vg.tags) !== null;

/** One line for status and the boot hook. */
export function describeUnfinished(u: NonNullable<ReturnType<typeof unfinishedImageRestore>>): string {
  return u.mark
    ? `an image restore of ${u.mark.image} (SHA-256 ${u.mark.sha256.slice(0, 16)}…, started ${u.mark.startedAt}) was cut short: lv-root is half-written; the golden medium's next boot finishes it (zshield image restore ${u.mark.image} --yes does the same)`
    : `an image restore (mark ${u.id}) was cut short: lv-root is half-written, and which image it wrote is not recorded; run zshield image restore FILE --yes from the golden medium`;
}

function readMark(file: string): ImageRestoreMark | null {
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as ImageRestoreMark;
    return typeof m?.id === 'string' && typeof m.image === 'string' ? m : null;
  } catch {
    return null;
  }
}

/**
 * The plan's steps that set the mark (the file first, so a tag never names a missing file; both
 * before the first destructive step) and clear it (once lv-root is whole: checked and grown).
 * `existing`: the tag is already there (a resume): it is kept, not added again.
 */
export function markSteps(
  config: Pick<Config, 'paths'>,
  mark: ImageRestoreMark,
  existing: boolean,
): { set: Step[]; clear: Step[] } {
  const file = markFileOf(config);
  const tag = `${IMAGE_RESTORE_TAG}${mark.id}`;
  const write: EditStep = {
    title: `record the image being written (${path.basename(mark.image)} and its SHA-256) beside the event log`,
    edit: {
      files: [file],
      apply: () => {
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
        writeJsonAtomic(file, mark);
      },
    },
  };
  const set: Step[] = [write];
  if (!existing) {
    set.push({
      title: `mark ${mark.vg}: an image restore is under way (a cut restore is finished at the next boot)`,
      command: vgTagCommand(mark.vg, 'add', tag),
    });
  }
  const clear: Step[] = [
    {
      title: `clear the mark: ${mark.vg}/lv-root is whole again`,
      command: vgTagCommand(mark.vg, 'del', tag),
    },
    {
      title: 'remove the record of the image being written',
      edit: { files: [file], apply: () => rmSync(file, { force: true }) },
    },
  ];
  return { set, clear };
}
