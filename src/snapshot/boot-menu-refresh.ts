import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { NotFoundError } from '../errors.js';
import { namesOf } from '../names/snapshots.js';
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

export interface RefreshOptions {
  /** Where the system disk's /boot is mounted, when the caller has it mounted; else it is found. */
  bootDir?: string;
  /** The VG as the caller just probed it (null: no VG); else probed here. */
  state?: VgState | null;
  /**
   * The factory reset: also record this /boot's UUID in the golden medium's own settings, so the
   * golden medium's menu finds MENU_FILE on this disk and on no other.
   */
  pairGolden?: boolean;
  /** The daemon's ticks: do nothing while the text is what this process last wrote. */
  onlyIfChanged?: boolean;
}

/** The golden medium's /etc/default/zshield-grub (golden/prepare.ts): its own file system UUID. */
const GOLDEN_DEFAULTS = '/etc/default/zshield-grub';
const GRUB_DIRS = ['/boot/grub', '/boot/grub2'];

/** What this process last wrote (or found written): the daemon's ticks skip the work while it holds. */
let lastText: string | null = null;

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
 */
export async function refreshBootMenu(ctx: Context, opts: RefreshOptions = {}): Promise<void> {
  if (ctx.dryRun) return;
  const names = namesOf(ctx.config);
  // A tick that saw the same restore point as last time: nothing to find, probe or write.
  if (opts.onlyIfChanged && opts.state !== undefined && restorePointText(opts.state, names) === lastText)
    return;
  let text: string | null = null;
  try {
    const target = await locate(ctx, opts);
    if (!target) {
      ctx.log.debug('boot menu: no separate /boot here and not a golden medium: no menu file to update');
      return;
    }
    const state = opts.state !== undefined ? opts.state : await probeState(ctx);
    const vars = bootMenuEnv(state, names);
    text = vars[MENU_VAR]!;
    if (opts.onlyIfChanged && text === lastText) return;
    await withMounted(ctx, target.dir ?? target.row!, (dir) => writeMenuFile(ctx, dir, vars, opts));
    if (opts.pairGolden) await pair(ctx, target);
    lastText = text;
  } catch (err) {
    // The daemon retries only when the text changes: one warning per change, not one per tick.
    if (opts.onlyIfChanged) lastText = text;
    ctx.log.warn(`the boot menu was not updated: ${(err as Error).message}`);
  }
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

async function pair(ctx: Context, target: Target): Promise<void> {
  if (!target.golden) {
    ctx.log.debug('not running from a golden medium: no golden menu to point at this /boot');
    return;
  }
  if (!target.row?.uuid) throw new NotFoundError(`the file system at ${target.dir} has no UUID to pair with`);
  await pairGolden(ctx, target.golden, target.row.uuid);
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

/** Run fn with the file system mounted: where it is mounted already, else for a moment under runDir. */
async function withMounted(
  ctx: Context,
  target: string | BlockRow,
  fn: (dir: string) => void,
): Promise<void> {
  if (typeof target === 'string') return fn(target);
  if (target.mountpoint) return fn(target.mountpoint);
  const dir = path.join(ctx.config.paths.runDir, 'bootmenu');
  mkdirSync(dir, { recursive: true });
  await ctx.runner.run({ file: 'mount', args: ['-t', target.fstype!, target.name, dir], mutates: true });
  try {
    fn(dir);
  } finally {
    await ctx.runner.run({ file: 'umount', args: [dir], mutates: true });
  }
}

/**
 * Write the system /boot's UUID into the golden medium's settings (GRUB reads them from beside
 * its grub.cfg at boot). The golden root is mounted read-only: it is made writable for the write
 * and read-only again right after.
 */
async function pairGolden(ctx: Context, grubDir: string, uuid: string): Promise<void> {
  const file = path.join(grubDir, GOLDEN_SETTINGS_FILE);
  const vars = { [PAIR_UUID_VAR]: uuid, [PAIR_PATH_VAR]: `/${MENU_FILE}` };
  const old = existsSync(file) ? parseEnvBlock(readFileSync(file)) : null;
  if (old && old[PAIR_UUID_VAR] === uuid && old[PAIR_PATH_VAR] === vars[PAIR_PATH_VAR]) return;
  const readOnly = rootReadOnly();
  if (readOnly) await ctx.runner.run({ file: 'mount', args: ['-o', 'remount,rw', '/'], mutates: true });
  try {
    writeEnvFileAtomic(ctx.writes, file, vars);
  } finally {
    if (readOnly) await ctx.runner.run({ file: 'mount', args: ['-o', 'remount,ro', '/'], mutates: true });
  }
  ctx.log.info(`golden medium: its menu reads the restore point from the /boot with UUID ${uuid} (${file})`);
}

function rootReadOnly(): boolean {
  let opts = '';
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[1] === '/') opts = f[3] ?? '';
  }
  return opts.split(',').includes('ro');
}
