import type { Runner } from './runner.js';

export interface PvInfo {
  pvName: string;
  vgName: string;
}

/** Which VG each PV belongs to (to tell a VG on the target disk from one elsewhere). */
export async function probePvs(runner: Runner): Promise<PvInfo[]> {
  const r = await runner.run({
    file: 'pvs',
    args: ['--reportformat', 'json', '-o', 'pv_name,vg_name'],
    mutates: false,
  });
  return parsePvs(r.stdout);
}

export function parsePvs(json: string): PvInfo[] {
  const parsed = JSON.parse(json) as { report?: { pv?: Record<string, string>[] }[] };
  return (parsed.report ?? [])
    .flatMap((r) => r.pv ?? [])
    .map((p) => ({ pvName: p['pv_name'] ?? '', vgName: p['vg_name'] ?? '' }));
}
