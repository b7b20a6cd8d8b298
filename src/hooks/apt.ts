import { constants as fsConstants, existsSync, readFileSync, statSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Config } from '../config/schema.js';
import type { Context } from '../context.js';
import { CommandError, NotFoundError, RefusedError } from '../errors.js';
import type { Plan } from '../plan/plan.js';
import { type RunPlanOptions, runPlan } from '../plan/run.js';
import { labelOf } from '../restore-point/index.js';
import { probeVg } from '../system/lvm.js';
import { namesOf } from '../names/snapshots.js';

/**
 * The apt hook (DPkg::Pre-Invoke, rc/zshield.apt.conf): a restore point before dpkg changes
 * anything. apt runs the hook before its dpkg calls, so an apt run that changes no package
 * (apt-get update) never reaches here; an apt run that calls dpkg twice meets the interval rule.
 *
 * The decision is a pure function of what the hook finds (`decideAptHook`), so that each rule is
 * a unit test; `probeAptFacts` finds it; the backup itself is `zshield backup --reason
 * pre-upgrade` in a child process, so that the time limit can stop it (a killed backup leaves a
 * rotation that the next writer repairs, never a box without a restore point).
 */

/** What the hook finds on the box, before deciding. */
export interface AptHookFacts {
  /** / is not PID 1's root: a chroot (an image built with the package inside, golden prepare). */
  chroot: boolean;
  /** A container's name (systemd-detect-virt's word, or a marker file), or null. */
  container: string | null;
  /** / is mounted read-only: the golden medium (no system to back up, no room for a snapshot). */
  rootReadOnly: boolean;
  /** When the restore point was taken (its zshield_time= tag), when one exists and is valid. */
  restorePointTime: Date | null;
}

export type AptHookDecision =
  | { action: 'skip'; why: string }
  | { action: 'backup'; why: string; waitSeconds: number; timeoutSeconds: number };

/** The rules, in order: the first that says no wins. */
export function decideAptHook(facts: AptHookFacts, config: Config, now: Date): AptHookDecision {
  const h = config.hooks;
  if (!h.aptBackup) return { action: 'skip', why: 'hooks.aptBackup is false' };
  if (facts.chroot) return { action: 'skip', why: 'running in a chroot (no system of its own to back up)' };
  if (facts.container) return { action: 'skip', why: `running in a container (${facts.container})` };
  if (facts.rootReadOnly)
    return { action: 'skip', why: 'the root is read-only (the golden medium): nothing to back up' };
  const disk = config.disks.system;
  if (disk.serial === null && disk.wwn === null)
    return {
      action: 'skip',
      why: 'the config names no system disk (disks.system.serial or .wwn): not set up yet',
    };
  if (facts.restorePointTime && h.aptMinIntervalMinutes > 0) {
    const ageMs = now.getTime() - facts.restorePointTime.getTime();
    // A restore point "from the future" (a clock moved back) is not a reason to skip.
    if (ageMs >= 0 && ageMs < h.aptMinIntervalMinutes * 60_000) {
      return {
        action: 'skip',
        why: `the restore point is ${Math.round(ageMs / 60_000)} min old, younger than hooks.aptMinIntervalMinutes (${h.aptMinIntervalMinutes})`,
      };
    }
  }
  return {
    action: 'backup',
    why: facts.restorePointTime
      ? `the restore point is from ${facts.restorePointTime.toISOString()}`
      : 'there is no valid restore point',
    // The wait for another zshield's lock is part of the time limit, not on top of it.
    waitSeconds: Math.max(1, h.aptTimeoutSeconds - 30),
    timeoutSeconds: h.aptTimeoutSeconds,
  };
}

/** Where probeAptFacts looks (tests point these at a folder of their own). */
export interface FactPaths {
  root: string;
  pid1Root: string;
  containerMarkers: string[];
  pid1Environ: string;
}

const SYSTEM_PATHS: FactPaths = {
  root: '/',
  pid1Root: '/proc/1/root',
  containerMarkers: ['/.dockerenv', '/run/.containerenv', '/run/systemd/container'],
  pid1Environ: '/proc/1/environ',
};

/**
 * Find what the decision needs. Reads only; LVM only when asked (`lvm`): the hook asks once every
 * other rule allows a backup, so a box the hook skips anyway is not probed on every apt run.
 */
export async function probeAptFacts(
  ctx: Context,
  paths: FactPaths = SYSTEM_PATHS,
  lvm = true,
): Promise<AptHookFacts> {
  return {
    chroot: isChroot(paths),
    container: containerOf(paths),
    rootReadOnly: await isReadOnly(paths.root),
    restorePointTime: lvm ? await restorePointTime(ctx) : null,
  };
}

/**
 * A chroot: / is another directory than PID 1's root (what debianutils' ischroot compares). No
 * /proc at all (an image being built) counts as a chroot; a /proc we may not read (not root) does not.
 */
function isChroot(paths: FactPaths): boolean {
  try {
    const a = statSync(paths.root);
    const b = statSync(paths.pid1Root);
    return a.dev !== b.dev || a.ino !== b.ino;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

function containerOf(paths: FactPaths): string | null {
  for (const marker of paths.containerMarkers) {
    if (!existsSync(marker)) continue;
    // systemd and podman write the container manager's name into theirs.
    let name = '';
    try {
      name = readFileSync(marker, 'utf8').trim().split('\n')[0]!;
    } catch {}
    if (name && !name.includes('=')) return name;
    return marker.endsWith('.dockerenv') ? 'docker' : marker;
  }
  try {
    const env = readFileSync(paths.pid1Environ, 'utf8').split('\0');
    const c = env.find((e) => e.startsWith('container='));
    if (c && c.length > 'container='.length) return c.slice('container='.length);
  } catch {}
  return null;
}

/** access(2) with W_OK fails with EROFS on a read-only mount, even for root. */
async function isReadOnly(dir: string): Promise<boolean> {
  try {
    await access(dir, fsConstants.W_OK);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EROFS';
  }
}

/** The valid restore point's own time, from LVM; null when there is none (or no VG: the backup says why). */
async function restorePointTime(ctx: Context): Promise<Date | null> {
  const names = namesOf(ctx.config);
  try {
    const state = await probeVg(ctx.runner, names.vg);
    const snap = state.lvs.find((l) => l.name === names.snap);
    if (snap?.kind !== 'snapshot' || snap.invalid) return null;
    return labelOf(snap).time;
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
}

/** How this program starts itself: the single executable, or node with the bundle (development). */
export function selfArgv(): string[] {
  try {
    const req = createRequire(typeof __filename === 'string' ? __filename : import.meta.url);
    const sea = req('node:sea') as { isSea(): boolean };
    if (sea.isSea()) return [process.execPath];
  } catch {
    // node:sea is missing in older runtimes: not a single executable.
  }
  return [process.execPath, process.argv[1]!];
}

declare const __filename: string | undefined;

export interface AptHookResult {
  action: 'skip' | 'backup';
  why: string;
  /** For a backup: taken (or would be, in a dry run), or failed with the error. */
  result: 'skipped' | 'taken' | 'dry-run' | 'failed';
  error: string | null;
}

/**
 * Decide, then take the backup in a child process within the time limit. A failure stops the apt
 * run only under hooks.aptRequireBackup (a RefusedError: the exit code apt sees is not 0);
 * otherwise it is logged, said on stderr (apt shows it) and the upgrade goes on.
 */
export async function runAptHook(
  ctx: Context,
  self: string[] = selfArgv(),
  paths: FactPaths = SYSTEM_PATHS,
): Promise<AptHookResult> {
  let decision = decideAptHook(await probeAptFacts(ctx, paths, false), ctx.config, ctx.clock.now());
  if (decision.action === 'backup' && ctx.config.hooks.aptMinIntervalMinutes > 0) {
    decision = decideAptHook(await probeAptFacts(ctx, paths), ctx.config, ctx.clock.now());
  }
  if (decision.action === 'skip') {
    // A dry run shows it as a plan with no step, so that it ends as every command's does; a real
    // run (at every apt upgrade) logs the one line.
    if (ctx.dryRun)
      await runPlan(
        ctx,
        { title: `apt hook: no pre-upgrade backup (${decision.why})`, notes: [], steps: [] },
        hookRun(ctx),
      );
    else ctx.log.info(`apt hook: no pre-upgrade backup: ${decision.why}`);
    return { action: 'skip', why: decision.why, result: 'skipped', error: null };
  }
  ctx.log.info(`apt hook: taking a pre-upgrade backup (${decision.why})`);
  const args = [
    ...self.slice(1),
    ...(ctx.configFile ? ['--config', ctx.configFile] : []),
    'backup',
    '--reason',
    'pre-upgrade',
    '--wait',
    String(decision.waitSeconds),
  ];
  const out: { stdout?: string } = {};
  const plan: Plan = {
    title: `apt hook: a pre-upgrade restore point (${decision.why})`,
    notes: [
      `within ${decision.timeoutSeconds} s; ${ctx.config.hooks.aptRequireBackup ? 'a failure stops the upgrade (hooks.aptRequireBackup)' : 'a failure is logged and shown, and the upgrade goes on'}`,
    ],
    steps: [
      {
        title: 'take the backup (zshield backup --reason pre-upgrade, in a child process)',
        command: {
          file: self[0]!,
          args,
          mutates: true,
          timeoutMs: decision.timeoutSeconds * 1000,
          onLine: (line, stream) => {
            if (stream === 'stdout') out.stdout = line;
          },
        },
      },
    ],
  };
  try {
    const run = await runPlan(ctx, plan, hookRun(ctx));
    if (!run.applied) return { action: 'backup', why: decision.why, result: 'dry-run', error: null };
    // The child logs its own work; apt's terminal gets its result line ("backup taken: ...").
    if (out.stdout) ctx.log.info(`apt hook: ${out.stdout}`);
    return { action: 'backup', why: decision.why, result: 'taken', error: null };
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    const error = backupFailure(err, decision.timeoutSeconds);
    if (ctx.config.hooks.aptRequireBackup) {
      throw new RefusedError(`the pre-upgrade backup failed (${error}): the upgrade is stopped`, {
        hint: 'zshield status shows the restore point; hooks.aptRequireBackup: false lets upgrades go on without one',
      });
    }
    ctx.log.error(`apt hook: the pre-upgrade backup failed (${error}); the upgrade goes on without it`);
    process.stderr.write(
      `zshield: WARNING: no restore point was taken before this upgrade: ${error}\n  hint: zshield status; zshield backup --reason pre-upgrade takes one\n`,
    );
    return { action: 'backup', why: decision.why, result: 'failed', error };
  }
}

/** apt's terminal shows the plan only on a dry run; a real hook run logs it (it runs at every upgrade). */
const hookRun = (ctx: Context): RunPlanOptions =>
  ctx.dryRun ? { confirm: 'none' } : { confirm: 'none', show: 'log' };

function backupFailure(err: CommandError, timeoutSeconds: number): string {
  if (err.signal?.startsWith('timeout'))
    return `over the time limit of ${timeoutSeconds} s (hooks.aptTimeoutSeconds)`;
  // The child's one-line error (cli/main.ts report()), not its hint.
  const last = err.stderr
    .trim()
    .split('\n')
    .find((l) => l.startsWith('zshield: '));
  return last ? last.replace(/^zshield: /, '') : err.message;
}
