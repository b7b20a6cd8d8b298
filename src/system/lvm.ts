import { CommandError, NotFoundError } from '../errors.js';
import type { Runner } from './runner.js';
import type { Command } from './command.js';

/**
 * LVM through its own tools, probed with `--reportformat json` and parsed into typed objects.
 * Sizes are asked for in bytes (`--units b --nosuffix`) so nothing is parsed from "1.00g".
 */

export interface VgInfo {
  name: string;
  sizeBytes: number;
  freeBytes: number;
  extentBytes: number;
  freeExtents: number;
  tags: string[];
}

export type LvKind = 'origin' | 'snapshot' | 'plain';

export interface LvInfo {
  name: string;
  vg: string;
  path: string;
  attr: string;
  sizeBytes: number;
  kind: LvKind;
  /** For a snapshot: the LV it is a snapshot of. */
  origin: string | null;
  /** lv_attr[0] is S (merging snapshot) or O (origin of a merging snapshot). */
  merging: boolean;
  /** lv_attr[4] is I (or S, invalid and suspended): the snapshot overflowed and the kernel invalidated it. */
  invalid: boolean;
  active: boolean;
  /** Copy-on-write fill of a snapshot, 0–100; null for other LVs or when inactive. */
  snapPercent: number | null;
  tags: string[];
  /** Creation time reported by LVM. */
  created: Date | null;
  kernelMajor: number | null;
  kernelMinor: number | null;
}

const LV_FIELDS = [
  'lv_name',
  'vg_name',
  'lv_path',
  'lv_attr',
  'lv_size',
  'origin',
  'snap_percent',
  'lv_tags',
  'lv_time',
  'lv_kernel_major',
  'lv_kernel_minor',
];
const VG_FIELDS = ['vg_name', 'vg_size', 'vg_free', 'vg_extent_size', 'vg_free_count', 'vg_tags'];

const REPORT_ARGS = ['--reportformat', 'json', '--units', 'b', '--nosuffix'];

export function vgsCommand(vg?: string): Command {
  return {
    file: 'vgs',
    args: [...REPORT_ARGS, '-o', VG_FIELDS.join(','), ...(vg ? [vg] : [])],
    mutates: false,
  };
}

export function lvsCommand(vg?: string): Command {
  return {
    file: 'lvs',
    args: [
      ...REPORT_ARGS,
      // A snapshot being merged is hidden ("[snap0]"): without -a it vanishes from the report.
      '-a',
      '-o',
      LV_FIELDS.join(','),
      '--config',
      'report/time_format="%s"',
      ...(vg ? [vg] : []),
    ],
    mutates: false,
  };
}

type Row = Record<string, string>;

function reportRows(json: string, key: 'lv' | 'vg'): Row[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new Error(`unparseable LVM report: ${json.slice(0, 200)}`);
  }
  const report = (parsed as { report?: Record<string, Row[]>[] }).report;
  if (!Array.isArray(report)) throw new Error('LVM report without "report" array');
  return report.flatMap((r) => r[key] ?? []);
}

const num = (s: string | undefined): number => (s === undefined || s === '' ? Number.NaN : Number(s));
const tags = (s: string | undefined): string[] => (s ? s.split(',').filter(Boolean) : []);

export function parseVgs(json: string): VgInfo[] {
  return reportRows(json, 'vg').map((r) => ({
    name: r['vg_name'] ?? '',
    sizeBytes: num(r['vg_size']),
    freeBytes: num(r['vg_free']),
    extentBytes: num(r['vg_extent_size']),
    freeExtents: num(r['vg_free_count']),
    tags: tags(r['vg_tags']),
  }));
}

/**
 * The positions of `lv_attr` (lvs(8), "lv_attr bits"), named once: nothing else indexes the string.
 */
export const LV_ATTR = {
  /** Volume type: o origin, O origin with a merging snapshot, s snapshot, S merging snapshot, ... */
  type: 0,
  permissions: 1,
  allocation: 2,
  fixedMinor: 3,
  /** State: a active, I invalid snapshot, S invalid suspended snapshot, - inactive, ... */
  state: 4,
  /** Device open: o (mounted or otherwise held). */
  open: 5,
  targetType: 6,
  zeroed: 7,
  health: 8,
  skipActivation: 9,
} as const;

export interface LvAttr {
  kind: LvKind;
  /** S (merging snapshot) or O (origin of a merging snapshot). */
  merging: boolean;
  /** I (or S, invalid and suspended): the snapshot overflowed and the kernel invalidated it. */
  invalid: boolean;
  active: boolean;
  /** o: the device is open (mounted or otherwise held). */
  open: boolean;
}

export function decodeLvAttr(attr: string): LvAttr {
  const type = attr[LV_ATTR.type] ?? '-';
  const state = attr[LV_ATTR.state];
  return {
    kind: type === 's' || type === 'S' ? 'snapshot' : type === 'o' || type === 'O' ? 'origin' : 'plain',
    merging: type === 'S' || type === 'O',
    invalid: state === 'I' || state === 'S',
    active: state === 'a',
    open: attr[LV_ATTR.open] === 'o',
  };
}

/** `attr` with one position replaced (a state planned ahead, e.g. no longer an origin). */
export function withLvAttr(attr: string, position: number, value: string): string {
  return `${attr.slice(0, position)}${value}${attr.slice(position + 1)}`;
}

export function parseLvs(json: string): LvInfo[] {
  return reportRows(json, 'lv').map((r) => {
    const attr = r['lv_attr'] ?? '';
    const bits = decodeLvAttr(attr);
    const pct = r['snap_percent'];
    const time = r['lv_time'];
    const epoch = time && /^\d+$/.test(time) ? Number(time) : Number.NaN;
    const major = num(r['lv_kernel_major']);
    const minor = num(r['lv_kernel_minor']);
    return {
      name: (r['lv_name'] ?? '').replace(/^\[(.*)\]$/, '$1'),
      vg: r['vg_name'] ?? '',
      path: r['lv_path'] ?? '',
      attr,
      sizeBytes: num(r['lv_size']),
      kind: bits.kind,
      origin: r['origin'] || null,
      merging: bits.merging,
      invalid: bits.invalid,
      active: bits.active,
      snapPercent: pct === undefined || pct === '' ? null : Number(pct),
      tags: tags(r['lv_tags']),
      created: Number.isFinite(epoch) ? new Date(epoch * 1000) : time ? new Date(time) : null,
      kernelMajor: major >= 0 ? major : null,
      kernelMinor: minor >= 0 ? minor : null,
    } satisfies LvInfo;
  });
}

export interface VgState {
  vg: VgInfo;
  lvs: LvInfo[];
}

/**
 * The configured VG does not exist: one error (exit 5, NotFoundError) for every command, whether
 * `vgs` said so or a probe found no such VG. A command may give its own hint.
 */
export class VgNotFoundError extends NotFoundError {
  readonly vgName: string;
  constructor(vgName: string, opts?: { hint?: string; what?: string }) {
    super(`volume group "${vgName}" not found${opts?.what ? `: ${opts.what}` : ''}`, {
      hint: opts?.hint ?? 'check lvm.vg in the config; `vgs` lists the volume groups on this machine',
    });
    this.vgName = vgName;
  }
}

/** Probe one VG and its LVs. A VG that does not exist is a VgNotFoundError, not an empty answer. */
export async function probeVg(runner: Runner, vgName: string): Promise<VgState> {
  let vgsOut: string;
  try {
    vgsOut = (await runner.run(vgsCommand(vgName))).stdout;
  } catch (err) {
    if (err instanceof CommandError && /not found|Volume group .* not found/i.test(err.stderr)) {
      throw new VgNotFoundError(vgName);
    }
    throw err;
  }
  const vg = parseVgs(vgsOut).find((v) => v.name === vgName);
  if (!vg) throw new VgNotFoundError(vgName);
  const lvs = parseLvs((await runner.run(lvsCommand(vgName))).stdout).filter((l) => l.vg === vgName);
  return { vg, lvs };
}

/**
 * An LVM command line: the tool and its arguments, built here so each LVM command and option is
 * written once. The flow that runs it decides how (its timeout): `lvmCommand`, or `mutating`.
 */
export type LvmArgv = [file: string, args: string[]];

/** A change to LVM, run with the flow's own limits (`extra`). */
export function lvmCommand([file, args]: LvmArgv, extra: Partial<Command> = {}): Command {
  return { file, args, mutates: true, ...extra };
}

/** A size for lvcreate: bytes, or a percentage of the VG (a volume) or of the origin (a snapshot). */
export type LvSize = { kind: 'bytes'; bytes: number } | { kind: 'percent'; percent: number };

const sizeArgs = (size: LvSize, of: 'VG' | 'ORIGIN'): string[] =>
  size.kind === 'percent' ? ['-l', `${size.percent}%${of}`] : ['-L', `${size.bytes}b`];

const tagArgs = (op: '--addtag' | '--deltag', tags: readonly string[]): string[] =>
  tags.flatMap((t) => [op, t]);

export const pvCreateArgv = (pv: string): LvmArgv => ['pvcreate', ['-ff', '-y', pv]];

export const vgCreateArgv = (vg: string, pv: string, tags: readonly string[]): LvmArgv => [
  'vgcreate',
  ['-y', ...tagArgs('--addtag', tags), vg, pv],
];

/** A new volume of the layout: signatures wiped (-W y) and its start zeroed (-Z y). */
export const lvCreateArgv = (vg: string, name: string, size: LvSize): LvmArgv => [
  'lvcreate',
  ['-y', '-W', 'y', '-Z', 'y', '-n', name, ...sizeArgs(size, 'VG'), vg],
];

/**
 * A new volume of `bytes` beside the old root, signatures wiped. The same request as lvCreateArgv
 * (zeroing is lvcreate's default) in long options, as recorded transcripts of the off-box reset pin.
 */
export const lvCreateWipedArgv = (vg: string, name: string, bytes: number): LvmArgv => [
  'lvcreate',
  ['--yes', '--wipesignatures', 'y', '--name', name, '--size', `${bytes}b`, vg],
];

/** A snapshot sized in bytes or as a percentage of its origin (the factory reset's first snap0). */
export const snapshotArgv = (opts: {
  vg: string;
  origin: string;
  name: string;
  size: LvSize;
  tags: readonly string[];
}): LvmArgv => [
  'lvcreate',
  [
    '--snapshot',
    '-n',
    opts.name,
    ...sizeArgs(opts.size, 'ORIGIN'),
    ...tagArgs('--addtag', opts.tags),
    `${opts.vg}/${opts.origin}`,
  ],
];

export function snapshotCreateCommand(opts: {
  vg: string;
  origin: string;
  name: string;
  sizeBytes: number;
  tags: string[];
}): Command {
  return {
    file: 'lvcreate',
    args: [
      '--snapshot',
      '--name',
      opts.name,
      '--size',
      `${opts.sizeBytes}b`,
      ...tagArgs('--addtag', opts.tags),
      `${opts.vg}/${opts.origin}`,
    ],
    mutates: true,
    // lvcreate -s took up to 9 s under emulation (LVM locks its memory); a real box can be slow too.
    timeoutMs: 300_000,
  };
}

export const lvRemoveArgv = (vg: string, lv: string): LvmArgv => ['lvremove', ['--yes', `${vg}/${lv}`]];

export function lvRemoveCommand(vg: string, lv: string): Command {
  return lvmCommand(lvRemoveArgv(vg, lv), { timeoutMs: 300_000 });
}

export function lvRenameCommand(vg: string, from: string, to: string): Command {
  return { file: 'lvrename', args: [vg, from, to], mutates: true, timeoutMs: 120_000 };
}

/** Merge a snapshot back into its origin; -i 1 reports progress every second (the default is 15 s). */
export const lvMergeArgv = (vg: string, snapshot: string): LvmArgv => [
  'lvconvert',
  ['--merge', '-i', '1', `${vg}/${snapshot}`],
];

/** Activation changes device state (and starts a merge that was deferred): a change, never a probe. */
export const vgActivateArgv = (vg: string): LvmArgv => ['vgchange', ['-ay', vg]];

export const vgDeactivateArgv = (vg: string): LvmArgv => ['vgchange', ['-an', vg]];

/** Change a VG's tags in one vgchange: the removals first, then the additions. */
export const vgTagsArgv = (
  vg: string,
  tags: { del?: readonly string[]; add?: readonly string[] },
): LvmArgv => [
  'vgchange',
  [...tagArgs('--deltag', tags.del ?? []), ...tagArgs('--addtag', tags.add ?? []), vg],
];

export function vgTagCommand(vg: string, op: 'add' | 'del', tag: string): Command {
  return lvmCommand(vgTagsArgv(vg, op === 'add' ? { add: [tag] } : { del: [tag] }));
}

/**
 * The copy-on-write size LVM really allocates for a snapshot of `originBytes` when `wantBytes` is
 * asked, in whole extents. LVM never gives a snapshot more than it can use ("Reducing COW size ...
 * down to maximum usable size"): the origin plus 16 bytes of exception table per 4 KiB chunk, plus
 * a chunk of header. Every space sum (backup rotation, the image job's temporary snapshot) plans
 * with this, or the sums are wrong.
 */
export function snapshotAllocation(wantBytes: number, originBytes: number, extentBytes: number): number {
  const CHUNK = 4096;
  const maxCow = originBytes + Math.ceil(originBytes / CHUNK) * 16 + CHUNK;
  return Math.ceil(Math.min(wantBytes, maxCow) / extentBytes) * extentBytes;
}
