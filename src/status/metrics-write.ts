import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { catalogView, gatherHistoryStatus, verifyCatalog } from '../history/index.js';
import { gatherStatus } from './status.js';
import { writeFileAtomic } from '../system/atomic-file.js';
import { VERSION } from '../version.js';
import { type HistoryTargetMetrics, renderMetrics } from './metrics-render.js';

const saidMissing = new Set<string>();

/**
 * The one place the metrics file is written: after every job (cli/main.ts) and after each of the
 * daemon's health checks (its afterCheck hook, wired in cli/main.ts). Never throws: monitoring must
 * not turn a good backup into a failed command. Returns the file written, or null.
 */
export async function writeMetrics(ctx: Context): Promise<string | null> {
  const file = ctx.config.metrics.textfile;
  // A dry run changes nothing, the metrics file included.
  if (file === null || ctx.dryRun) return null;
  const dir = path.dirname(file);
  if (!existsSync(dir)) {
    // No node_exporter here (its package makes the folder): one line, not an error, and once per
    // process (the daemon checks every minute).
    if (!saidMissing.has(dir))
      ctx.log.info(`metrics: ${dir} does not exist; no metrics file written (metrics.textfile)`);
    saidMissing.add(dir);
    return null;
  }
  try {
    const text = renderMetrics({
      status: await gatherStatus(ctx),
      history: historyTargets(ctx),
      version: VERSION,
      now: ctx.clock.now(),
    });
    // The temporary name does not end in .prom: node_exporter never reads half a file.
    writeFileAtomic(ctx.writes, file, text, { mode: 0o644, dirMode: 0o755 });
    return file;
  } catch (err) {
    ctx.log.warn(`metrics: ${file} not written: ${(err as Error).message}`);
    return null;
  }
}

/**
 * Each history target's newest copy, from `history status`'s own data (targets.json) and the
 * catalog's times. No history in use: none.
 */
function historyTargets(ctx: Context): HistoryTargetMetrics[] {
  const h = ctx.config.history;
  if (!h.enabled || h.targets.length === 0) return [];
  const status = gatherHistoryStatus(ctx);
  let times = new Map<string, string>();
  try {
    times = new Map(
      catalogView(verifyCatalog(h.dir, h.publicKey).entries).map((v) => [v.fingerprint, v.time]),
    );
  } catch {
    // A catalog that does not verify: no age (history status says why), the bytes behind still count.
  }
  return status.targets.map((t) => {
    const time = t.newest ? times.get(t.newest) : undefined;
    return {
      target: t.name,
      newestTime: time ? new Date(time) : null,
      bytesBehind: t.bytesBehind,
      lastSuccess: t.lastSuccess ? new Date(t.lastSuccess) : null,
    };
  });
}
