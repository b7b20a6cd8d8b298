import { RESTORE_TAG, ROOT_FILLING_TAGS } from '../names/lvm-tags.js';
import type { SnapshotNames } from '../names/snapshots.js';
import type { LvInfo, VgState } from '../system/lvm.js';
import { stateAfterRepair } from './repair.js';
import { decideRepair, labelOf } from './rotation.js';

/**
 * What the GRUB menu says about the restore point, as a pure function of the probed VG.
 *
 * The names below are shared with grub/40_zshield, which generates the menu code that reads them:
 * - MENU_FILE, on the system disk's /boot file system, holds MENU_VAR: the entry then reads
 *   "Recover to latest backup (<MENU_VAR>)";
 * - GOLDEN_SETTINGS_FILE, beside the golden medium's own grub.cfg, holds PAIR_UUID_VAR and
 *   PAIR_PATH_VAR: where that medium's menu finds MENU_FILE (written by the factory reset).
 * A missing or unreadable file leaves the menu's default, "unknown".
 */
export const MENU_VAR = 'zshield_restore_point';
/** MENU_FILE relative to the root of the system disk's /boot file system. */
export const MENU_FILE = 'zshield/bootmenu.env';
export const GOLDEN_SETTINGS_FILE = 'zshield-system.env';
export const PAIR_UUID_VAR = 'zshield_menu_uuid';
export const PAIR_PATH_VAR = 'zshield_menu_path';

export const NONE_AVAILABLE = 'none available';
const CUT = 'rotation cut short';

/** A snapshot of lv-root that a restore could merge now. */
function usable(lv: LvInfo | undefined, names: SnapshotNames): lv is LvInfo {
  return !!lv && lv.kind === 'snapshot' && lv.origin === names.root && !lv.invalid && !lv.merging;
}

/** `2026-11-29 03:00`, in the appliance's local time (the time zone its daily schedule uses). */
export function formatMenuTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

function describe(lv: LvInfo): string {
  const { time, reason } = labelOf(lv);
  // A tag may hold characters that mean something in a GRUB title; keep the plain ones.
  const plain = reason?.replace(/[^A-Za-z0-9_.+-]/g, '?');
  return [time ? formatMenuTime(time) : 'time unknown', plain ?? 'reason unknown'].join(', ');
}

/**
 * The restore point "Recover to latest backup" would merge, in words: its time and reason, or
 * `none available` when a restore would refuse (no snapshot, an invalid one, a merge, a factory
 * reset or an off-box restore under way). A rotation cut short is shown as its repair (which every
 * writer, and the daemon at start, runs first) will leave it, and the text says that the rotation
 * was cut.
 */
export function restorePointText(state: VgState | null, names: SnapshotNames): string {
  if (!state) return NONE_AVAILABLE;
  const tags = state.vg.tags;
  const cut = decideRepair(state, names) !== null;
  const after = stateAfterRepair(state, names);
  const root = after.lvs.find((l) => l.name === names.root);
  const point = after.lvs.find((l) => l.name === names.snap);
  const busy = !root || root.merging || [RESTORE_TAG, ...ROOT_FILLING_TAGS].some((t) => tags.includes(t));
  const text = !busy && usable(point, names) ? describe(point) : NONE_AVAILABLE;
  return cut ? `${text}, ${CUT}` : text;
}

/** The variables of MENU_FILE. */
export function bootMenuEnv(state: VgState | null, names: SnapshotNames): Record<string, string> {
  return { [MENU_VAR]: restorePointText(state, names) };
}

/** One block device as `lsblk -J -l -p -o NAME,PKNAME,UUID,FSTYPE,LABEL,MOUNTPOINT` lists it. */
export interface BlockRow {
  name: string;
  pkname: string | null;
  uuid: string | null;
  fstype: string | null;
  label: string | null;
  mountpoint: string | null;
}

/** The label the factory reset gives the system disk's /boot (recovery/factory.ts, mkfs -L). */
export const SYSTEM_BOOT_LABEL = 'zs-boot';
/** File systems GRUB reads that a /boot is made of. */
const BOOT_FS = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'vfat', 'btrfs']);

/**
 * The system disk's /boot: a file system on the disk that holds the VG's physical volumes (never
 * on another disk, such as a disk from another box with the same label), chosen by the UUID the
 * factory reset recorded, else by the factory reset's label, else as the file system mounted at
 * `bootDir` (a system whose /boot was made by hand). Null when there is none.
 */
export function chooseSystemBoot(
  rows: BlockRow[],
  pvNames: string[],
  want: { uuid: string | null; bootDir: string },
): BlockRow | null {
  const pvs = new Set(pvNames);
  const disks = new Set(rows.filter((r) => pvs.has(r.name) && r.pkname).map((r) => r.pkname));
  const candidates = rows.filter(
    (r) => r.pkname && disks.has(r.pkname) && !pvs.has(r.name) && BOOT_FS.has(r.fstype ?? ''),
  );
  return (
    (want.uuid ? candidates.find((r) => r.uuid === want.uuid) : undefined) ??
    candidates.find((r) => r.label === SYSTEM_BOOT_LABEL) ??
    candidates.find((r) => r.mountpoint === want.bootDir) ??
    null
  );
}

/**
 * `blkid -c /dev/null -o export`: file system UUID, type and label per device. lsblk reads these
 * from udev's database, and an appliance without udev (or the bench) has none; blkid reads the
 * devices themselves. Fills what lsblk left empty.
 */
export function withBlkid(rows: BlockRow[], blkidExport: string): BlockRow[] {
  const found = new Map<string, Record<string, string>>();
  for (const para of blkidExport.split(/\n\s*\n/)) {
    const kv: Record<string, string> = {};
    for (const line of para.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) kv[line.slice(0, eq)] = line.slice(eq + 1).replace(/\\(.)/g, '$1');
    }
    if (kv['DEVNAME']) found.set(kv['DEVNAME'], kv);
  }
  return rows.map((r) => {
    const b = found.get(r.name);
    if (!b) return r;
    return {
      ...r,
      uuid: r.uuid ?? b['UUID'] ?? null,
      fstype: r.fstype ?? b['TYPE'] ?? null,
      label: r.label ?? b['LABEL'] ?? null,
    };
  });
}

export function parseLsblk(json: string): BlockRow[] {
  const parsed = JSON.parse(json) as { blockdevices?: Record<string, string | null>[] };
  const s = (v: string | null | undefined) => (v === undefined || v === null || v === '' ? null : v);
  return (parsed.blockdevices ?? []).map((d) => ({
    name: d['name'] ?? '',
    pkname: s(d['pkname']),
    uuid: s(d['uuid']),
    fstype: s(d['fstype']),
    label: s(d['label']),
    mountpoint: s(d['mountpoint']),
  }));
}
