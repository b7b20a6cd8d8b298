import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatBytes } from '../config/size.js';
import type { Context } from '../context.js';
import { InterruptedError, NotFoundError, VerifyError, ZshieldError } from '../errors.js';
import {
  BOX_NAME,
  boxTarget,
  CATALOG_FILES,
  listBoxes,
  openStore,
  type Store,
  verifyCatalog,
} from '../history/index.js';
import { formatColumns } from '../output.js';
import { progressFor } from '../plan/progress.js';
import { readFleetHeads, writeFleetHeads } from '../state/fleet-heads.js';
import { type BoxFacts, type BoxResult, judgeBox, type RememberedHead } from './verdict.js';

/** Boxes read at once. */
const READ_LANES = 4;

export interface FleetStatusOptions {
  target: string;
  keysDir: string;
  maxAgeHours: number;
}

export interface FleetReport {
  target: string;
  checkedAt: string;
  maxAgeHours: number;
  boxes: BoxResult[];
  /** The boxes that need attention, by name. */
  failing: string[];
}

/**
 * `fleet status`: every box found on one target, read only (nothing is written there), judged by
 * verdict.ts; the heads that verified are remembered on this machine (not in a dry run).
 */
export async function runFleetStatus(ctx: Context, opts: FleetStatusOptions): Promise<FleetReport> {
  const h = ctx.config.history;
  const target = h.targets.find((t) => t.name === opts.target);
  if (!target)
    throw new NotFoundError(`no history target named ${opts.target}`, {
      hint: 'zshield history target list shows the targets',
    });
  if (!existsSync(opts.keysDir) || !statSync(opts.keysDir).isDirectory())
    throw new NotFoundError(`keys folder ${opts.keysDir} not found`, {
      hint: "--keys names the folder of the boxes' pinned catalog keys (HOST.pub, as each box's zshield history status shows it)",
    });
  const boxes = await listBoxes(ctx, h, target);
  const heads = readFleetHeads(ctx.config.paths.stateDir, target.name);
  const now = ctx.clock.now();
  const progress = progressFor(ctx, 'fleet status');
  const results: BoxResult[] = new Array(boxes.length);
  const scratch = mkdtempSync(path.join(tmpdir(), 'zshield-fleet-'));
  let done = 0;
  try {
    // A few boxes at a time: each is a connection and a listing, mostly waiting on the store.
    let next = 0;
    const lane = async () => {
      for (let i = next++; i < boxes.length && !ctx.signal.aborted; i = next++) {
        const box = boxes[i]!;
        const facts = await readBox(ctx, box, boxTarget(target, box), opts.keysDir, path.join(scratch, box));
        facts.remembered = heads.boxes[box] ?? null;
        results[i] = judgeBox(facts, now, opts.maxAgeHours);
        done++;
        progress.update({
          fraction: done / boxes.length,
          text: `${done} of ${boxes.length} box(es) read (${box})`,
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(READ_LANES, boxes.length) }, lane));
    progress.update({ fraction: 1, text: `${boxes.length} box(es) read`, final: true });
  } finally {
    progress.done();
    rmSync(scratch, { recursive: true, force: true });
  }
  if (ctx.signal.aborted) throw new InterruptedError('fleet status: interrupted');
  const report: FleetReport = {
    target: target.name,
    checkedAt: now.toISOString(),
    maxAgeHours: opts.maxAgeHours,
    boxes: results,
    failing: results.filter((r) => !r.ok).map((r) => r.box),
  };
  if (!ctx.dryRun) {
    // Only heads that verified and continue the one seen before replace it: a rewritten history
    // stays reported until someone decides about it.
    let changed = false;
    for (const r of results) {
      const next = rememberHead(r, heads.boxes[r.box] ?? null, report.checkedAt);
      if (next !== (heads.boxes[r.box] ?? null) && next) {
        heads.boxes[r.box] = next;
        changed = true;
      }
    }
    if (changed) writeFleetHeads(ctx.writes, ctx.config.paths.stateDir, target.name, heads);
  }
  if (!boxes.length) ctx.log.warn(`fleet status: no box found on target ${target.name}`);
  return report;
}

/** The failure a report with failing boxes ends in (exit 10, the report as its result), or null. */
export function fleetFailure(r: FleetReport, headsFile: string): VerifyError | null {
  const failing = r.boxes.filter((b) => !b.ok);
  if (!failing.length) return null;
  const which = failing.map((b) => `${b.box} (${b.problems.map((p) => p.kind).join(', ')})`).join(', ');
  const rewound = failing.some((b) => b.problems.some((p) => p.kind === 'rewound'));
  return new VerifyError(
    `fleet status: ${failing.length} of ${r.boxes.length} box(es) on ${r.target} need attention: ${which}`,
    {
      hint: rewound
        ? `a rewritten catalog may be a stolen box's; once a box's reset is known to be legitimate, remove its entry from ${headsFile}`
        : 'the report says what is wrong with each box; a box replicates again at its next daily run (zshield history replicate on the box)',
      result: r,
    },
  );
}

function rememberHead(r: BoxResult, before: RememberedHead | null, at: string): RememberedHead | null {
  const untrusted = r.problems.some((p) => ['unreadable', 'key', 'catalog', 'rewound'].includes(p.kind));
  if (!r.head || untrusted) return before;
  if (before && before.count === r.head.count && before.last === r.head.last) return before;
  return { count: r.head.count, last: r.head.last, verifiedAt: at };
}

/** Everything judgeBox needs of one box; a failure to read is a fact about the box, not a throw. */
async function readBox(
  ctx: Context,
  box: string,
  t: Parameters<typeof openStore>[2],
  keysDir: string,
  scratch: string,
): Promise<BoxFacts> {
  const facts: BoxFacts = {
    box,
    publicKey: readPinnedKey(keysDir, box),
    catalog: null,
    files: [],
    catalogBytes: 0,
    remembered: null,
  };
  let store: Store | null = null;
  try {
    store = openStore(ctx, ctx.config.history, t);
    facts.files = await store.list();
    let fetched = 0;
    const dir = path.join(scratch, 'catalog');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of CATALOG_FILES)
      if (await store.fetchCatalog(name, path.join(dir, name))) {
        fetched++;
        facts.catalogBytes += statSync(path.join(dir, name)).size;
      }
    if (fetched > 0 && facts.publicKey !== null) {
      try {
        facts.catalog = { verified: verifyCatalog(dir, facts.publicKey) };
      } catch (err) {
        if (!(err instanceof ZshieldError)) throw err;
        facts.catalog = { error: err.message };
      }
    }
  } catch (err) {
    if (ctx.signal.aborted || !(err instanceof ZshieldError)) throw err;
    facts.unreadable = err.message;
  } finally {
    store?.close();
  }
  return facts;
}

/** `<keys>/<box>.pub`, trimmed; null when there is none. */
export function readPinnedKey(keysDir: string, box: string): string | null {
  if (!BOX_NAME.test(box)) return null;
  const file = path.join(keysDir, `${box}.pub`);
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || null : null;
}

export function formatFleetReport(r: FleetReport): string {
  const rows = r.boxes.map((b) => [
    b.box,
    b.ok ? 'ok' : 'FAIL',
    b.newest ? b.newest.fingerprint.slice(0, 12) : '-',
    b.newest ? `${b.newest.ageHours} h` : '-',
    String(b.backups),
    b.files.listed === null ? `${b.files.held}` : `${b.files.held}/${b.files.listed}`,
    formatBytes(b.bytes),
    b.problems.map((p) => p.message).join('; '),
  ]);
  const table = formatColumns(
    ['box', 'verdict', 'newest', 'age', 'backups', 'files', 'bytes', 'problems'],
    rows,
  );
  const total = r.boxes.reduce((n, b) => n + b.bytes, 0);
  return `${table}\nfleet status: ${r.boxes.length} box(es) on ${r.target}, ${r.failing.length} failing, ${formatBytes(total)} held (max age ${r.maxAgeHours} h)`;
}
