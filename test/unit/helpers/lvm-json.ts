/**
 * Builders for LVM 2.03 JSON reports, in the exact shape and formatting `lvs`/`vgs
 * --reportformat json --units b --nosuffix` print (every value a string, inactive kernel numbers
 * "-1", empty strings for absent fields). Scenario tests build their input with these; the static
 * files in fixtures/ are the same shape written out by hand.
 */

export interface LvRow {
  name: string;
  attr: string;
  /** Bytes. */
  size: number;
  origin?: string;
  /** As LVM prints it: "12.50", or "" for none. */
  snapPercent?: string;
  tags?: string[];
  /** Epoch seconds (report/time_format="%s"). */
  time?: number;
  major?: number;
  minor?: number;
}

export interface VgRow {
  name: string;
  extentBytes: number;
  extentCount: number;
  freeExtents: number;
  tags?: string[];
}

export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;
export const EXTENT = 4 * MiB;

function report(key: 'lv' | 'vg', rows: Record<string, string>[]): string {
  const body = rows
    .map(
      (r) =>
        `                  {${Object.entries(r)
          .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
          .join(', ')}}`,
    )
    .join(',\n');
  return `  {\n      "report": [\n          {\n              "${key}": [\n${body}\n              ]\n          }\n      ]\n  }\n`;
}

export function lvsJson(vg: string, rows: readonly LvRow[]): string {
  return report(
    'lv',
    rows.map((r) => {
      const active = r.attr[4] !== '-';
      return {
        lv_name: r.name,
        vg_name: vg,
        lv_path: `/dev/${vg}/${r.name}`,
        lv_attr: r.attr,
        lv_size: String(r.size),
        origin: r.origin ?? '',
        snap_percent: r.snapPercent ?? '',
        lv_tags: (r.tags ?? []).join(','),
        lv_time: String(r.time ?? 1763690400),
        lv_kernel_major: String(active ? (r.major ?? 253) : -1),
        lv_kernel_minor: String(active ? (r.minor ?? 0) : -1),
      };
    }),
  );
}

export function vgsJson(rows: readonly VgRow[]): string {
  return report(
    'vg',
    rows.map((v) => ({
      vg_name: v.name,
      vg_size: String(v.extentBytes * v.extentCount),
      vg_free: String(v.extentBytes * v.freeExtents),
      vg_extent_size: String(v.extentBytes),
      vg_free_count: String(v.freeExtents),
      vg_tags: (v.tags ?? []).join(','),
    })),
  );
}

/** Epoch seconds of a local-time moment (so tests read the same in every time zone). */
export const epoch = (d: Date): number => Math.floor(d.getTime() / 1000);
