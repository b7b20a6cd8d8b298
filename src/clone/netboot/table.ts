import { formatColumns } from '../../output.js';
import type { ReceiverRow } from '../send.js';
import type { BoxState } from './http.js';

/** One line of the netboot session's final table: what happened to each listed box. */
export interface BoxRow {
  name: string;
  mac: string;
  powered: boolean;
  netbooted: boolean;
  /** The multicast as its receiver saw it: complete, dropped (repaired by unicast), or none. */
  received: 'complete' | 'dropped' | 'no';
  repairedChunks: number;
  verified: boolean;
  /** It network-booted again after it verified and was sent to its local disk. */
  bootedFromDisk: boolean;
  /** Why it did not end booted from its disk (empty when it did). */
  problem: string;
}

export function boxRows(
  boxes: readonly BoxState[],
  rows: readonly ReceiverRow[],
  powered: ReadonlySet<string>,
): BoxRow[] {
  return boxes.map((b) => {
    const r = rows.find((x) => x.name === b.machine.name);
    const verified = r?.result === 'verified';
    const problem = !powered.has(b.machine.name)
      ? 'not powered'
      : b.failed
        ? b.failed.startsWith('power cycle')
          ? b.failed
          : `rescue failed: ${b.failed}`
        : !b.netbooted
          ? 'did not network-boot the rescue'
          : !r
            ? 'no report from its rescue (it refused the session, or its receive failed: see its console)'
            : !verified
              ? `${r.result}${r.message ? `: ${r.message}` : ''}`
              : !b.sentToDisk
                ? 'did not come back to boot from its disk'
                : '';
    return {
      name: b.machine.name,
      mac: b.machine.mac,
      powered: powered.has(b.machine.name),
      netbooted: b.netbooted,
      received: r ? r.multicast : 'no',
      repairedChunks: r?.repairedChunks ?? 0,
      verified,
      bootedFromDisk: b.sentToDisk,
      problem,
    };
  });
}

export function formatBoxTable(rows: readonly BoxRow[]): string {
  const yes = (v: boolean) => (v ? 'yes' : 'no');
  const head = ['box', 'mac', 'powered', 'netbooted', 'received', 'repaired', 'verified', 'booted from disk'];
  const body = rows.map((r) => [
    r.name,
    r.mac,
    yes(r.powered),
    yes(r.netbooted),
    r.received,
    String(r.repairedChunks),
    yes(r.verified),
    yes(r.bootedFromDisk),
  ]);
  return formatColumns(head, body);
}
