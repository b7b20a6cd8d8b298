import type { Runner } from './runner.js';
import type { Command } from './command.js';

export interface PvInfo {
  pvName: string;
  vgName: string;
  /** Tells two VGs of the same name apart (LVM itself asks for `--select vg_uuid=` then). */
  vgUuid?: string;
  vgTags?: string[];
}

export const pvsCommand: Command = {
  file: 'pvs',
  args: ['--reportformat', 'json', '-o', 'pv_name,vg_name,vg_uuid,vg_tags'],
  mutates: false,
};

/**
 * Which VG each PV belongs to (to tell a VG on the target disk from one elsewhere). Through a
 * runner scoped to the system disk (lvm-scope.ts) it sees the system's PVs only.
 */
export async function probePvs(runner: Runner): Promise<PvInfo[]> {
  return parsePvs((await runner.run(pvsCommand)).stdout);
}

export function parsePvs(json: string): PvInfo[] {
  let parsed: { report?: { pv?: Record<string, string>[] }[] };
  try {
    parsed = JSON.parse(json) as typeof parsed;
  } catch {
    throw new Error(`unparseable pvs report: ${json.slice(0, 200)}`);
  }
  return (parsed.report ?? [])
    .flatMap((r) => r.pv ?? [])
    .map((p) => ({
      pvName: p['pv_name'] ?? '',
      vgName: p['vg_name'] ?? '',
      vgUuid: p['vg_uuid'] ?? '',
      vgTags: (p['vg_tags'] ?? '').split(',').filter(Boolean),
    }));
}
