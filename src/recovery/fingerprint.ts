import { rmSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import type { Context } from '../context.js';
import { RefusedError } from '../errors.js';
import type { CommandLineConfirm } from '../output.js';
import type { Check, CommandStep, EditStep, Plan, Step } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { type BootFs, bootCheck, describeBoot } from './boot-fs.js';
import { putBack } from './finish.js';
import { eventStep } from './record.js';
import { probeRestore } from './restore-latest.js';
import { formatBytes } from '../config/size.js';
import { type Identity, writeIdentity } from '../image/index.js';
import { backupLocked } from '../restore-point/index.js';
import { acquireLvmLock } from '../system/lock.js';
import {
  type LvInfo,
  lvCreateWipedArgv,
  lvRemoveArgv,
  lvRemoveCommand,
  lvRenameCommand,
  type VgState,
  VgNotFoundError,
} from '../system/lvm.js';
import { isRunningRoot } from '../system/mounts.js';
import {
  checkFingerprint,
  openSource,
  resolveFingerprint,
  type RestoreSource,
  restoreTree,
  type TreeRestoreOptions,
} from '../history/index.js';
import { mkfsExt4Argv } from '../system/disk-commands.js';
import { mountArgv, umountArgv } from '../system/mount-commands.js';

/**
 * `recover fingerprint ID`, from the golden medium: the fingerprint's tree
 * restored into a NEW logical volume, which then takes lv-root's name; the old root is renamed,
 * not removed, so the reset can be undone until the new root has booted. Its /boot is put back
 * from the copy captured inside it, a new snap0 is taken, the event is logged on /boot.
 */

export const newRootName = (c: Config) => `${c.lvm.rootLv}-new`;
export const prevRootName = (c: Config) => `${c.lvm.rootLv}-prev`;
export const recoverDirs = (c: Config) => ({
  root: path.join(c.paths.runDir, 'recover-root'),
  boot: path.join(c.paths.runDir, 'recover-boot'),
});

export interface RecoverInput {
  config: Config;
  state: VgState;
  id: string;
  /** Where the tree comes from, in words (shown). */
  from: string;
  /** The system's /boot as main's recovery finds it (separate, none, or lost: refused). */
  boot: BootFs;
  started: Date;
  /** The in-process steps: fetch (when from a target) and restore into the mounted new LV. */
  fetch: EditStep | null;
  restore: EditStep;
  /** Appends the reset to the event log on /boot (outside lv-root when /boot is separate). */
  event: (bootDir: string) => EditStep;
  /** Another box's fingerprint (replicate A onto B): this box's name and address written into it. */
  identity: Identity | null;
}

/** The identity step: what `image create --hostname/--ip` writes, here into the new root. */
export function identityStep(ctx: Context, root: string, id: Identity): EditStep {
  return {
    title: `give the new root this box's identity: host name ${id.hostname}${id.ip ? `, address ${id.ip}` : ''}`,
    edit: {
      files: ['etc/hostname', 'etc/hosts', ...(id.ip ? ['etc/network/interfaces'] : [])],
      root,
      apply: () => writeIdentity(ctx.log, root, id),
    },
  };
}

/**
 * Pure: the plan. Every check that can fail is in `checks`, run before the first write. Long (88
 * lines) on purpose: the reset's whole step list in the order it runs (its checks, notes and swap
 * are helpers).
 */
export function planFingerprintRecovery(ctx: Context, i: RecoverInput): Plan {
  const { vg, rootLv, snapshot } = i.config.lvm;
  const root = i.state.lvs.find((l) => l.name === rootLv);
  const fresh = newRootName(i.config);
  const prev = prevRootName(i.config);
  const dirs = recoverDirs(i.config);
  const staleNew = i.state.lvs.find((l) => l.name === fresh);
  const oldPrev = i.state.lvs.find((l) => l.name === prev);
  const snap = i.state.lvs.find((l) => l.name === snapshot);
  const size = root?.sizeBytes ?? 0;
  const free = i.state.vg.freeBytes + (staleNew?.sizeBytes ?? 0) + (oldPrev?.sizeBytes ?? 0);
  const cmd = (
    title: string,
    file: string,
    args: string[],
    extra: Partial<CommandStep['command']> = {},
  ): CommandStep => ({
    title,
    command: { file, args, mutates: true, timeoutMs: 600_000, ...extra },
  });
  const separate = i.boot.kind === 'separate' ? i.boot : null;
  const bootDir = separate ? dirs.boot : path.join(dirs.root, 'boot');
  const back = putBack(
    ctx,
    {
      running: false,
      boot: i.boot,
      label: { time: null, reason: null, captured: true },
      merged: i.state,
      marks: [],
      started: i.started,
    },
    path.join(dirs.root, i.config.paths.stateDir, 'boot'),
    bootDir,
  );
  const notes = [describeBoot(i.boot), ...back.notes, ...resetNotes(i, size, !!oldPrev, !!snap)];
  return {
    title: `Reset ${vg}/${rootLv} to fingerprint ${i.id}`,
    notes,
    checks: [bootCheck(i.boot), ...resetChecks(i.config, root, free, size)],
    steps: [
      ...(staleNew
        ? [cmd(`remove ${fresh}, left by a reset that did not finish`, ...lvRemoveArgv(vg, fresh))]
        : []),
      ...(oldPrev
        ? [{ title: `remove ${prev}, the root kept by an earlier reset`, command: lvRemoveCommand(vg, prev) }]
        : []),
      ...(i.fetch ? [i.fetch] : []),
      cmd(`make the new root volume ${fresh}`, ...lvCreateWipedArgv(vg, fresh, size)),
      cmd(`make its file system`, ...mkfsExt4Argv(`/dev/${vg}/${fresh}`, { label: 'zs-root' })),
      cmd(`make ${dirs.root}`, 'mkdir', ['-p', dirs.root, dirs.boot]),
      cmd(`mount the new root on ${dirs.root}`, ...mountArgv(`/dev/${vg}/${fresh}`, dirs.root)),
      i.restore,
      ...(i.identity ? [identityStep(ctx, dirs.root, i.identity)] : []),
      ...(separate
        ? [cmd(`mount the system's /boot on ${dirs.boot}`, ...mountArgv(separate.device, dirs.boot))]
        : []),
      ...back.steps,
      i.event(bootDir),
      ...(separate ? [cmd(`unmount ${dirs.boot}`, ...umountArgv(dirs.boot))] : []),
      cmd(`unmount ${dirs.root}`, ...umountArgv(dirs.root)),
      ...swapSteps(i.config, !!snap),
    ],
    always: [
      cmd(`unmount ${dirs.boot} if still mounted`, ...umountArgv(dirs.boot, { quiet: true }), {
        okCodes: [0, 1, 32],
        runsAfterAbort: true,
      }),
      cmd(`unmount ${dirs.root} if still mounted`, ...umountArgv(dirs.root, { quiet: true }), {
        okCodes: [0, 1, 32],
        runsAfterAbort: true,
      }),
    ],
  };
}

/** What refuses a reset before anything is written: lv-root present and not running, room for a second root. */
function resetChecks(config: Config, root: LvInfo | undefined, free: number, size: number): Check[] {
  const { vg, rootLv } = config.lvm;
  return [
    {
      title: `${vg}/${rootLv} exists and is not the running root`,
      run: () => {
        if (!root) throw new RefusedError(`${vg}/${rootLv} not found`);
        if (isRunningRoot(root))
          throw new RefusedError(`${vg}/${rootLv} is the running root: a reset runs from the golden medium`, {
            hint: 'boot the golden medium (the recovery entries of the boot menu) and run zshield recover fingerprint FINGERPRINT there',
          });
      },
    },
    {
      title: `room in ${vg} for a second root`,
      run: () => {
        if (free < size)
          throw new RefusedError(
            `${vg} has ${formatBytes(free)} free; the new root needs ${formatBytes(size)}`,
            {
              hint: `free room in ${vg} (the old root is kept until the new one has booted)`,
            },
          );
      },
    },
  ];
}

/** What the operator reads before a reset: where the tree comes from, what is replaced and kept. */
function resetNotes(i: RecoverInput, size: number, oldPrev: boolean, snap: boolean): string[] {
  const { vg, rootLv, snapshot } = i.config.lvm;
  const prev = prevRootName(i.config);
  const notes = [
    `the tree of ${i.id} comes from ${i.from}`,
    `${vg}/${rootLv} is replaced by a new volume of ${formatBytes(size)}; the old one is kept as ${vg}/${prev} until you remove it (lvremove ${vg}/${prev}); to undo, rename it back`,
    'the other volumes are not touched',
  ];
  if (oldPrev) notes.push(`${vg}/${prev}, the root kept by an earlier reset, is removed to make room`);
  if (snap)
    notes.push(
      `${vg}/${snapshot} (a restore point of the old root) is removed; a new one of the new root is taken`,
    );
  return notes;
}

/** The swap: the old root's restore point goes, the old root is kept under another name, the new one takes its name. */
function swapSteps(config: Config, snap: boolean): Step[] {
  const { vg, rootLv, snapshot } = config.lvm;
  const prev = prevRootName(config);
  return [
    ...(snap
      ? [
          {
            title: `remove ${snapshot} (the old root's restore point)`,
            command: lvRemoveCommand(vg, snapshot),
          },
        ]
      : []),
    { title: `keep the old root as ${prev}`, command: lvRenameCommand(vg, rootLv, prev) },
    { title: `the new root becomes ${rootLv}`, command: lvRenameCommand(vg, newRootName(config), rootLv) },
  ];
}

export interface RecoverOptions extends TreeRestoreOptions {
  confirm: CommandLineConfirm;
  json?: boolean;
  identity?: Identity | null;
}

export async function runFingerprintRecovery(
  ctx: Context,
  short: string,
  opts: RecoverOptions,
): Promise<void> {
  checkFingerprint(short);
  const started = ctx.clock.now();
  const lock = ctx.dryRun
    ? null
    : await acquireLvmLock({
        runDir: ctx.config.paths.runDir,
        log: ctx.log,
        purpose: 'recover fingerprint',
        waitMs: 60_000,
      });
  let source: RestoreSource | null = null;
  try {
    // The catalog is checked, and the source found (its repository listed), before any plan is
    // shown: a fingerprint nobody holds, or one the catalog refuses, stops here with nothing changed.
    const id = await resolveFingerprint(ctx, short, opts);
    source = await openSource(ctx, id, opts);
    const probe = await probeRestore(ctx);
    if (!probe.state)
      throw new VgNotFoundError(ctx.config.lvm.vg, {
        what: 'nothing to reset',
        hint: 'a blank disk is brought back by the factory reset first',
      });
    const dirs = recoverDirs(ctx.config);
    const src = source;
    const plan = planFingerprintRecovery(ctx, {
      config: ctx.config,
      state: probe.state,
      id,
      from:
        src.from === 'local'
          ? `the local repository ${src.repo}`
          : `target ${src.from} (fetched into ${src.repo})`,
      boot: probe.boot ?? { kind: 'lost', why: 'the system disk was not probed for /boot' },
      started,
      fetch: null,
      identity: opts.identity ?? null,
      event: (bootDir) => resetEvent(ctx, bootDir, started, id, src.from),
      restore: {
        title: `restore ${id} into the new root (restic restore; progress from the file system's growth)`,
        edit: {
          files: ['/'],
          root: dirs.root,
          apply: async () => void (await restoreTree(ctx, src, id, dirs.root)),
        },
      },
    });
    const run = await runPlan(ctx, plan, {
      confirm: opts.confirm,
      what: 'The reset to a fingerprint',
      show: opts.json ? 'json' : 'out',
    });
    if (!run.applied) return;
    await backupLocked(ctx, 'post-restore', { record: false });
    ctx.out.print(
      `reset done: ${ctx.config.lvm.vg}/${ctx.config.lvm.rootLv} now holds ${id}; the old root is ${ctx.config.lvm.vg}/${prevRootName(ctx.config)}; a new ${ctx.config.lvm.snapshot} was taken`,
    );
  } finally {
    if (source?.temporary) rmSync(source.temporary, { recursive: true, force: true });
    await lock?.release();
  }
}

function resetEvent(ctx: Context, bootDir: string, started: Date, id: string, from: string): EditStep {
  return eventStep(ctx, bootDir, 'log the reset in the event log on /boot', () => ({
    at: started.toISOString(),
    event: 'restore',
    result: 'ok',
    detail: `${ctx.config.lvm.rootLv} reset to fingerprint ${id} from ${from}; the old root is kept as ${prevRootName(ctx.config)}`,
    durationMs: ctx.clock.now().getTime() - started.getTime(),
  }));
}
