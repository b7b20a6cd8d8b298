import { targetWhere } from '../config/history.js';
import type { Context } from '../context.js';
import { RemoteError, VerifyError, type ZshieldError } from '../errors.js';
import { type CatalogView, catalogView, verifyCatalog } from './catalog.js';
import { emptyTargetState, readState, type TargetState } from './state.js';
import { formatBytes } from '../config/size.js';

export interface HistoryStatus {
  dir: string;
  publicKey: string | null;
  catalog: {
    ok: boolean;
    entries: number;
    backups: number;
    newest: string | null;
    newestTime: string | null;
    error: string | null;
  };
  maxLagHours: number;
  targets: ({
    name: string;
    where: string;
    /** Hours since the oldest cataloged backup this target lacks was taken (0: it has them all). */
    lagHours: number;
    /** Cataloged backups it lacks. */
    lacks: number;
  } & TargetState)[];
}

/** `history status`: the catalog (checked) and each target's state, from local files only. */
export function gatherHistoryStatus(ctx: Context): HistoryStatus {
  const h = ctx.config.history;
  const state = readState(h.dir);
  let catalog: HistoryStatus['catalog'];
  let view: CatalogView[] = [];
  try {
    const c = verifyCatalog(h.dir, h.publicKey);
    view = catalogView(c.entries).filter((v) => !v.forgotten);
    catalog = {
      ok: true,
      entries: c.entries.length,
      backups: view.length,
      newest: view.at(-1)?.fingerprint ?? null,
      newestTime: view.at(-1)?.time ?? null,
      error: null,
    };
  } catch (err) {
    catalog = {
      ok: false,
      entries: 0,
      backups: 0,
      newest: null,
      newestTime: null,
      error: (err as Error).message,
    };
  }
  const now = ctx.clock.now().getTime();
  return {
    dir: h.dir,
    publicKey: h.publicKey,
    catalog,
    maxLagHours: h.maxLagHours,
    targets: h.targets.map((t) => {
      const s = state[t.name] ?? emptyTargetState();
      const lacking = view.filter((v) => !s.snapshots.includes(v.fingerprint));
      const oldest = lacking.length ? Math.min(...lacking.map((v) => Date.parse(v.time))) : now;
      return {
        name: t.name,
        where: t.type === 's3' ? targetWhere(t) : `${t.user}@${t.server}:${t.port}:${t.directory}`,
        lagHours: Math.max(0, (now - oldest) / 3_600_000),
        lacks: lacking.length,
        ...s,
      };
    }),
  };
}

/** What makes `history status` fail: an unverified catalog (exit 10), a target too far behind (exit 11). */
export function statusFailure(s: HistoryStatus): ZshieldError | null {
  if (!s.catalog.ok)
    return new VerifyError(`history: the catalog does not verify: ${s.catalog.error}`, {
      hint: 'zshield catalog verify names the fault; a catalog from a target can be checked with zshield catalog verify --file-dir DIR',
    });
  const late = s.targets.filter((t) => t.lagHours > s.maxLagHours);
  if (late.length)
    return new RemoteError(
      `history: ${late.map((t) => `${t.name} is ${hours(t.lagHours)} h behind (lacks ${t.lacks} backup(s))`).join('; ')}; history.maxLagHours is ${s.maxLagHours}`,
      { hint: 'zshield history replicate sends what they lack' },
    );
  return null;
}

export function formatHistoryStatus(s: HistoryStatus): string {
  const lines = [
    `history: ${s.dir}`,
    `  catalog public key: ${s.publicKey ?? 'not set (zshield history init)'}`,
    s.catalog.ok
      ? `  catalog: ${s.catalog.backups} backup(s), ${s.catalog.entries} entries, verified; newest ${s.catalog.newest ?? 'none'}`
      : `  catalog: NOT VERIFIED: ${s.catalog.error}`,
  ];
  if (!s.targets.length) lines.push('  targets: none configured');
  for (const t of s.targets) {
    lines.push(`  target ${t.name} (${t.where})`);
    lines.push(`    newest there: ${t.newest ?? 'none'}`);
    lines.push(
      `    behind: ${formatBytes(t.bytesBehind)}; lag: ${t.lacks ? `${hours(t.lagHours)} h (lacks ${t.lacks} backup(s))` : 'none'}; last success: ${t.lastSuccess ?? 'never'}; last verified: ${t.lastVerified ?? 'never'}`,
    );
    if (t.lastError) lines.push(`    last error: ${t.lastError}`);
  }
  return lines.join('\n');
}

/** Hours for people: three significant decimals at most. */
export const hours = (h: number) => String(Number(h.toFixed(3)));
