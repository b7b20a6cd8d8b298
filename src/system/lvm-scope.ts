import { readdirSync } from 'node:fs';
import { InternalError, RefusedError } from '../errors.js';
import { type Disk, type DiskProbe, probeDisks } from './disks.js';
import type { Pipeline, PipelineResult } from './pipeline.js';
import { type PvInfo, parsePvs, pvsCommand } from './pvs.js';
import type { Runner, Started } from './runner.js';
import type { Command, CommandResult } from './command.js';

/**
 * A disk from another box may carry a VG of the same name as the system's. LVM then refuses every
 * command that names the VG ("Use --select vg_uuid=<uuid> in place of the VG name"), and a factory
 * reset beside it would make two VGs that collide at boot. So every LVM command zshield runs sees
 * the system disk's PVs only (`--devices`, lvm2 2.03.12+), decided once here for the whole run
 * instead of at each of the many places that build LVM commands. With at most one VG of the name,
 * nothing is restricted and the commands are exactly as before.
 */

/** The LVM tools `--devices` is added to; `lvm` takes it after its subcommand (`lvm lvpoll`). */
const LVM_TOOLS = new Set([
  'lvm',
  'lvs',
  'vgs',
  'pvs',
  'lvcreate',
  'lvremove',
  'lvrename',
  'lvconvert',
  'lvchange',
  'lvextend',
  'lvreduce',
  'lvresize',
  'lvdisplay',
  'vgchange',
  'vgcreate',
  'vgremove',
  'vgrename',
  'vgextend',
  'vgreduce',
  'vgdisplay',
  'vgck',
  'vgmknodes',
  'vgcfgbackup',
  'pvcreate',
  'pvremove',
  'pvchange',
  'pvdisplay',
]);

export const isLvmTool = (file: string): boolean => LVM_TOOLS.has(file);

/** One of the VGs that carry the configured name. */
export interface NamedVg {
  name: string;
  uuid: string;
  pvs: string[];
  /** The disks its PVs are on, described for people (`/dev/vdc (1.0 GiB, serial X)`). */
  disks: string[];
  tags: string[];
}

export interface LvmScope {
  vg: string;
  /** The devices every LVM command is restricted to; null: not restricted (at most one VG of the name). */
  devices: string[] | null;
  /** The VG taken as the system's, and how it was told apart; null when not restricted. */
  system: NamedVg | null;
  chosenBy: string | null;
  /** VGs of the same name on other disks: never seen by zshield's LVM commands. */
  others: NamedVg[];
}

export interface ScopeOptions {
  vg: string;
  /** Serial and/or WWN of the system disk from the config (disks.system). */
  systemIds: readonly string[];
  /** Default: lsblk and sysfs (system/disks.ts), noted on the runner. */
  disks?: (runner: Runner) => Promise<DiskProbe>;
  /**
   * Changes when disks come or go (default: the names in /sys/block): a long-running daemon then
   * decides again instead of keeping a scope made before a disk was attached.
   */
  generation?: () => string;
}

/**
 * The Runner every command goes through, with LVM commands restricted to the system's PVs. It
 * decides on the first LVM command (one `pvs`, read-only, so dry runs decide too) and keeps that
 * for the run: the plan shown and the plan applied see the same devices.
 */
export class LvmScopedRunner implements Runner {
  private cached: { key: string; scope: Promise<LvmScope> } | null = null;

  constructor(
    readonly inner: Runner,
    private readonly opts: ScopeOptions,
  ) {}

  get dryRun(): boolean {
    return this.inner.dryRun;
  }

  which(tool: string): Promise<string | null> {
    return this.inner.which(tool);
  }

  noteExternal(argv: readonly string[], via: string): void {
    this.inner.noteExternal(argv, via);
  }

  async run(cmd: Command): Promise<CommandResult> {
    return this.inner.run(isLvmTool(cmd.file) ? withDevices(cmd, (await this.scope()).devices) : cmd);
  }

  async pipeline(p: Pipeline): Promise<PipelineResult> {
    if (!p.stages.some((s) => isLvmTool(s.file))) return this.inner.pipeline(p);
    const { devices } = await this.scope();
    return this.inner.pipeline({ ...p, stages: p.stages.map((s) => withDevices(s, devices)) });
  }

  /** A streamed command (udp-receiver for clone receive) is never an LVM tool: passed through. */
  start(cmd: Command): Promise<Started> {
    if (!this.inner.start) throw new InternalError('the runner under the LVM scope cannot stream a command');
    return this.inner.start(cmd);
  }

  /** The scope of this run (decided on first use; again only when the set of disks changed). */
  scope(): Promise<LvmScope> {
    const key = (this.opts.generation ?? blockDevices)();
    if (this.cached?.key !== key) {
      this.cached = { key, scope: resolveLvmScope(this.inner, this.opts) };
    }
    return this.cached.scope;
  }
}

/** The scope of a runner's LVM commands; null for a runner that does not scope them (tests). */
export function lvmScopeOf(runner: Runner): Promise<LvmScope> | null {
  return runner instanceof LvmScopedRunner ? runner.scope() : null;
}

/** The runner under the scope: for the one reader that must see every PV (the factory reset's target check). */
export function unscoped(runner: Runner): Runner {
  return runner instanceof LvmScopedRunner ? runner.inner : runner;
}

/** `--devices a,b` after the tool (after `lvm`'s subcommand); other commands unchanged. */
export function withDevices(cmd: Command, devices: readonly string[] | null): Command {
  if (!devices || !isLvmTool(cmd.file)) return cmd;
  const at = cmd.file === 'lvm' && cmd.args[0] && !cmd.args[0].startsWith('-') ? 1 : 0;
  return {
    ...cmd,
    args: [...cmd.args.slice(0, at), '--devices', devices.join(','), ...cmd.args.slice(at)],
  };
}

/** Read the PVs through the unscoped runner and decide. */
export async function resolveLvmScope(runner: Runner, opts: ScopeOptions): Promise<LvmScope> {
  // Read-only, so it may run after SIGINT/SIGTERM too: the cleanup of an interrupted job (removing
  // its temporary snapshot) must never fail for want of the scope.
  const pvs = parsePvs((await unscoped(runner).run({ ...pvsCommand, runsAfterAbort: true })).stdout);
  const uuids = new Set(pvs.filter((p) => p.vgName === opts.vg).map((p) => p.vgUuid ?? ''));
  if (uuids.size <= 1) return { vg: opts.vg, devices: null, system: null, chosenBy: null, others: [] };
  return decideScope({
    vg: opts.vg,
    systemIds: opts.systemIds,
    pvs,
    disks: await (opts.disks ?? probeDisks)(unscoped(runner)),
  });
}

export interface ScopeInput {
  vg: string;
  systemIds: readonly string[];
  pvs: PvInfo[];
  disks: DiskProbe;
}

/**
 * Which of several VGs of the configured name is the system's, by identity, in this order: the
 * disk the config names (serial/WWN); else the VG under the running root. Anything less certain
 * is refused, naming every VG's disks: acting on the wrong VG would change another box's disk.
 * zshield's own tags are no proof: the other box's disk may be a zshield disk too, and this one not.
 */
export function decideScope(input: ScopeInput): LvmScope {
  const vgs = namedVgs(input);
  const onDisks = (names: readonly string[]) =>
    vgs.filter((v) => v.pvs.some((pv) => names.some((n) => diskOfPv(input.disks.disks, pv)?.name === n)));
  const pick = (chosen: NamedVg[], chosenBy: string): LvmScope | null => {
    if (chosen.length !== 1) return null;
    const system = chosen[0]!;
    return {
      vg: input.vg,
      devices: system.pvs,
      system,
      chosenBy,
      others: vgs.filter((v) => v !== system),
    };
  };
  if (input.systemIds.length) {
    const named = input.disks.disks.filter((d) =>
      input.systemIds.some((id) => id && (d.serial === id || d.wwn === id)),
    );
    const byConfig = pick(
      onDisks(named.map((d) => d.name)),
      `on the system disk the config names (${input.systemIds.join(', ')})`,
    );
    if (byConfig) return byConfig;
    throw ambiguous(
      vgs,
      `none of them alone is on the system disk the config names (${input.systemIds.join(', ')})`,
    );
  }
  const byRoot = pick(onDisks(input.disks.bootDisks), 'it holds the running root file system');
  if (byRoot) return byRoot;
  throw ambiguous(
    vgs,
    "zshield cannot tell which is this system's (name the system disk in the config: disks.system.serial)",
  );
}

function namedVgs(input: ScopeInput): NamedVg[] {
  const byUuid = new Map<string, NamedVg>();
  for (const pv of input.pvs) {
    if (pv.vgName !== input.vg || !pv.pvName.startsWith('/')) continue;
    const uuid = pv.vgUuid ?? '';
    const vg = byUuid.get(uuid) ?? { name: pv.vgName, uuid, pvs: [], disks: [], tags: pv.vgTags ?? [] };
    vg.pvs.push(pv.pvName);
    const disk = diskOfPv(input.disks.disks, pv.pvName);
    const where = disk ? describe(disk) : pv.pvName;
    if (!vg.disks.includes(where)) vg.disks.push(where);
    byUuid.set(uuid, vg);
  }
  return [...byUuid.values()];
}

function diskOfPv(disks: readonly Disk[], pv: string): Disk | undefined {
  return disks.find((d) => d.path === pv || d.partitions.some((p) => p.path === pv));
}

function describe(d: Disk): string {
  const ids = [d.serial && `serial ${d.serial}`, d.wwn && `WWN ${d.wwn}`].filter(Boolean).join(', ');
  return `${d.path}${ids ? ` (${ids})` : ''}`;
}

export const describeVg = (v: NamedVg): string => `${v.name} (uuid ${v.uuid}) on ${v.disks.join(' + ')}`;

function ambiguous(vgs: NamedVg[], why: string): RefusedError {
  return new RefusedError(
    `${vgs.length} volume groups are named ${vgs[0]?.name}: ${vgs.map(describeVg).join('; ')}; ${why}`,
    {
      hint: 'name the system disk in the config (disks.system.serial or .wwn), or detach the other disk; nothing was changed',
    },
  );
}

/** What the preview says about a restricting scope (null when nothing is restricted). */
export function describeScope(s: LvmScope): string | null {
  if (!s.devices || !s.system) return null;
  const others = s.others.map(describeVg).join('; ');
  return `LVM commands see only ${s.devices.join(', ')} (--devices): ${s.vg} there is the system's (${s.chosenBy}); ${others} is another disk's and is never touched`;
}

/**
 * The disks that could hold a PV. Device-mapper nodes are left out: every snapshot zshield makes
 * (the image job's temporary one) adds dm-N, which must not make the run decide again (an image
 * job's cleanup after SIGTERM would then need a new probe).
 */
function blockDevices(): string {
  try {
    return readdirSync('/sys/block')
      .filter((d) => !/^(dm-|loop|ram|zram)/.test(d))
      .sort()
      .join(',');
  } catch {
    return '';
  }
}
