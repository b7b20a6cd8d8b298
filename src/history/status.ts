import type { Context } from '../context.js';
import { formatBytes } from '../remote/transfer.js';
import { catalogView, verifyCatalog } from './catalog.js';
import { emptyTargetState, readState, type TargetState } from './state.js';

export interface HistoryStatus {
  dir: string;
  publicKey: string | null;
  catalog: { ok: boolean; entries: number; backups: number; newest: string | null; error: string | null };
  targets: ({ name: string; where: string } & TargetState)[];
}

/** `history status`: the catalog (checked) and each target's state, from local files only. */
export function gatherHistoryStatus(ctx: Context): HistoryStatus {
  const h = ctx.config.history;
  const state = readState(h.dir);
  let catalog: HistoryStatus['catalog'];
  try {
    const c = verifyCatalog(h.dir, h.publicKey);
    const view = catalogView(c.entries).filter((v) => !v.forgotten);
    catalog = {
      ok: true,
      entries: c.entries.length,
      backups: view.length,
      newest: view.at(-1)?.fingerprint ?? null,
      error: null,
    };
  } catch (err) {
    catalog = { ok: false, entries: 0, backups: 0, newest: null, error: (err as Error).message };
  }
  return {
    dir: h.dir,
    publicKey: h.publicKey,
    catalog,
    targets: h.targets.map((t) => ({
      name: t.name,
      where: `${t.user}@${t.server}:${t.port}:${t.directory}`,
      ...(state[t.name] ?? emptyTargetState()),
    })),
  };
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
      `    behind: ${formatBytes(t.bytesBehind)}; last success: ${t.lastSuccess ?? 'never'}; last verified: ${t.lastVerified ?? 'never'}`,
    );
    if (t.lastError) lines.push(`    last error: ${t.lastError}`);
  }
  return lines.join('\n');
}
