import type { Config } from '../config/schema.js';
import type { LvInfo } from '../system/lvm.js';

export type HealthLevel = 'ok' | 'warn' | 'error';

export interface Health {
  level: HealthLevel;
  message: string;
}

/**
 * Judge the restore point. A snapshot's copy-on-write store fills as lv-root changes; at 100 % the
 * kernel invalidates it ("Invalidating snapshot", lv_attr[4] = I) and it can no longer be merged.
 */
export function snapshotHealth(snap: LvInfo | undefined, config: Config): Health {
  const name = `${config.lvm.vg}/${config.lvm.snapshot}`;
  if (!snap) {
    return { level: 'error', message: `no restore point: ${name} does not exist; run \`zshield backup\`` };
  }
  if (snap.kind !== 'snapshot') {
    return { level: 'error', message: `${name} is not a snapshot` };
  }
  if (snap.invalid) {
    return {
      level: 'error',
      message: `${name} is INVALID (it overflowed): it cannot be restored; run \`zshield backup\` to make a new restore point, and raise snapshot.size`,
    };
  }
  if (snap.merging) {
    return {
      level: 'warn',
      message: `${name} is being merged into ${config.lvm.rootLv} (a restore is pending)`,
    };
  }
  const pct = snap.snapPercent;
  if (pct === null || Number.isNaN(pct)) {
    return { level: 'warn', message: `${name} is not active: its fill level is unknown` };
  }
  const grow = `grow it (lvextend -L +1G ${name}) or take a new backup (zshield backup)`;
  if (pct >= config.snapshot.errorPercent) {
    return {
      level: 'error',
      message: `${name} is ${pct.toFixed(1)}% full and becomes invalid at 100%: ${grow} now`,
    };
  }
  if (pct >= config.snapshot.warnPercent) {
    return { level: 'warn', message: `${name} is ${pct.toFixed(1)}% full: ${grow} before it overflows` };
  }
  return { level: 'ok', message: `${name} is ${pct.toFixed(1)}% full` };
}
