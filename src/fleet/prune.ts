import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eachLimited } from '../system/each-limited.js';
import { formatBytes } from '../config/size.js';
import type { Context } from '../context.js';
import { InterruptedError, NotFoundError, UsageError, VerifyError } from '../errors.js';
import {
  BOX_NAME,
  boxTarget,
  CATALOG_FILES,
  openStore,
  type RepoFile,
  type Store,
  type VerifiedCatalog,
  verifyCatalog,
} from '../history/index.js';
import type { CommandLineConfirm } from '../output.js';
import type { Plan } from '../plan/plan.js';
import { progressFor } from '../plan/progress.js';
import { runPlan } from '../plan/run.js';
import { fleetHeadsFile, readFleetHeads } from '../state/fleet-heads.js';
import { byKind, type PruneSelection, selectPrune } from './prune-select.js';
import { readPinnedKey } from './status.js';
import { extendsHead } from './verdict.js';

/** Deletes in flight (one request each: RGW 16 refuses DeleteObjects' CRC32). */
const DELETE_LANES = 4;
/** Names shown per kind in the plan (the --json report lists them all). */
const SHOWN = 5;

export interface FleetPruneOptions {
  target: string;
  box: string;
  keysDir: string;
  confirm: CommandLineConfirm;
}

export interface FleetPruneReport {
  target: string;
  box: string;
  /** The entries of the verified catalog, and the files its newest record lists. */
  catalogEntries: number;
  listed: number;
  /** Removed (the dry run: would be), in the order they went. */
  removed: string[];
  removedBytes: number;
  /** Held and listed: kept. */
  kept: number;
  /** Held, listed by no record of the catalog: left. */
  unknown: string[];
  applied: boolean;
}

/**
 * `fleet prune`: on the vendor's machine, whose config entry for the target holds the credential
 * that may delete (never a box's). The box's catalog is verified against its pinned key and must
 * extend the head `fleet status` last verified here; then exactly the files its records show the
 * box dropped are removed, snapshots first, then index, then data. No restic runs: the
 * repository's password is the box's, and a repack would write files the box does not know.
 */
export async function runFleetPrune(ctx: Context, opts: FleetPruneOptions): Promise<FleetPruneReport> {
  const target = ctx.config.history.targets.find((t) => t.name === opts.target);
  if (!target)
    throw new NotFoundError(`no history target named ${opts.target}`, {
      hint: 'zshield history target list shows the targets',
    });
  if (!BOX_NAME.test(opts.box))
    throw new UsageError(`--box ${opts.box}: not a box's folder name (letters, digits, . _ -)`);
  if (!existsSync(opts.keysDir) || !statSync(opts.keysDir).isDirectory())
    throw new NotFoundError(`keys folder ${opts.keysDir} not found`, {
      hint: "--keys names the folder of the boxes' pinned catalog keys (HOST.pub)",
    });
  const store = openStore(ctx, ctx.config.history, boxTarget(target, opts.box));
  try {
    const { held, catalog } = await readBox(ctx, store, opts);
    const sel = selectPrune(catalog.entries, held);
    const report: FleetPruneReport = {
      target: target.name,
      box: opts.box,
      catalogEntries: catalog.entries.length,
      listed: sel.listed,
      removed: sel.remove.map((f) => f.name),
      removedBytes: sel.remove.reduce((n, f) => n + f.size, 0),
      kept: sel.kept,
      unknown: sel.unknown.map((f) => f.name),
      applied: false,
    };
    const removed: string[] = [];
    const plan = prunePlan(ctx, store, opts.box, sel, removed);
    const run = await runPlan(ctx, plan, {
      confirm: plan.steps.length ? opts.confirm : 'none',
      what: `The prune of box ${opts.box} on ${target.name}`,
      show: 'out',
    });
    if (!run.applied) return report;
    if (plan.steps.length)
      ctx.out.print(
        `fleet prune: ${removed.length} file(s) of box ${opts.box} removed from ${store.label} (${formatBytes(report.removedBytes)})`,
      );
    else ctx.out.print(`fleet prune: box ${opts.box} on ${target.name} holds nothing to remove`);
    return { ...report, removed, applied: true };
  } finally {
    store.close();
  }
}

/** The box's files there and its catalog, verified (exit 10 when it does not, or was rewound). */
async function readBox(
  ctx: Context,
  store: Store,
  opts: FleetPruneOptions,
): Promise<{ held: RepoFile[]; catalog: VerifiedCatalog }> {
  const held = await store.list();
  const scratch = mkdtempSync(path.join(tmpdir(), 'zshield-fleet-prune-'));
  try {
    let fetched = 0;
    for (const name of CATALOG_FILES) if (await store.fetchCatalog(name, path.join(scratch, name))) fetched++;
    if (!fetched && !held.length)
      throw new NotFoundError(`box ${opts.box} has nothing on ${store.label}`, {
        hint: 'zshield fleet status --target T lists the boxes found there',
      });
    const key = readPinnedKey(opts.keysDir, opts.box);
    if (key === null)
      throw new VerifyError(`box ${opts.box}: no pinned key ${path.join(opts.keysDir, `${opts.box}.pub`)}`, {
        hint: "file the box's catalog public key there (zshield history status on the box shows it)",
      });
    if (!fetched) throw new VerifyError(`box ${opts.box}: no catalog on ${store.label}: nothing is removed`);
    const catalog = verifyCatalog(scratch, key);
    const heads = readFleetHeads(ctx.config.paths.stateDir, opts.target);
    const seen = heads.boxes[opts.box];
    if (seen && !extendsHead(catalog, seen))
      throw new VerifyError(
        `box ${opts.box}: its catalog does not extend the head verified on ${seen.verifiedAt} (${seen.count} entries): its history was rewritten; nothing is removed`,
        {
          hint: `once the box's reset is known to be legitimate, remove its entry from ${fleetHeadsFile(ctx.config.paths.stateDir, opts.target)}`,
        },
      );
    return { held, catalog };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function prunePlan(ctx: Context, store: Store, box: string, sel: PruneSelection, removed: string[]): Plan {
  const groups = byKind(sel.remove);
  const total = sel.remove.length;
  const bytes = sel.remove.reduce((n, f) => n + f.size, 0);
  const notes = [
    `box ${box}: catalog verified against its pinned key; its newest record lists ${sel.listed} file(s), ${sel.kept} of them held there`,
    ...groups.map(
      (g) =>
        `${g.kind}: ${g.files.length} file(s) the box no longer has (${formatBytes(g.files.reduce((n, f) => n + f.size, 0))}): ${g.files
          .slice(0, SHOWN)
          .map((f) => f.name)
          .join(', ')}${g.files.length > SHOWN ? ', ...' : ''}`,
    ),
    ...(sel.unknown.length
      ? [
          `left: ${sel.unknown.length} file(s) no record of its catalog lists (a replication in flight, or not the box's): ${sel.unknown
            .slice(0, SHOWN)
            .map((f) => f.name)
            .join(', ')}${sel.unknown.length > SHOWN ? ', ...' : ''}`,
        ]
      : []),
    'its catalog/ is never touched; no restic prune or repack runs on the target',
  ];
  let done = 0;
  return {
    title: `Remove from ${store.label} the ${total} file(s) box ${box}'s repository no longer has (${formatBytes(bytes)})`,
    notes,
    steps: groups.map((g) => ({
      title: `remove ${g.files.length} ${g.kind} file(s)`,
      edit: {
        files: [`${store.label}: repo/${g.kind}/`],
        apply: async () => {
          const progress = progressFor(ctx, `fleet prune ${box}`);
          try {
            await eachLimited(
              g.files,
              DELETE_LANES,
              async (f) => {
                await store.remove(f.name);
                removed.push(f.name);
                progress.update({ fraction: ++done / total, text: `${done} of ${total} file(s) removed` });
              },
              ctx.signal,
            );
          } finally {
            progress.done();
          }
          if (ctx.signal.aborted)
            throw new InterruptedError(`fleet prune: interrupted after ${done} file(s)`);
        },
      },
    })),
  };
}
