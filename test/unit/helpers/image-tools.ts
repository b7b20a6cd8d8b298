import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../../src/log/logger.js';
import type { Pipeline, PipelineResult } from '../../../src/system/pipeline.js';
import type { RecordingRunner } from '../../../src/system/recording-runner.js';
import { ExecaRunner, type Runner } from '../../../src/system/runner.js';
import type { Command, CommandResult } from '../../../src/system/command.js';

/** Run a tool for a test's setup; fail loudly. */
export function sh(file: string, args: string[], input?: string): string {
  const r = spawnSync(file, args, {
    encoding: 'utf8',
    input,
    maxBuffer: 256 * 1024 * 1024,
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/**
 * A real ext4 file system in a plain file (no loop device, no root): a small "system" with
 * /etc/fstab and some incompressible data, made by mkfs.ext4 -d.
 */
export function makeExt4(
  file: string,
  opts: { sizeMiB?: number; fstab?: boolean; dataKiB?: number; hostname?: string } = {},
): void {
  const tree = `${file}.tree`;
  mkdirSync(path.join(tree, 'etc'), { recursive: true });
  mkdirSync(path.join(tree, 'usr', 'bin'), { recursive: true });
  if (opts.fstab ?? true)
    writeFileSync(path.join(tree, 'etc', 'fstab'), '/dev/vgroup/lv-root / ext4 defaults 0 1\n');
  writeFileSync(path.join(tree, 'etc', 'hostname'), `${opts.hostname ?? 'appliance7'}\n`);
  // Pseudo-random bytes (fixed seed): data zstd cannot squeeze away.
  let x = 0x12345678;
  const data = Buffer.alloc((opts.dataKiB ?? 512) * 1024);
  for (let i = 0; i < data.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x & 0xff;
  }
  writeFileSync(path.join(tree, 'usr', 'bin', 'appliance-daemon'), data);
  mkdirSync(path.join(tree, 'var', 'lib'), { recursive: true });
  // Large enough to cover whole 4 MiB blocks of dd: see zeroFileBlocks.
  writeFileSync(path.join(tree, 'var', 'lib', 'table.db'), Buffer.alloc(12 * 1024 * 1024, 0x5a));
  sh('truncate', ['-s', `${opts.sizeMiB ?? 32}M`, file]);
  sh('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', tree, file]);
}

/**
 * Overwrite a file's data blocks with zeros in the image itself: blocks that stay allocated and
 * hold zeros (what a database's empty pages are), which mkfs -d and debugfs would make holes of.
 */
export function zeroFileBlocks(image: string, p: string, blockSize = 4096): number {
  const out = sh('debugfs', ['-R', `ex "${p}"`, image]);
  let blocks = 0;
  const fd = openSync(image, 'r+');
  try {
    for (const line of out.split('\n')) {
      // " 0/ 0   1/  1     0 -    15  1551 -  1566     16 "
      const m = /^\s*\d+\/\s*\d+\s+\d+\/\s*\d+\s+\d+\s*-\s*\d+\s+(\d+)\s*-\s*(\d+)\s+\d+\s*$/.exec(line);
      if (!m) continue;
      for (let b = Number(m[1]); b <= Number(m[2]); b++) {
        writeSync(fd, Buffer.alloc(blockSize), 0, blockSize, b * blockSize);
        blocks++;
      }
    }
  } finally {
    closeSync(fd);
  }
  return blocks;
}

/**
 * Turn a file into an orphan, as a snapshot of a running system has them: a file deleted while a
 * process still held it open (unlinked, no links, on the superblock's orphan list).
 */
export function makeOrphan(image: string, p: string): void {
  const ino = /^Inode: (\d+)/m.exec(sh('debugfs', ['-R', `stat "${p}"`, image]))![1];
  sh(
    'debugfs',
    ['-w', '-f', '-', image],
    `unlink ${p}\nsif <${ino}> links_count 0\nssv last_orphan ${ino}\n`,
  );
}

/** `debugfs -R 'cat PATH' FILE`: a file's content inside an ext4 image, without mounting it. */
export function catInImage(image: string, p: string): string {
  return sh('debugfs', ['-R', `cat "${p}"`, image]);
}

const LVM_TOOLS = new Set(['lvs', 'vgs', 'lvcreate', 'lvremove', 'lvrename', 'vgchange', 'lvchange']);

/**
 * For tests of whole image jobs with the real tools: LVM commands go to a RecordingRunner with the
 * fake LVM installed (device-mapper does not work here), everything else runs for real through an
 * ExecaRunner, with device paths (`/dev/vgroup/snap0-image`) rewritten to plain files holding a
 * real file system. `calls` is the transcript as zshield issued it (before the rewriting).
 */
export class HybridRunner implements Runner {
  readonly dryRun = false;
  readonly real: ExecaRunner;
  readonly calls: string[] = [];
  /** Called before each pipeline runs (after recording it); may change files, throw, wait. */
  beforePipeline: ((p: Pipeline) => Promise<void> | void) | null = null;
  /** Called after each pipeline ran. */
  afterPipeline: ((p: Pipeline) => Promise<void> | void) | null = null;
  /** Replace a pipeline's stages before it runs (e.g. a slow source); the transcript keeps the original. */
  rewriteStages: ((stages: readonly Command[]) => Command[]) | null = null;

  constructor(
    readonly lvm: RecordingRunner,
    readonly devices: Map<string, string>,
    opts: { log: Logger; signal?: AbortSignal },
  ) {
    this.real = new ExecaRunner({ log: opts.log, ...(opts.signal ? { signal: opts.signal } : {}) });
  }

  noteExternal(argv: readonly string[], via: string): void {
    this.calls.push(`${argv.join(' ')} (run by ${via})`);
  }

  private map(cmd: Command): Command {
    const args = cmd.args.map((a) => {
      for (const [dev, file] of this.devices) {
        if (a === dev) return file;
        if (a === `of=${dev}`) return `of=${file}`;
        if (a === `if=${dev}`) return `if=${file}`;
      }
      return a;
    });
    return { ...cmd, args };
  }

  async run(cmd: Command): Promise<CommandResult> {
    this.calls.push([cmd.file, ...cmd.args].join(' '));
    if (LVM_TOOLS.has(cmd.file)) return this.lvm.run(cmd);
    return this.real.run(this.map(cmd));
  }

  async pipeline(p: Pipeline): Promise<PipelineResult> {
    this.calls.push(p.stages.map((s) => [s.file, ...s.args].join(' ')).join(' | '));
    await this.beforePipeline?.(p);
    const stages = (this.rewriteStages ? this.rewriteStages(p.stages) : p.stages).map((s) => this.map(s));
    const r = await this.real.pipeline({ ...p, stages });
    await this.afterPipeline?.(p);
    return r;
  }

  async which(tool: string): Promise<string | null> {
    return LVM_TOOLS.has(tool) ? this.lvm.which(tool) : this.real.which(tool);
  }
}
