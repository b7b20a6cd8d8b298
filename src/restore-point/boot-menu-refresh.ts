import { mountedReadOnly } from '../system/mounts.js';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { NotFoundError } from '../errors.js';
import { namesOf } from '../names/snapshots.js';
import type { Check, Plan, Step } from '../plan/plan.js';
import { runPlan, sayNothingChanged } from '../plan/run.js';
import { parseEnvBlock, writeEnvFileAtomic } from '../system/grub-env.js';
import { type VgState, probeVg } from '../system/lvm.js';
import { deviceOf } from '../system/mounts.js';
import { probePvs } from '../system/pvs.js';
import {
  type BlockRow,
  GOLDEN_SETTINGS_FILE,
  MENU_FILE,
  MENU_VAR,
  PAIR_PATH_VAR,
  PAIR_UUID_VAR,
  bootMenuEnv,
  chooseSystemBoot,
  parseLsblk,
  restorePointText,
  withBlkid,
} from './boot-menu.js';
import { commandOf } from '../system/command.js';
import { mountArgv, remountArgv, umountArgv } from '../system/mount-commands.js';

export interface RefreshOptions {
  /** Where the system disk's /boot is mounted, when the caller has it mounted; else it is found. */
  bootDir?: string;
  /**
   * The VG as the caller just probed it (null: no VG); else it is probed when the write runs: a
   * dry run of a backup shows the write without claiming the text the rotation would leave.
   */
  state?: VgState | null;
  /**
   * The factory reset: also record this /boot's UUID in the golden medium's own settings, so the
   * golden medium's menu finds MENU_FILE on this disk and on no other.
   */
  pairGolden?: boolean;
  /** The daemon's ticks: do nothing while the text is what this process last wrote. */
  onlyIfChanged?: boolean;
}

export interface RunRefreshOptions {
  /**
   * Where the refresh's plan is shown (runPlan's `show`); default: the log on a real run, stdout on
   * a dry run. The caller's own plan came first, shown with `notLast`: a dry run's one "nothing was
   * changed" line is said here, after the refresh's plan (or where there is no menu of ours).
   */
  show?: 'out' | 'log' | 'none';
}

/** The golden medium's /etc/default/zshield-grub (golden/prepare.ts): its own file system UUID. */
const GOLDEN_DEFAULTS = '/etc/default/zshield-grub';
const GRUB_DIRS = ['/boot/grub', '/boot/grub2'];

/** What this process last wrote (or found written): the daemon's ticks skip the work while it holds. */
let lastText: string | null = null;

/** A refresh planned: the plan runPlan shows and runs, and its text when the caller gave the state. */
export interface MenuRefresh {
  plan: Plan;
  /** The restore point text, known at planning when the state was given (the daemon's ticks). */
  text: string | null;
  opts: RefreshOptions;
  /** The text the run wrote (or found written), set by the write step. */
  written: { text: string | null };
}

/**
 * Rewrite the boot menu's restore point (MENU_FILE on the system disk's /boot) from the VG as it
 * is now. Called at the end of every flow that changes the restore point. It never fails the
 * flow: the backup or restore is done by then, and a menu that could not be updated says so in
 * the log (the menu then still shows the older text, or "unknown" without a file).
 *
 * Where: the /boot the caller names; else the separate /boot mounted at boot.dir (the running
 * system disk); else, on the golden medium, the system disk's /boot found by the UUID paired at
 * the factory reset (mounted for the moment). Anywhere else (a system without a separate /boot, a
 * prototype) there is no menu of ours to update: nothing is run.
 *
 * A plan like every other change (planBootMenuRefresh, then runPlan): a dry run finds the /boot
 * and shows the mount and the write, and writes nothing.
 */
export async function refreshBootMenu(
  ctx: Context,
  opts: RefreshOptions = {},
  run: RunRefreshOptions = {},
): Promise<void> {
  const names = namesOf(ctx.config);
  const show = run.show ?? (ctx.dryRun ? 'out' : 'log');
  // A tick that saw the same restore point as last time: nothing to find, probe or write.
  const same =
    opts.onlyIfChanged && opts.state !== undefined && restorePointText(opts.state, names) === lastText;
  if (!same) {
    const planned = await planOrWarn(ctx, opts);
    if (planned) await runRefresh(ctx, planned, show);
  }
  if (ctx.dryRun) sayNothingChanged(ctx, show);
}

/** planBootMenuRefresh, with a failure to find the /boot said as a warning (the refresh never fails its caller). */
async function planOrWarn(ctx: Context, opts: RefreshOptions): Promise<MenuRefresh | null> {
  try {
    const planned = await planBootMenuRefresh(ctx, opts);
    if (!planned) {
      ctx.log.debug('boot menu: no separate /boot here and not a golden medium: no menu file to update');
    }
    return planned;
  } catch (err) {
    // Nothing written: the next tick tries again.
    if (opts.onlyIfChanged) lastText = null;
    ctx.log.warn(`the boot menu was not updated: ${(err as Error).message}`);
    return null;
  }
}

/** Runs a planned refresh through runPlan (shown, checked, applied; a dry run stops after the checks). Never throws. */
async function runRefresh(ctx: Context, planned: MenuRefresh, show: NonNullable<RunRefreshOptions['show']>) {
  const { opts, text } = planned;
  if (opts.onlyIfChanged && text !== null && text === lastText) return;
  try {
    const r = await runPlan(ctx, planned.plan, { confirm: 'none', show, notLast: true });
    if (r.applied) lastText = planned.written.text ?? text;
  } catch (err) {
    // The daemon retries only when the text changes: one warning per change, not one per tick.
    if (opts.onlyIfChanged) lastText = planned.written.text ?? text;
    ctx.log.warn(`the boot menu was not updated: ${(err as Error).message}`);
  }
}

/**
 * The refresh as a plan, found read-only (lsblk, blkid, pvs where the /boot must be looked for):
 * mount the system disk's /boot when it is not mounted, write MENU_FILE, pair the golden medium
 * (the factory reset), unmount. The restore point is read from the VG when the write runs, unless
 * the caller gave the state. Null: no menu of ours here. Throws when the /boot cannot be found.
 */
export async function planBootMenuRefresh(
  ctx: Context,
  opts: RefreshOptions = {},
): Promise<MenuRefresh | null> {
  const target = await locate(ctx, opts);
  if (!target) return null;
  const names = namesOf(ctx.config);
  const text = opts.state !== undefined ? restorePointText(opts.state, names) : null;
  const written: MenuRefresh['written'] = { text: null };
  const notes: string[] = [];
  const checks: Check[] = [];
  const steps: Step[] = [];
  const always: Step[] = [];
  let dir = target.dir ?? target.row?.mountpoint ?? null;
  if (!dir) {
    const row = target.row!;
    const mnt = path.join(ctx.config.paths.runDir, 'bootmenu');
    dir = mnt;
    notes.push(`the system disk's /boot (${row.name}) is not mounted: it is mounted on ${mnt} for the write`);
    steps.push(
      {
        title: `make the mount point ${mnt}`,
        edit: { files: [mnt], apply: () => void mkdirSync(mnt, { recursive: true }) },
      },
      {
        title: `mount the system disk's /boot (${row.name})`,
        command: commandOf(mountArgv(row.name, mnt, { type: row.fstype! }), { mutates: true }),
      },
    );
    always.push({
      title: `unmount the system disk's /boot from ${mnt}`,
      command: commandOf(umountArgv(mnt), { mutates: true }),
    });
  }
  const file = path.join(dir, MENU_FILE);
  notes.push(
    text !== null
      ? `the menu entry will read "Recover to latest backup (${text})"`
      : `the menu entry reads the restore point of ${names.vg} as it is when the file is written`,
  );
  const menuDir = dir;
  steps.push({
    title: `write the restore point into the boot menu's file ${file}`,
    edit: {
      files: [file],
      apply: async () => {
        const state = opts.state !== undefined ? opts.state : await probeState(ctx);
        const vars = bootMenuEnv(state, names);
        written.text = vars[MENU_VAR]!;
        writeMenuFile(ctx, menuDir, vars, opts);
      },
    },
  });
  if (opts.pairGolden) planPair(ctx, target, { notes, checks, steps, always });
  const plan: Plan = {
    title: `Refresh the boot menu's restore point (${names.vg})`,
    notes,
    ...(checks.length ? { checks } : {}),
    steps,
    ...(always.length ? { always } : {}),
  };
  return { plan, text, opts, written };
}

interface Target {
  /** Where the system /boot is mounted now, or null: mount `row` for the write. */
  dir: string | null;
  row: BlockRow | null;
  /** The running golden medium's GRUB folder, or null. */
  golden: string | null;
}

async function locate(ctx: Context, opts: RefreshOptions): Promise<Target | null> {
  if (opts.bootDir) {
    // The block devices matter only for pairing (the UUID of this /boot, the golden medium's GRUB).
    const rows = opts.pairGolden ? await listBlocks(ctx) : [];
    const row = rows.find((r) => r.mountpoint === opts.bootDir) ?? null;
    return { dir: opts.bootDir, row, golden: runningGoldenGrubDir(rows) };
  }
  const bootDir = ctx.config.boot.dir;
  const boot = deviceOf(bootDir);
  const root = deviceOf('/');
  if (boot && root && (boot.major !== root.major || boot.minor !== root.minor)) {
    return { dir: bootDir, row: null, golden: null };
  }
  if (!readGoldenUuid() || !grubDirOfRoot()) return null;
  const rows = await listBlocks(ctx);
  const golden = runningGoldenGrubDir(rows);
  if (!golden) return null;
  const row = chooseSystemBoot(rows, await pvNames(ctx), { uuid: pairedUuid(golden), bootDir });
  if (!row) {
    throw new NotFoundError(`no /boot file system found on the disk of volume group ${ctx.config.lvm.vg}`);
  }
  return { dir: row.mountpoint, row, golden };
}

async function probeState(ctx: Context): Promise<VgState | null> {
  try {
    return await probeVg(ctx.runner, ctx.config.lvm.vg);
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
}

function writeMenuFile(ctx: Context, dir: string, vars: Record<string, string>, opts: RefreshOptions): void {
  const file = path.join(dir, MENU_FILE);
  const old = existsSync(file) ? parseEnvBlock(readFileSync(file)) : null;
  if (opts.onlyIfChanged && old && old[MENU_VAR] === vars[MENU_VAR]) return;
  writeEnvFileAtomic(ctx.writes, file, vars);
  ctx.log.info(`boot menu: "Recover to latest backup (${vars[MENU_VAR]})" (${file})`);
}

/**
 * The factory reset's pairing, as steps: write the system /boot's UUID into the golden medium's
 * settings (GRUB reads them from beside its grub.cfg at boot). The golden root is mounted
 * read-only: it is made writable for the write and read-only again at the end. Nothing when not
 * running from a golden medium, or when the settings say so already.
 */
function planPair(
  ctx: Context,
  target: Target,
  parts: { notes: string[]; checks: Check[]; steps: Step[]; always: Step[] },
): void {
  if (!target.golden) {
    ctx.log.debug('not running from a golden medium: no golden menu to point at this /boot');
    return;
  }
  const uuid = target.row?.uuid ?? null;
  parts.checks.push({
    title: "the system disk's /boot has a file system UUID to pair the golden medium with",
    run: () => {
      if (!uuid) throw new NotFoundError(`the file system at ${target.dir} has no UUID to pair with`);
    },
  });
  if (!uuid) return;
  const file = path.join(target.golden, GOLDEN_SETTINGS_FILE);
  const vars = { [PAIR_UUID_VAR]: uuid, [PAIR_PATH_VAR]: `/${MENU_FILE}` };
  const old = existsSync(file) ? parseEnvBlock(readFileSync(file)) : null;
  if (old && old[PAIR_UUID_VAR] === uuid && old[PAIR_PATH_VAR] === vars[PAIR_PATH_VAR]) return;
  parts.notes.push(`the golden medium's menu is pointed at the /boot with UUID ${uuid}`);
  if (mountedReadOnly('/')) {
    parts.steps.push({
      title: 'make the golden root writable for the write',
      command: commandOf(remountArgv('/', 'rw'), { mutates: true }),
    });
    parts.always.push({
      title: 'make the golden root read-only again',
      command: commandOf(remountArgv('/', 'ro'), { mutates: true }),
    });
  }
  parts.steps.push({
    title: `write the /boot's UUID into the golden medium's settings ${file}`,
    edit: {
      files: [file],
      apply: () => {
        writeEnvFileAtomic(ctx.writes, file, vars);
        ctx.log.info(
          `golden medium: its menu reads the restore point from the /boot with UUID ${uuid} (${file})`,
        );
      },
    },
  });
}

async function listBlocks(ctx: Context): Promise<BlockRow[]> {
  const r = await ctx.runner.run({
    file: 'lsblk',
    args: ['-J', '-l', '-p', '-o', 'NAME,PKNAME,UUID,FSTYPE,LABEL,MOUNTPOINT'],
    mutates: false,
  });
  // Exit 2: no device holds a file system blkid knows.
  const ids = await ctx.runner.run({
    file: 'blkid',
    args: ['-c', '/dev/null', '-o', 'export'],
    mutates: false,
    okCodes: [0, 2],
  });
  return withBlkid(parseLsblk(r.stdout), ids.stdout);
}

async function pvNames(ctx: Context): Promise<string[]> {
  return (await probePvs(ctx.runner)).filter((p) => p.vgName === ctx.config.lvm.vg).map((p) => p.pvName);
}

/**
 * The folder of the running root's grub.cfg, when the running root is the golden medium (its
 * file system UUID is the one golden prepare wrote into its settings); else null.
 */
function runningGoldenGrubDir(rows: BlockRow[]): string | null {
  const uuid = readGoldenUuid();
  const root = rows.find((r) => r.mountpoint === '/');
  if (!uuid || root?.uuid !== uuid) return null;
  return grubDirOfRoot();
}

/** ZSHIELD_GOLDEN_UUID of this root's settings (a golden medium's own UUID, or a system's golden). */
function readGoldenUuid(): string | null {
  try {
    return /^ZSHIELD_GOLDEN_UUID=["']?([^"'\s]+)/m.exec(readFileSync(GOLDEN_DEFAULTS, 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

/** The folder of a grub.cfg on the running root's own file system (not on a separate /boot). */
function grubDirOfRoot(): string | null {
  return GRUB_DIRS.find((d) => existsSync(path.join(d, 'grub.cfg'))) ?? null;
}

function pairedUuid(grubDir: string): string | null {
  try {
    return parseEnvBlock(readFileSync(path.join(grubDir, GOLDEN_SETTINGS_FILE)))?.[PAIR_UUID_VAR] ?? null;
  } catch {
    return null;
  }
}
