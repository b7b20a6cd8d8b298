// `history verify` and the rotating check of a replication: each target's files hashed where they
// are stored and compared with the hash their names say; damage repaired by sending again.
import path from 'node:path';
import type { TargetConfig } from '../config/history.js';
import { formatBytes } from '../config/size.js';
import type { Context } from '../context.js';
import { RemoteError, VerifyError } from '../errors.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { expectedHash, listLocalRepo, type RepoFile, type Store, sha256File } from './repo-store.js';
import { FILES_IN_FLIGHT, inKindOrder } from './kind-order.js';
import { planReplication, verificationShare } from './replication-plan.js';
import { repoDir } from './repo.js';
import { emptyTargetState, readState, stateFile, type TargetState, updateTarget } from './state.js';
import { openStore } from './stores.js';
import { selectTargets } from './target-select.js';

/**
 * Hash each file where it is stored and compare with the hash its name says (config: with the
 * local one). With `repair`, a damaged file is sent again from the local repository.
 */
export async function verifyFiles(
  ctx: Context,
  store: Store,
  repo: string,
  files: readonly RepoFile[],
  repair: boolean,
): Promise<string[]> {
  const damaged: string[] = [];
  // Several at a time (one exec checks those asked together), a kind after the one before: a
  // repaired data file is named again before any index that points into it.
  await inKindOrder(
    files,
    store.filesInFlight ?? FILES_IN_FLIGHT,
    async (f, ready) => {
      const local = path.join(repo, ...f.name.split('/'));
      const [want, got] = await Promise.all([expectedHash(f.name) ?? sha256File(local), store.sha256(f)]);
      if (got === want) return;
      damaged.push(f.name);
      ctx.log.error(`history: ${store.label}: ${f.name} is damaged (SHA-256 ${got})`);
      if (repair) {
        await ready();
        if (!store.appendOnly) await store.remove(f.name);
        await store.put(local, f, { replace: true, ready });
        ctx.log.warn(`history: ${store.label}: ${f.name} sent again from the local repository`);
      }
    },
    ctx.signal,
  );
  // In the order of the files, whichever check ended first.
  return files.map((f) => f.name).filter((n) => damaged.includes(n));
}

export interface VerifyReport {
  target: string;
  checked: number;
  /** Files whose hash or size is wrong, or that were sent once and are gone: each with why. */
  damaged: string[];
  /** Files the target lacks that were never sent (written here since its last replication). */
  missing: number;
  /** Bytes the target lacks or holds wrongly (what `history status` shows as behind). */
  bytesBehind: number;
  error: string | null;
}

/**
 * `history verify`: check the targets' files by hash (reading only), then record where the
 * rotating check goes on and what each target lacks. Damage (a wrong hash or size, a file gone
 * that was sent): VerifyError, exit 10; a target unreachable: RemoteError.
 */
export async function runTargetVerify(
  ctx: Context,
  opts: { only?: string[]; all?: boolean },
): Promise<VerifyReport[]> {
  const h = ctx.config.history;
  const targets = selectTargets(h, opts.only);
  const out: VerifyReport[] = [];
  const cursors = new Map<string, number>();
  const plan: Plan = {
    title: `Verify ${opts.all ? 'every file' : `${h.verifyPercent}% of the files`} of ${targets.map((t) => t.name).join(', ')} by hash`,
    notes: ['reads only; damaged files are repaired by zshield history replicate --verify-all'],
    checks: [
      {
        title: "list each target and hash this run's share of its files",
        run: async () => {
          const local = listLocalRepo(repoDir(h));
          const state = readState(h.dir);
          for (const t of targets) {
            const r = await verifyTarget(
              ctx,
              t,
              local,
              state[t.name] ?? emptyTargetState(),
              Boolean(opts.all),
            );
            out.push(r.report);
            if (r.next !== null) cursors.set(t.name, r.next);
          }
        },
      },
    ],
    steps: [
      {
        title: "record each target's result (where the rotating check goes on, bytes behind)",
        edit: {
          files: [stateFile(h.dir)],
          apply: () => {
            const now = ctx.clock.now().toISOString();
            for (const r of out.filter((x) => x.error === null))
              updateTarget(ctx.writes, h.dir, r.target, (s) => {
                s.bytesBehind = r.bytesBehind;
                const next = cursors.get(r.target);
                if (next !== undefined) {
                  s.verifyCursor = next;
                  s.lastVerified = now;
                }
              });
          },
        },
      },
    ],
  };
  await runPlan(ctx, plan, { confirm: 'none', show: 'none' });
  for (const r of out)
    ctx.out.print(
      r.error
        ? `  ${r.target}: not checked: ${r.error}`
        : `  ${r.target}: ${r.checked} file(s) checked, ${r.damaged.length} damaged${r.damaged.length ? ` (${r.damaged.join(', ')})` : ''}, ${r.missing} not yet sent; behind ${formatBytes(r.bytesBehind)}`,
    );
  const bad = out.filter((r) => r.damaged.length);
  if (bad.length)
    throw new VerifyError(
      `history: damaged files on ${bad.map((r) => `${r.target} (${r.damaged.length}: ${r.damaged[0]}${r.damaged.length > 1 ? ', …' : ''})`).join(', ')}`,
      { hint: 'zshield history replicate --verify-all sends them again from the local repository' },
    );
  const down = out.filter((r) => r.error);
  if (down.length) throw new RemoteError(`history: ${down.map((r) => `${r.target}: ${r.error}`).join('; ')}`);
  return out;
}

/**
 * The last line of a `history verify` that found no damage: how many files were checked and found
 * intact, and, counted per target, what is not there yet (written here since its last
 * replication): "intact" never stands for files nobody looked at.
 */
export function verifySummary(reports: readonly VerifyReport[]): string {
  const checked = reports.reduce((n, r) => n + r.checked, 0);
  const behind = reports.filter((r) => r.missing > 0);
  const on = `${reports.length} target(s)`;
  if (!behind.length)
    return `history: every file checked is intact (${checked} file(s) on ${on}); nothing left to send`;
  return `history: the ${checked} file(s) checked on ${on} are intact; not yet sent: ${behind
    .map((r) => `${r.target} lacks ${r.missing} file(s) (${formatBytes(r.bytesBehind)})`)
    .join(', ')}; zshield history replicate sends them`;
}

async function verifyTarget(
  ctx: Context,
  t: TargetConfig,
  local: readonly RepoFile[],
  state: TargetState,
  all: boolean,
): Promise<{ report: VerifyReport; next: number | null }> {
  const h = ctx.config.history;
  const store = openStore(ctx, h, t);
  try {
    const plan = planReplication(local, await store.list(), state.lastSuccess);
    const share = all
      ? { files: plan.present, next: 0 }
      : verificationShare(plan.present, h.verifyPercent, state.verifyCursor);
    const hashed = await verifyFiles(ctx, store, repoDir(h), share.files, false);
    for (const d of plan.damaged)
      ctx.log.error(`history: ${store.label}: ${d.file.name} is damaged (${d.why})`);
    const damaged = [
      ...plan.damaged.map((d) => `${d.file.name}: ${d.why}`),
      ...hashed.map((n) => `${n}: wrong SHA-256`),
    ];
    return {
      report: {
        target: t.name,
        checked: share.files.length + plan.damaged.length,
        damaged,
        missing: plan.uploads.length - plan.damaged.length,
        bytesBehind:
          plan.bytesBehind +
          share.files.filter((f) => hashed.includes(f.name)).reduce((n, f) => n + f.size, 0),
        error: null,
      },
      next: damaged.length ? null : share.next,
    };
  } catch (err) {
    return {
      report: {
        target: t.name,
        checked: 0,
        damaged: [],
        missing: 0,
        bytesBehind: 0,
        error: (err as Error).message,
      },
      next: null,
    };
  } finally {
    store.close();
  }
}
