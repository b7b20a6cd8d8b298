import { CommandError, NotFoundError } from '../errors.js';
import type { Command, Runner } from './runner.js';

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

export function parseLvs(json: string): LvInfo[] {
  return reportRows(json, 'lv').map((r) => {
    const attr = r['lv_attr'] ?? '';
    const type = attr[0] ?? '-';
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
      kind: type === 's' || type === 'S' ? 'snapshot' : type === 'o' || type === 'O' ? 'origin' : 'plain',
      origin: r['origin'] || null,
      merging: type === 'S' || type === 'O',
      invalid: attr[4] === 'I' || attr[4] === 'S',
      active: attr[4] === 'a',
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

export { TAG_REASON, TAG_TIME, tagValue } from '../names/lvm-tags.js';

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
      ...opts.tags.flatMap((t) => ['--addtag', t]),
      `${opts.vg}/${opts.origin}`,
    ],
    mutates: true,
    // lvcreate -s took up to 9 s under emulation (LVM locks its memory); a real box can be slow too.
    timeoutMs: 300_000,
  };
}

export function lvRemoveCommand(vg: string, lv: string): Command {
  return { file: 'lvremove', args: ['--yes', `${vg}/${lv}`], mutates: true, timeoutMs: 300_000 };
}

export function lvRenameCommand(vg: string, from: string, to: string): Command {
  return { file: 'lvrename', args: [vg, from, to], mutates: true, timeoutMs: 120_000 };
}

export function vgTagCommand(vg: string, op: 'add' | 'del', tag: string): Command {
  return { file: 'vgchange', args: [op === 'add' ? '--addtag' : '--deltag', tag, vg], mutates: true };
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
