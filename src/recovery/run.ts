import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { asset } from '../assets.js';
import type { Context } from '../context.js';
import { type PrototypeFacts, planGoldenMedium } from '../golden/prepare.js';
import { InterruptedError, RefusedError, UsageError } from '../errors.js';
import { type Plan, applyPlan, formatPlan, planToJson } from '../plan.js';
import { backupLocked } from '../snapshot/backup.js';
import { labelOf, namesOf, TAG_BOOT } from '../snapshot/rotation.js';
import { probeDisks } from '../system/disks.js';
import { acquireLvmLock } from '../system/lock.js';
import { type VgState, probeVg, tagValue, vgsCommand, parseVgs } from '../system/lvm.js';
import { isRunningRoot } from '../system/mounts.js';
import { partitionPath } from '../system/partitions.js';
import { probePvs } from '../system/pvs.js';
import { requireTools, toolsOf } from '../system/tools.js';
import { appendEvent, eventLogUnder, type RecoveryEvent } from './events.js';
import { FACTORY_TAG, type GoldenFacts, planFactoryReset } from './factory.js';
import { runHooks } from './hooks.js';
import {
  RESTORE_OF_TAG,
  RESTORE_TAG,
  checkRestorable,
  restoreLabelOf,
  planMerge,
  planPutBackBoot,
  planRestoreMounts,
  planUnmount,
} from './restore.js';

export interface ConfirmOptions {
  /** 'countdown': at boot, the console shows the plan and counts down; 'yes': confirmed by a flag. */
  confirm: 'countdown' | 'yes' | 'ask';
  json?: boolean;
}

/** Show a destructive plan on the console (stdout), as text or JSON. */
function present(ctx: Context, plan: Plan, json = false): void {
  ctx.out.print(json ? JSON.stringify(planToJson(plan), null, 2) : formatPlan(plan));
}

/**
 * Ask before destroying. At boot: a countdown on the console; typing c (or n) and Enter cancels.
 * Without a terminal the countdown simply runs out. On the command line without --yes: refuse.
 */
async function confirmPlan(ctx: Context, what: string, opts: ConfirmOptions): Promise<void> {
  if (opts.confirm === 'yes') return;
  if (opts.confirm === 'ask') {
    throw new RefusedError(`${what} was not started: it needs confirmation`, {
      hint: 'read the plan above, then run again with --yes (or --dry-run to only see the plan)',
    });
  }
  const seconds = ctx.config.recovery.countdownSeconds;
  if (seconds === 0) return;
  ctx.out.print(`${what} starts in ${seconds} s. Type c and Enter to cancel.`);
  const cancelled = await new Promise<boolean>((resolve) => {
    const rl = createInterface({ input: process.stdin });
    let left = seconds;
    const timer = setInterval(() => {
      left -= 1;
      if (left > 0 && left % 5 === 0) ctx.out.print(`  ${left} s...`);
      if (left <= 0) done(false);
    }, 1000);
    const done = (v: boolean) => {
      clearInterval(timer);
      rl.close();
      resolve(v);
    };
    rl.on('line', (line) => {
      if (/^\s*[cn]/i.test(line)) done(true);
    });
  });
  if (cancelled) throw new InterruptedError(`${what} was cancelled by the operator; nothing was written`);
}

async function probeGolden(ctx: Context): Promise<GoldenFacts> {
  const which = async (...names: string[]) => {
    for (const n of names) if (await ctx.runner.which(n)) return n;
    return null;
  };
  const grubInstall = await which('grub-install', 'grub2-install');
  const grubMkconfig = await which('grub-mkconfig', 'grub2-mkconfig');
  const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : null);
  let goldenUuid: string | null = null;
  try {
    const r = await ctx.runner.run({ file: 'findmnt', args: ['-n', '-o', 'UUID', '/'], mutates: false });
    goldenUuid = r.stdout.trim() || null;
  } catch {
    goldenUuid = null;
  }
  return {
    grubInstall,
    grubMkconfig,
    grubCfg: grubMkconfig === 'grub2-mkconfig' ? '/boot/grub2/grub.cfg' : '/boot/grub/grub.cfg',
    initramfsTool: (await which('update-initramfs'))
      ? 'update-initramfs'
      : (await which('dracut'))
        ? 'dracut'
        : null,
    fstab: read('/etc/fstab') ?? '',
    defaultGrub: read('/etc/default/grub'),
    goldenUuid,
    ...(existsSync('/run/systemd/system')
      ? { systemdUnits: { boot: asset('bootUnit'), daemon: asset('daemonUnit') } }
      : {}),
  };
}

function lockFor(ctx: Context, purpose: string) {
  return acquireLvmLock({ runDir: ctx.config.paths.runDir, log: ctx.log, purpose, waitMs: 60_000 });
}

/** Progress of rsync (--info=progress2) and lvconvert (-i 1) on the terminal and, sparsely, in the log. */
function withProgress(plan: Plan, ctx: Context): Plan {
  let last = 0;
  return {
    ...plan,
    steps: plan.steps.map((s) =>
      s.command.file === 'rsync' || s.command.file === 'lvconvert'
        ? {
            ...s,
            command: {
              ...s.command,
              onLine: (line: string) => {
                const now = Date.now();
                if (now - last < 5000 && !/100(\.0+)?%/.test(line)) return;
                last = now;
                ctx.log.info(`  ${line.trim()}`);
              },
            },
          }
        : s,
    ),
  };
}

export interface FactoryOptions extends ConfirmOptions {
  target?: string;
}

/** Factory reset: probe, plan, show, confirm, check tools, apply, record, hooks. */
export async function runFactoryReset(ctx: Context, opts: FactoryOptions): Promise<void> {
  const lock = ctx.dryRun ? null : await lockFor(ctx, 'factory reset');
  const started = ctx.clock.now();
  try {
    await requireTools(ctx.runner, ['lsblk', 'pvs']);
    const plan = planFactoryReset({
      config: ctx.config,
      disks: await probeDisks(),
      pvs: await probePvs(ctx.runner),
      golden: await probeGolden(ctx),
      bootUuid: randomUUID(),
      now: started,
      ...(opts.target ? { targetOverride: opts.target } : {}),
    });
    present(ctx, plan, opts.json);
    if (ctx.dryRun) return;
    await requireTools(ctx.runner, toolsOf(plan));
    await confirmPlan(ctx, 'The factory reset', opts);
    await applyPlan(withProgress(plan, ctx), ctx);
    const bootPart = plan.steps.find((s) => s.title === 'make the /boot file system')!.command.args.at(-1)!;
    ctx.out.print(
      `factory reset done in ${Math.round((ctx.clock.now().getTime() - started.getTime()) / 1000)} s`,
    );
    await withBootMounted(ctx, bootPart, async (bootDir) => {
      const hooks = await runHooks(ctx, 'factory-reset', { ZSHIELD_BOOT_DIR: bootDir });
      record(ctx, bootDir, {
        at: started.toISOString(),
        event: 'factory-reset',
        result: 'ok',
        detail: plan.title,
        hooks,
        durationMs: ctx.clock.now().getTime() - started.getTime(),
      });
    });
  } finally {
    await lock?.release();
  }
}

/** Mount a /boot partition under the run directory for a moment (the golden root is read-only). */
async function withBootMounted(ctx: Context, dev: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = path.join(ctx.config.paths.runDir, 'boot');
  await ctx.runner.run({ file: 'mkdir', args: ['-p', dir], mutates: true });
  await ctx.runner.run({ file: 'mount', args: [dev, dir], mutates: true });
  try {
    await fn(dir);
  } finally {
    await ctx.runner.run({ file: 'umount', args: [dir], mutates: true });
  }
}

function record(ctx: Context, bootDir: string, event: RecoveryEvent): void {
  const file = eventLogUnder(bootDir, ctx.config.paths.eventLog);
  try {
    appendEvent(file, event);
  } catch (err) {
    ctx.log.warn(`could not write the event log ${file}: ${(err as Error).message}`);
  }
}

async function activateAndProbe(ctx: Context): Promise<VgState | null> {
  const vg = ctx.config.lvm.vg;
  const all = parseVgs((await ctx.runner.run(vgsCommand())).stdout);
  if (!all.some((v) => v.name === vg)) return null;
  // From the golden medium the system disk's VG may not be active yet. Activation is not a change
  // of data, and the probe needs it to see snapshot state.
  await ctx.runner.run({ file: 'vgchange', args: ['-ay', vg], mutates: false });
  return probeVg(ctx.runner, vg);
}

function rootIsRunning(state: VgState, rootLv: string): boolean {
  return isRunningRoot(state.lvs.find((l) => l.name === rootLv));
}

/** Restore the latest backup: refuse what cannot be restored, merge, put /boot back, new snap0, record. */
export async function runRestore(ctx: Context, opts: ConfirmOptions): Promise<void> {
  const lock = ctx.dryRun ? null : await lockFor(ctx, 'restore');
  const started = ctx.clock.now();
  try {
    await requireTools(ctx.runner, ['lvs', 'vgs', 'lvconvert']);
    const state = await activateAndProbe(ctx);
    const snap = checkRestorable(state, ctx.config);
    const label = labelOf(snap);
    const running = rootIsRunning(state!, ctx.config.lvm.rootLv);
    // lv_attr[5] = o: the device is open (mounted or otherwise held).
    const originOpen =
      running || state!.lvs.some((l) => l.name === ctx.config.lvm.rootLv && l.attr[5] === 'o');
    const plan = planMerge(ctx.config, { snapshot: snap, originOpen });
    present(ctx, plan, opts.json);
    if (ctx.dryRun) return;
    await requireTools(ctx.runner, toolsOf(plan));
    await confirmPlan(ctx, 'The restore', opts);
    await applyPlan(withProgress(plan, ctx), ctx);
    const after = await probeVg(ctx.runner, ctx.config.lvm.vg);
    const root = after.lvs.find((l) => l.name === ctx.config.lvm.rootLv)!;
    if (root.merging) {
      ctx.out.print(
        `the merge is deferred: ${ctx.config.lvm.rootLv} is in use. It starts at the next boot; zshield then puts /boot back and takes a new ${ctx.config.lvm.snapshot}. Reboot now.`,
      );
      if (running) {
        record(ctx, '/boot', {
          at: started.toISOString(),
          event: 'restore-deferred',
          result: 'pending',
          detail: 'merge deferred to the next activation of lv-root',
          snapshotTime: label.time?.toISOString() ?? null,
          snapshotReason: label.reason,
        });
      }
      return;
    }
    await finishRestore(ctx, started, {
      time: label.time,
      reason: label.reason,
      captured: tagValue(snap.tags, TAG_BOOT) !== 'none',
    });
  } finally {
    await lock?.release();
  }
}

/**
 * After the merge: put back /boot, take a new snap0, record the event, run the hooks, clear the
 * mark. Also what a later boot runs when it finds the restore mark (power cut, deferred merge).
 */
async function finishRestore(
  ctx: Context,
  started: Date,
  label: { time: Date | null; reason: string | null; captured: boolean },
): Promise<void> {
  const n = namesOf(ctx.config);
  const state = await probeVg(ctx.runner, n.vg);
  const running = rootIsRunning(state, n.root);
  const mounts: [string, string, boolean][] = [];
  let rootDir = '/';
  let bootDir = '/boot';
  if (!running) {
    const base = path.join(ctx.config.paths.runDir, 'restore');
    rootDir = `${base}/root`;
    bootDir = `${base}/boot`;
    mounts.push([`/dev/${n.vg}/${n.root}`, rootDir, true], [await bootPartitionOf(ctx), bootDir, false]);
  }
  // Whether the restored root holds a captured /boot is known only once it is mounted: plan the
  // mounts, apply them, then plan the copy from what is there.
  if (mounts.length) {
    const mountPlan = planRestoreMounts(mounts);
    present(ctx, mountPlan);
    await applyPlan(mountPlan, ctx);
  }
  let hooks: Awaited<ReturnType<typeof runHooks>> = [];
  try {
    const captured = label.captured && existsSync(path.join(rootDir, ctx.config.paths.stateDir, 'boot'));
    const copy = planPutBackBoot(ctx.config, { rootDir, bootDir, captured });
    present(ctx, copy);
    await applyPlan(copy, ctx);
    hooks = await runHooks(ctx, 'restore', { ZSHIELD_BOOT_DIR: bootDir, ZSHIELD_ROOT_DIR: rootDir });
    record(ctx, bootDir, {
      at: started.toISOString(),
      event: 'restore',
      result: 'ok',
      detail: `${n.root} restored from ${n.snap}${captured ? ', /boot put back' : ''}`,
      snapshotTime: label.time?.toISOString() ?? null,
      snapshotReason: label.reason,
      hooks,
      durationMs: ctx.clock.now().getTime() - started.getTime(),
    });
  } finally {
    // The restore mark is cleared only after the new restore point exists (below).
    await applyPlan(planUnmount(mounts), ctx);
  }
  // From the golden medium the records would land in its own /boot and stateDir: not this system's.
  await backupLocked(ctx, 'post-restore', { record: running });
  const marks = (await probeVg(ctx.runner, n.vg)).vg.tags.filter(
    (t) => t === RESTORE_TAG || t.startsWith(RESTORE_OF_TAG),
  );
  await ctx.runner.run({
    file: 'vgchange',
    args: [...marks.flatMap((t) => ['--deltag', t]), n.vg],
    mutates: true,
  });
  ctx.out.print(
    `restore done: ${n.root} is back at ${label.time?.toISOString() ?? 'the backup'}; a new ${n.snap} was taken`,
  );
}

/** The system disk's /boot: partition 1 of the disk that holds the VG (the layout a factory reset makes). */
async function bootPartitionOf(ctx: Context): Promise<string> {
  const pv = (await probePvs(ctx.runner)).find((p) => p.vgName === ctx.config.lvm.vg);
  if (!pv) throw new RefusedError(`cannot find the physical volume of ${ctx.config.lvm.vg}`);
  const m = /^(.*?)(p?)(\d+)$/.exec(pv.pvName);
  if (!m) throw new RefusedError(`${pv.pvName} is not a partition: cannot find the /boot beside it`);
  return partitionPath(m[2] ? m[1]! : m[1]!, 1);
}

/**
 * At boot without a recovery request: finish what a power cut interrupted. A VG marked by a
 * factory reset is reset again; a VG marked by a restore has its restore finished once the kernel
 * has completed the merge.
 */
export async function resumeInterrupted(
  ctx: Context,
  opts: ConfirmOptions,
): Promise<'none' | 'factory' | 'restore'> {
  if (!(await ctx.runner.which('vgs'))) return 'none';
  const vgs = parseVgs((await ctx.runner.run(vgsCommand())).stdout);
  const vg = vgs.find((v) => v.name === ctx.config.lvm.vg);
  if (!vg) return 'none';
  if (vg.tags.includes(FACTORY_TAG)) {
    ctx.out.print('zshield: a factory reset was interrupted (power cut?): running it again');
    await runFactoryReset(ctx, opts);
    return 'factory';
  }
  if (vg.tags.includes(RESTORE_TAG)) {
    const lock = await lockFor(ctx, 'restore (resumed)');
    try {
      ctx.out.print('zshield: a restore was interrupted or deferred: finishing it');
      await ctx.runner.run({ file: 'vgchange', args: ['-ay', vg.name], mutates: false });
      const n = namesOf(ctx.config);
      let state = await probeVg(ctx.runner, vg.name);
      const snap = state.lvs.find((l) => l.name === n.snap);
      if (snap && !snap.merging && !snap.invalid) {
        // Cut before the merge began: start it now. On a running root the kernel defers it to the
        // next activation, so the job goes on after a reboot.
        ctx.out.print(`zshield: the merge of ${n.snap} had not started: starting it`);
        await ctx.runner.run({
          file: 'lvconvert',
          args: ['--merge', '-i', '1', `${vg.name}/${n.snap}`],
          mutates: true,
          timeoutMs: 24 * 3600_000,
          onLine: (l) => ctx.log.info(`  ${l.trim()}`),
        });
        state = await probeVg(ctx.runner, vg.name);
        if (state.lvs.find((l) => l.name === n.root)?.merging && rootIsRunning(state, n.root)) {
          ctx.out.print('zshield: the merge starts at the next boot: rebooting');
          return 'restore';
        }
      }
      if (state.lvs.find((l) => l.name === n.root)?.merging) {
        // The kernel merges on activation; finish it (and its metadata) in the foreground.
        await waitForMerge(ctx, vg.name);
      }
      await finishRestore(ctx, ctx.clock.now(), restoreLabelOf(vg.tags));
    } finally {
      await lock.release();
    }
    return 'restore';
  }
  return 'none';
}

/**
 * A merge that the kernel started at activation (after a reboot) is finished in the metadata only
 * by a poller; without lvmpolld nobody runs one, so run LVM's own in the foreground (`lvm lvpoll`,
 * what lvmpolld would run) on the origin, with progress, until the snapshot is gone.
 */
async function waitForMerge(ctx: Context, vg: string): Promise<void> {
  await ctx.runner.run({
    file: 'lvm',
    args: ['lvpoll', '--polloperation', 'merge', '-i', '1', `${vg}/${ctx.config.lvm.rootLv}`],
    mutates: true,
    timeoutMs: 24 * 3600_000,
    onLine: (l) => ctx.log.info(`  ${l.trim()}`),
  });
  const state = await probeVg(ctx.runner, vg);
  if (state.lvs.some((l) => l.kind === 'snapshot' && l.merging)) {
    throw new RefusedError(`the merge into ${vg}/${ctx.config.lvm.rootLv} has not finished`, {
      hint: 'reboot; the next boot continues it',
    });
  }
}

export function readCmdline(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `cannot read the kernel command line from ${file}: ${(err as NodeJS.ErrnoException).code}`,
    );
  }
}

async function probePrototype(ctx: Context): Promise<PrototypeFacts> {
  const golden = await probeGolden(ctx);
  let kernels: string[] = [];
  try {
    kernels = readdirSync('/boot')
      .filter((f) => /^vmlinu[xz]-/.test(f))
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  } catch {
    kernels = [];
  }
  const kernel = kernels.at(-1) ?? null;
  const version = kernel?.replace(/^vmlinu[xz]-/, '') ?? '';
  const initrd = [`initrd.img-${version}`, `initramfs-${version}.img`, `initrd-${version}`].find(
    (f) => kernel && existsSync(`/boot/${f}`),
  );
  const rcLocalPath = existsSync('/etc/rc.d') ? '/etc/rc.d/rc.local' : '/etc/rc.local';
  return {
    grubInstall: golden.grubInstall,
    grubMkconfig: golden.grubMkconfig,
    grubCfg: golden.grubCfg,
    fstab: golden.fstab,
    kernel: kernel ? `/boot/${kernel}` : null,
    initrd: initrd ? `/boot/${initrd}` : null,
    init: existsSync('/run/systemd/system') ? 'systemd' : 'rc.local',
    rcLocal: existsSync(rcLocalPath) ? readFileSync(rcLocalPath, 'utf8') : null,
    rcLocalPath,
  };
}

/** `zshield golden prepare`: write a golden medium from the running prototype system. */
export async function runGoldenPrepare(
  ctx: Context,
  opts: ConfirmOptions & { target?: string },
): Promise<void> {
  await requireTools(ctx.runner, ['lsblk']);
  const plan = planGoldenMedium({
    config: ctx.config,
    disks: await probeDisks(),
    facts: await probePrototype(ctx),
    ...(opts.target ? { target: opts.target } : {}),
    uuid: randomUUID(),
    now: ctx.clock.now(),
    assets: {
      grubScript: asset('grubScript'),
      bootUnit: asset('bootUnit'),
      daemonUnit: asset('daemonUnit'),
      rcLocalLine: asset('rcLocal'),
    },
  });
  present(ctx, plan, opts.json);
  if (ctx.dryRun) return;
  await requireTools(ctx.runner, toolsOf(plan));
  await confirmPlan(ctx, 'Writing the golden medium', opts);
  await applyPlan(withProgress(plan, ctx), ctx);
  ctx.out.print('golden medium written');
}
