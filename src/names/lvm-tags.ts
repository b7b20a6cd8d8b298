/**
 * The LVM tags zshield writes, named once. Tags live in VG/LV metadata, outside lv-root: they
 * survive a power cut and are not rolled back by a restore, which is why every mark that a later
 * boot must find is a tag. LVM allows [A-Za-z0-9_+.-/=!:#&] in tags (no comma).
 */

/** On a snapshot: why it was taken (one of REASONS). */
export const TAG_REASON = 'zshield_reason=';
/** On a snapshot: when it was taken (epoch seconds). */
export const TAG_TIME = 'zshield_time=';
/** On a snapshot: whether /boot was captured into lv-root before it (`captured` or `none`). */
export const TAG_BOOT = 'zshield_boot=';

/** On the VG while a rotation runs: a run that finds it knows a rotation was cut short. */
export const ROTATING_TAG = 'zshield_rotating';
/** On the VG from its creation to the end of a factory reset: a boot that finds it resumes the reset. */
export const FACTORY_TAG = 'zshield_factory_reset';
/**
 * On the VG from its creation to the end of a restore of a blank disk from the off-box copy: not
 * FACTORY_TAG, so a boot after a cut does not resume it as a factory reset; the golden medium's
 * next boot runs the off-box restore again (recovery/resume.ts).
 */
export const OFFBOX_RESTORE_TAG = 'zshield_offbox_restore';
/** The marks of the flows that fill a new lv-root from nothing: while one is on the VG, lv-root is incomplete. */
export const ROOT_FILLING_TAGS = [FACTORY_TAG, OFFBOX_RESTORE_TAG] as const;
/**
 * On the VG while a restore runs (set before the merge, cleared once merged, /boot put back and a
 * new snap0 taken): the rollback cannot erase it.
 */
export const RESTORE_TAG = 'zshield_restoring';
/** Which restore point is being restored: `<epoch>.<reason>.<boot>`, for the boot that finishes it. */
export const RESTORE_OF_TAG = 'zshield_restore_of=';

/**
 * On the VG while an image restore writes lv-root (`<id>`: the image's short ID; the image's path,
 * file system and checksum are in tags beside it, image/restore-mark.ts): lv-root is half-written
 * until it is cleared.
 * The golden medium's next boot finishes the restore; no backup is taken of such a root.
 */
export const IMAGE_RESTORE_TAG = 'zshield_image_restore=';

/** Why a backup was taken. */
export const REASONS = ['daily', 'manual', 'pre-upgrade', 'post-restore', 'factory', 'repair'] as const;
export type Reason = (typeof REASONS)[number];

export function tagValue(tagList: readonly string[], prefix: string): string | null {
  const t = tagList.find((x) => x.startsWith(prefix));
  return t ? t.slice(prefix.length) : null;
}
