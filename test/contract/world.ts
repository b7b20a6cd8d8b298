import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { inject } from 'vitest';
import { SEA } from '../bundle.js';
import type { RemoteEnv } from '../remote/sshd.js';
import { EXTENT, type LvRow, lvsJson, vgsJson } from '../unit/helpers/lvm-json.js';

/**
 * The world a contract case runs in: a config, state, history, image and target folders and disk
 * files under one temporary folder, stand-in tools on PATH, and the secrets the case gave the box.
 * Everything but the log and the stand-ins is watched: hashed before a dry run and after it.
 */
export class World {
  readonly dir: string;
  readonly bin: string;
  readonly configFile: string;
  readonly logFile: string;
  readonly stateDir: string;
  readonly runDir: string;
  readonly eventLog: string;
  readonly historyDir: string;
  readonly imageDir: string;
  readonly targets: string;
  readonly disks: string;
  /** Strings no JSON document and no log line may hold (passwords, keys, recovery-file secrets). */
  readonly secrets: string[] = [];
  /** Folders outside `dir` the case's command could write (an sshd target's folder). */
  readonly watchedOutside: string[] = [];
  /** What zshield.conf holds (written by writeConfig; every path in it points into `dir`). */
  config: Record<string, unknown>;

  constructor() {
    this.dir = mkdtempSync('/tmp/zshield-contract-');
    chmodSync(this.dir, 0o755);
    const sub = (p: string) => {
      const d = path.join(this.dir, p);
      mkdirSync(d, { recursive: true });
      return d;
    };
    this.bin = sub('bin');
    sub('etc');
    sub('log');
    this.configFile = path.join(this.dir, 'etc', 'zshield.conf');
    this.logFile = path.join(this.dir, 'log', 'zshield.log');
    this.stateDir = sub('state');
    this.runDir = sub('run');
    this.eventLog = path.join(sub('boot'), 'events.jsonl');
    this.historyDir = path.join(this.dir, 'history');
    this.imageDir = sub('images');
    this.targets = sub('targets');
    this.disks = sub('disks');
    this.config = {
      log: { file: this.logFile, level: 'debug' },
      paths: { stateDir: this.stateDir, runDir: this.runDir, eventLog: this.eventLog },
      image: { dir: this.imageDir },
      history: {
        dir: this.historyDir,
        keyFile: path.join(this.dir, 'etc', 'history.key'),
        cacheDir: path.join(this.dir, 'cache', 'restic'),
        mountPoint: path.join(this.dir, 'mnt', 'history'),
      },
    };
    this.writeConfig();
    for (const tool of MUTATING_TOOLS) this.tool(tool, marker(tool, this.dir));
  }

  /** The remote tests' two sshd and test users (test/remote/global-setup.ts). */
  static remote(): RemoteEnv {
    return inject('remote');
  }

  writeConfig(): void {
    writeFileSync(this.configFile, `${JSON.stringify(this.config, null, 2)}\n`, { mode: 0o600 });
  }

  /** Merge settings into the config (one level deep per section) and write it. */
  set(section: string, values: Record<string, unknown>): void {
    // The binary may have written the file since (history init pins its key there).
    this.config = JSON.parse(readFileSync(this.configFile, 'utf8')) as Record<string, unknown>;
    const old = (this.config[section] ?? {}) as Record<string, unknown>;
    this.config[section] = { ...old, ...values };
    this.writeConfig();
  }

  /** A stand-in tool on PATH: a shell script (the body after `#!/bin/sh`). */
  tool(name: string, body: string): void {
    const file = path.join(this.bin, name);
    writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  }

  /** A stand-in that prints a recorded output (a file's content) and exits 0. */
  recorded(name: string, output: string): void {
    const file = path.join(this.dir, 'log', `${name}.out`);
    writeFileSync(file, output);
    this.tool(name, `cat '${file}'`);
  }

  /**
   * LVM as a healthy box reports it: `vgs`, `lvs` and `pvs` print the JSON reports LVM 2.03 prints
   * (test/unit/helpers/lvm-json.ts) for one VG on `pv`; the mutating LVM tools stay markers.
   */
  lvm(opts: { vg?: string; lvs: LvRow[]; pv?: string; freeExtents?: number; vgTags?: string[] }): void {
    const vg = opts.vg ?? 'vgroup';
    this.recorded(
      'vgs',
      vgsJson([
        {
          name: vg,
          extentBytes: EXTENT,
          extentCount: 7679,
          freeExtents: opts.freeExtents ?? 2000,
          ...(opts.vgTags ? { tags: opts.vgTags } : {}),
        },
      ]),
    );
    this.recorded('lvs', lvsJson(vg, opts.lvs));
    const pv = {
      pv_name: opts.pv ?? '/dev/vda2',
      vg_name: vg,
      vg_uuid: 'contract-vg-uuid',
      vg_tags: (opts.vgTags ?? []).join(','),
    };
    this.recorded('pvs', JSON.stringify({ report: [{ pv: [pv] }] }));
  }

  /** A stand-in of a tool that changes something: it only leaves its mark in the watched world. */
  mutating(name: string): void {
    this.tool(name, marker(name, this.dir));
  }

  /**
   * The block devices as `lsblk -bP` lists them (systeminformation's probe, system/disks.ts): each
   * disk with its serial and size, nothing mounted. Disks are stand-ins: nothing opens them.
   */
  disksSeen(disks: { name: string; serial: string; sizeBytes: number }[]): void {
    const row = (d: { name: string; serial: string; sizeBytes: number }) =>
      `NAME="${d.name}" TYPE="disk" SIZE="${d.sizeBytes}" FSTYPE="" MOUNTPOINT="" UUID="" ROTA="1" RO="0" RM="0" TRAN="" SERIAL="${d.serial}" LABEL="" MODEL="QEMU" OWNER="root"`;
    this.recorded('lsblk', `${disks.map(row).join('\n')}\n`);
  }

  /** The built binary, as an operator runs it: `zshield -c CONFIG ARGS...`. */
  private isolated = false;

  /**
   * From now on this world's commands run in a network namespace of their own (`unshare --net`)
   * holding only loopback and one veth pair, 198.18.99.1/24 on `zs0`, whose name is returned: the
   * interface for `clone send`. Multicast cloning never runs on the host's network, not even a
   * dry run or a refusal (the suite runs as root, as the gate does).
   */
  isolateNetwork(): string {
    this.isolated = true;
    return NETNS_INTERFACE;
  }

  zshield(
    args: string[],
    opts: { input?: string; timeoutMs?: number; config?: string | null; realTools?: boolean } = {},
  ): Promise<Run> {
    const config =
      opts.config === undefined ? ['-c', this.configFile] : opts.config ? ['-c', opts.config] : [];
    const argv = [SEA, ...config, ...args];
    const [file, ...rest] = this.isolated
      ? ['/usr/bin/unshare', '--net', '--', '/bin/sh', '-c', NETNS_UP, 'sh', ...argv]
      : argv;
    const child = spawn(file!, rest, {
      // The fixtures' own setup (a real history take) runs with the real tools.
      env: { PATH: opts.realTools ? BASE_PATH : `${this.bin}:${BASE_PATH}`, HOME: '/root', LANG: 'C' },
      timeout: opts.timeoutMs ?? 110_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, stdout, stderr, argv: args }));
    });
  }

  /** Path -> hash of everything watched: `dir` but its log, run folder and stand-ins, and the outside folders. */
  snapshot(): Map<string, string> {
    const out = new Map<string, string>();
    // The run folder (lock and pid files, a tmpfs on a box) is not part of the watched world.
    const skip = new Set([this.bin, this.runDir, path.join(this.dir, 'log')]);
    const walk = (p: string) => {
      if (skip.has(p)) return;
      let st: ReturnType<typeof lstatSync>;
      try {
        st = lstatSync(p);
      } catch {
        return;
      }
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out.set(p, `link ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.set(p, `dir ${mode}`);
        for (const n of readdirSync(p)) walk(path.join(p, n));
      } else if (st.isFile()) {
        out.set(p, `file ${mode} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
      } else out.set(p, `other ${mode}`);
    };
    walk(this.dir);
    for (const d of this.watchedOutside) walk(d);
    return out;
  }

  logText(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  argv: string[];
}

const BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const NETNS_INTERFACE = 'zs0';
/** Run inside `unshare --net` before the command: loopback and the veth pair up, the address set. */
const NETNS_UP = [
  'ip link set lo up',
  `ip link add ${NETNS_INTERFACE} type veth peer name zs1`,
  `ip addr add 198.18.99.1/24 dev ${NETNS_INTERFACE}`,
  'ip link set zs1 up',
  `ip link set ${NETNS_INTERFACE} up`,
  'exec "$@"',
].join(' && ');

/**
 * The tools that change a disk, a volume or a boot loader. In every world they are stand-ins that,
 * if a dry run ever ran one, leave a mark in the watched world (and do nothing else): a forgotten
 * check cannot wipe this machine's disks, and the case sees it.
 */
const MUTATING_TOOLS = [
  'lvcreate',
  'lvremove',
  'lvconvert',
  'lvrename',
  'lvchange',
  'lvextend',
  'lvresize',
  'vgcreate',
  'vgremove',
  'vgchange',
  'vgrename',
  'pvcreate',
  'pvremove',
  'sfdisk',
  'wipefs',
  'mkfs.ext4',
  'mkfs.vfat',
  'mkswap',
  'grub-install',
  'grub2-install',
  'grub-mkconfig',
  'grub2-mkconfig',
  'grub-editenv',
  'grub2-editenv',
  'mount',
  'umount',
  'reboot',
  'poweroff',
  'dd',
  'udp-sender',
  'udp-receiver',
  // Filling and finishing a new root (a factory reset, golden prepare, an image restore).
  'rsync',
  'chroot',
  'tee',
  'sync',
  'resize2fs',
  'update-initramfs',
  'blkdiscard',
];

function marker(tool: string, dir: string): string {
  return `mkdir -p '${dir}/mutated' && echo "$*" >> '${dir}/mutated/${tool}'\nexit 0`;
}

/** Runs the binary for a fixture's setup (real tools); throws unless it exits 0. */
export async function setUp(w: World, args: string[], input?: string): Promise<string> {
  const r = await w.zshield(args, { realTools: true, ...(input === undefined ? {} : { input }) });
  if (r.code !== 0)
    throw new Error(`fixture: zshield ${args.join(' ')} -> ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** A capability's fixtures: one per command of the tree it owns (keyed `golden image make`). */
export type Fixtures = Record<string, Fixture>;

export interface Fixture {
  /** The command has no dry run (or no --json): the reason, listed by the suite. */
  noDryRun?: string;
  /** Why the command has no --json document (its output is a secret by design). */
  noJson?: string;
  /**
   * Commands with the same key share one world, made once (its setup is slow: a history with a
   * backup on a target). Each dry run must leave it as it was, so sharing hides nothing.
   */
  shared?: string;
  /** Changes nothing: no plan, its dry run is an ordinary read (status, list, verify). */
  readOnly?: boolean;
  /**
   * Makes `w` a world in which every check of the command passes (a healthy box), and returns the
   * words after the command's own (positionals and options) for its dry run.
   */
  healthy?: (w: World) => string[] | Promise<string[]>;
  /** What the dry run reads on stdin (a password for --password-stdin). */
  input?: (w: World) => string;
}
