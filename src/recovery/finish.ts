import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import type { Check, Step } from '../plan/plan.js';
import { progressParsers } from '../plan/progress.js';
import { type VgState, vgTagsArgv } from '../system/lvm.js';
import { mutating } from '../system/root-copy.js';
import { planRotation } from '../restore-point/index.js';
import { type BootFs, bootCheck, describeBoot } from './boot-fs.js';
import { mountPointCheck } from './checks.js';
import { recordStep } from './record.js';
import { unmountIfMounted } from '../golden/index.js';
import { namesOf } from '../names/snapshots.js';
import { RESTORE_OF_TAG, RESTORE_TAG } from '../names/lvm-tags.js';
import { mountArgv, umountArgv } from '../system/mount-commands.js';

export interface RestoreLabel {
  time: Date | null;
  reason: string | null;
  /** snap0's tag said it holds a captured /boot. */
  captured: boolean;
}

export interface FinishInput {
  /** lv-root is the running root when the finishing phase runs (a boot of the system disk). */
  running: boolean;
  boot: BootFs;
  label: RestoreLabel;
  /** The VG as it will be once the merge is done (for the new snap0). */
  merged: VgState;
  /** The VG's tags, for the restore marks to clear (they may be set only by this plan). */
  marks: string[];
  started: Date;
}

export interface PlanPart {
  notes: string[];
  checks: Check[];
  steps: Step[];
  always: Step[];
}

/**
 * After the merge: put back the /boot captured in the restored root (the kernel matching its
 * modules), run the hooks and record the event, take a new snap0 (post-restore), and only then
 * clear the restore mark, so a power cut anywhere here leaves a mark that the next boot finishes.
 * From the golden medium the restored root and /boot are mounted under the run directory.
 */
export function planFinish(ctx: Context, f: FinishInput): PlanPart {
  const n = namesOf(ctx.config);
  const stateDir = ctx.config.paths.stateDir;
  const base = path.join(ctx.config.paths.runDir, 'restore');
  const separate = f.boot.kind === 'separate';
  const rootDir = f.running ? '/' : path.join(base, 'root');
  const bootDir = f.running
    ? ctx.config.boot.dir
    : separate
      ? path.join(base, 'boot')
      : path.join(rootDir, 'boot');
  const notes = [describeBoot(f.boot)];
  const checks: Check[] = [bootCheck(f.boot)];
  const steps: Step[] = [];
  const always: Step[] = [];

  if (!f.running) {
    const m = mountSteps(ctx, f, rootDir, bootDir);
    checks.push(mountPointCheck(ctx.config.paths.runDir));
    steps.push(...m.steps);
    always.push(...m.always);
  }

  const capture = path.join(rootDir, stateDir, 'boot');
  const back = putBack(ctx, f, capture, bootDir);
  steps.push(...back.steps);
  notes.push(...back.notes);

  steps.push(
    recordStep(ctx, {
      hookEvent: 'restore',
      bootDir,
      env: { ZSHIELD_BOOT_DIR: bootDir, ZSHIELD_ROOT_DIR: rootDir },
      event: (hooks) => ({
        at: f.started.toISOString(),
        event: 'restore',
        result: 'ok',
        detail: `${n.root} restored from ${n.snap}${separate && f.label.captured && existsSync(capture) ? ', /boot put back' : ''}`,
        snapshotTime: f.label.time?.toISOString() ?? null,
        snapshotReason: f.label.reason,
        hooks,
        durationMs: ctx.clock.now().getTime() - f.started.getTime(),
      }),
    }),
  );
  if (!f.running) {
    if (separate) steps.push({ title: `unmount ${bootDir}`, command: mutating(...umountArgv(bootDir)) });
    steps.push({ title: `unmount ${rootDir}`, command: mutating(...umountArgv(rootDir)) });
  }
  const snap = newSnapshot(ctx, f);
  notes.push(...snap.notes);
  checks.push(snap.check);
  steps.push(...snap.steps);
  steps.push({
    title: 'clear the restore mark',
    command: mutating(...vgTagsArgv(n.vg, { del: f.marks })),
  });
  steps.push({ title: 'flush to disk', command: mutating('sync', []) });
  return { notes, checks, steps, always };
}

/**
 * The new restore point, planned now from the VG as the merge will leave it: the same rotation a
 * backup runs (reason post-restore). Not enough room is found here, before the merge.
 */
function newSnapshot(ctx: Context, f: FinishInput): { notes: string[]; steps: Step[]; check: Check } {
  const n = namesOf(ctx.config);
  const title = `${n.vg} has room for a new ${n.snap} after the merge`;
  try {
    const plan = planRotation({
      state: f.merged,
      config: ctx.config,
      reason: 'post-restore',
      now: f.started,
      rootIsRunning: f.running,
    });
    return {
      notes: [`then a new ${n.snap} (post-restore): ${plan.notes[0] ?? ''}`],
      steps: plan.steps,
      check: { title, run: () => {} },
    };
  } catch (err) {
    return { notes: [], steps: [], check: { title, run: () => Promise.reject(err) } };
  }
}

/** The tags a finished restore clears: the mark and the name of the restore point. */
export function restoreMarks(vgTags: readonly string[], adding: string[] = []): string[] {
  const set = new Set(
    [...vgTags, ...adding].filter((t) => t === RESTORE_TAG || t.startsWith(RESTORE_OF_TAG)),
  );
  return [...set];
}

export const mergeWaitStep = (vg: string, root: string): Step => ({
  // A merge the kernel started at activation is finished in the metadata only by a poller; without
  // lvmpolld nobody runs one, so run LVM's own in the foreground (what lvmpolld would run).
  title: `wait for the merge into ${root} to finish`,
  command: mutating('lvm', ['lvpoll', '--polloperation', 'merge', '-i', '1', `${vg}/${root}`], {
    timeoutMs: 24 * 3600_000,
  }),
  progress: progressParsers.merge,
});

/** From the golden medium: mount the restored root (and the system's /boot) under the run dir. */
function mountSteps(
  ctx: Context,
  f: FinishInput,
  rootDir: string,
  bootDir: string,
): { steps: Step[]; always: Step[] } {
  const n = namesOf(ctx.config);
  const separate = f.boot.kind === 'separate';
  const dirs = separate ? [rootDir, bootDir] : [rootDir];
  const steps: Step[] = [
    { title: `make ${dirs.join(' and ')}`, command: mutating('mkdir', ['-p', ...dirs]) },
  ];
  // Read-only when /boot is its own file system: only the capture is read from the root. Without
  // one, the event log lives in the root's own /boot, so the root is mounted writable.
  steps.push({
    title: `mount the restored ${n.root} on ${rootDir}`,
    command: mutating(...mountArgv(`/dev/${n.vg}/${n.root}`, rootDir, separate ? { options: 'ro' } : {})),
  });
  const always: Step[] = [];
  if (f.boot.kind === 'separate') {
    steps.push({
      title: `mount the system's /boot on ${bootDir}`,
      command: mutating(...mountArgv(f.boot.device, bootDir, { type: f.boot.type })),
    });
    always.push(unmountIfMounted(bootDir));
  }
  always.push(unmountIfMounted(rootDir));
  return { steps, always };
}

/** Put back the /boot captured inside the restored root, tested when reached (the restored root is snap0's content). */
export function putBack(
  ctx: Context,
  f: FinishInput,
  capture: string,
  bootDir: string,
): { steps: Step[]; notes: string[] } {
  const n = namesOf(ctx.config);
  // Without a separate /boot nothing is put back: /boot is part of the root that was restored.
  if (f.boot.kind !== 'separate') return { steps: [], notes: [] };
  if (!f.label.captured) {
    return {
      steps: [],
      notes: [
        `${n.snap} was taken without a /boot capture (not on the running root): /boot is left as it is`,
      ],
    };
  }
  const step: Step = {
    title: 'put back the /boot of the restored root (kernel matching its modules)',
    when: {
      text: `if ${n.snap} holds a captured /boot (${path.join(ctx.config.paths.stateDir, 'boot')})`,
      holds: () => existsSync(capture),
    },
    // /boot/zshield holds the event log: it describes the restores and must outlive them.
    command: mutating(
      'rsync',
      [
        '-a',
        '--delete',
        '--numeric-ids',
        '--exclude=/zshield/',
        '--exclude=/lost+found',
        `${capture}/`,
        `${bootDir}/`,
      ],
      { timeoutMs: 600_000 },
    ),
  };
  return { steps: [step], notes: [] };
}
