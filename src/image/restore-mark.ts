import path from 'node:path';
import { IMAGE_RESTORE_TAG } from '../names/lvm-tags.js';
import type { Step } from '../plan/plan.js';
import { type VgInfo, lvmCommand, vgTagsArgv } from '../system/lvm.js';
import { tagValue } from '../names/lvm-tags.js';
import type { ImageSource } from './image-source.js';

/**
 * An image restore cut short (a power cut while it writes lv-root) must be known and finished: the
 * VG carries IMAGE_RESTORE_TAG (names/lvm-tags.ts) from before the first destructive step until
 * lv-root is whole again, and beside it the tags a resume needs: which image (its path, and the
 * UUID of its file system with the path inside it) and its SHA-256. All of it lives in the VG's
 * metadata, on the system disk: it survives the power cut, no rollback erases it, and the golden
 * medium's next boot reads it (a file beside the event log did not: from the golden medium that
 * folder is on its read-only root or a tmpfs, gone at the reboot). The tags are set, and cleared,
 * by one vgchange each: one metadata commit, so a cut never leaves half a record.
 */

const SHA_TAG = 'zshield_image_sha256=';
const FILE_TAG = 'zshield_image_file=';
const SOURCE_TAG = 'zshield_image_src=';
const STARTED_TAG = 'zshield_image_started=';
const RECORD_TAGS = [SHA_TAG, FILE_TAG, SOURCE_TAG, STARTED_TAG];
/** LVM sets no limit on a tag's length; a path longer than this is left out (the resume asks for it). */
const MAX_TAG = 1000;

export interface ImageRestoreMark {
  id: string;
  /** The image being written (absolute path), null when it was not recorded. */
  image: string | null;
  /** Its file system, to find it again when nothing is mounted. */
  source: ImageSource | null;
  /** Its SHA-256 as checked before the first write (empty when not recorded). */
  sha256: string;
  vg: string;
  startedAt: string;
}

/**
 * LVM tags take letters, digits and `._-+/=!:&#` only: every other byte of a path (UTF-8) is
 * written `#xx`, and `#` itself too.
 */
export function encodeTagText(text: string): string {
  return [...Buffer.from(text, 'utf8')]
    .map((b) => {
      const c = String.fromCharCode(b);
      return /^[A-Za-z0-9._\-+/=:]$/.test(c) ? c : `#${b.toString(16).padStart(2, '0')}`;
    })
    .join('');
}

export function decodeTagText(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const hex = text[i] === '#' ? /^[0-9a-f]{2}$/.exec(text.slice(i + 1, i + 3)) : null;
    if (hex) {
      bytes.push(Number.parseInt(hex[0], 16));
      i += 2;
    } else bytes.push(text.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The id of a new mark: the image's SHA-256 prefix (the same in the printed plan and the run). */
export const markIdFor = (sha256: string) => sha256.slice(0, 8);

/** The id of the unfinished image restore the VG's tags name, or null. */
export const markIdOf = (vgTags: readonly string[]): string | null => tagValue(vgTags, IMAGE_RESTORE_TAG);

/** The tags that record a mark (the id tag first). */
export function markTags(mark: ImageRestoreMark): string[] {
  const tags = [`${IMAGE_RESTORE_TAG}${mark.id}`];
  if (mark.sha256) tags.push(`${SHA_TAG}${mark.sha256}`);
  const file = mark.image ? `${FILE_TAG}${encodeTagText(mark.image)}` : '';
  if (file && file.length <= MAX_TAG) tags.push(file);
  const src = mark.source ? `${SOURCE_TAG}${mark.source.fsUuid}:${encodeTagText(mark.source.pathInFs)}` : '';
  if (src && src.length <= MAX_TAG && /^[A-Za-z0-9._-]+$/.test(mark.source!.fsUuid)) tags.push(src);
  const started = Date.parse(mark.startedAt);
  if (!Number.isNaN(started)) tags.push(`${STARTED_TAG}${Math.floor(started / 1000)}`);
  return tags;
}

/** The mark the VG's tags record, or null when no image restore is marked. Reads only. */
export function markOf(vg: { tags: readonly string[]; name?: string }): ImageRestoreMark | null {
  const id = markIdOf(vg.tags);
  if (!id) return null;
  const file = tagValue(vg.tags, FILE_TAG);
  const src = tagValue(vg.tags, SOURCE_TAG);
  const colon = src?.indexOf(':') ?? -1;
  const started = tagValue(vg.tags, STARTED_TAG);
  return {
    id,
    image: file ? decodeTagText(file) : null,
    source:
      src && colon > 0
        ? { fsUuid: src.slice(0, colon), pathInFs: decodeTagText(src.slice(colon + 1)) }
        : null,
    sha256: tagValue(vg.tags, SHA_TAG) ?? '',
    vg: vg.name ?? '',
    startedAt: started && /^\d+$/.test(started) ? new Date(Number(started) * 1000).toISOString() : '',
  };
}

/**
 * For status and the boot hook: the unfinished image restore marked on this VG, or null. `mark`
 * is null when the tags do not say which image (an id alone).
 */
export function unfinishedImageRestore(vg: {
  tags: readonly string[];
  name?: string;
}): { id: string; mark: ImageRestoreMark | null } | null {
  const mark = markOf(vg);
  if (!mark) return null;
  return { id: mark.id, mark: mark.sha256 && (mark.image || mark.source) ? mark : null };
}

/**
 * The backup flow's predicate: lv-root is half-written by an image restore cut short, so a backup
 * (a snapshot of it) would be a restore point of a broken system. Take none.
 */
export const rootHalfWritten = (vg: Pick<VgInfo, 'tags'>): boolean => markIdOf(vg.tags) !== null;

/** One line for status and the boot hook. */
export function describeUnfinished(u: NonNullable<ReturnType<typeof unfinishedImageRestore>>): string {
  if (!u.mark) {
    return `an image restore (mark ${u.id}) was cut short: lv-root is half-written, and which image it wrote is not recorded; run zshield image restore FILE --yes from the golden medium`;
  }
  const m = u.mark;
  const where = m.image ?? `${m.source!.pathInFs} on file system ${m.source!.fsUuid}`;
  const also = m.image ? ` (zshield image restore ${m.image} --yes does the same)` : '';
  return `an image restore of ${where} (SHA-256 ${m.sha256.slice(0, 16)}…${m.startedAt ? `, started ${m.startedAt}` : ''}) was cut short: lv-root is half-written; the golden medium's next boot finishes it${also}`;
}

/**
 * The plan's steps that set the mark (before the first destructive step) and clear it (once
 * lv-root is whole: checked and grown). A mark already on the VG (this restore resumed, or an
 * earlier one cut short) is brought up to date in the same one vgchange: tags of another image are
 * dropped, the missing ones added; nothing runs when it already says all of it.
 */
export function markSteps(mark: ImageRestoreMark, vgTags: readonly string[]): { set: Step[]; clear: Step[] } {
  const want = markTags(mark);
  const ours = (t: string) => t.startsWith(IMAGE_RESTORE_TAG) || RECORD_TAGS.some((p) => t.startsWith(p));
  const stale = vgTags.filter((t) => ours(t) && !want.includes(t));
  const missing = want.filter((t) => !vgTags.includes(t));
  const set: Step[] =
    stale.length + missing.length === 0
      ? []
      : [
          {
            title: `mark ${mark.vg}: an image restore of ${path.basename(mark.image ?? mark.source?.pathInFs ?? 'an image')} is under way (the image and its SHA-256 in the VG's tags: a cut restore is finished at the next boot)`,
            command: lvmCommand(vgTagsArgv(mark.vg, { del: stale, add: missing })),
          },
        ];
  const clear: Step[] = [
    {
      title: `clear the mark: ${mark.vg}/lv-root is whole again`,
      command: lvmCommand(vgTagsArgv(mark.vg, { del: want })),
    },
  ];
  return { set, clear };
}
