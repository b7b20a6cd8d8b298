import type { CannedReply, RecordingRunner } from '../../../src/system/recording-runner.js';
import { EXTENT, type LvRow, type VgRow, lvsJson, vgsJson } from './lvm-json.js';

/**
 * A stand-in for the LVM command-line tools (not for any zshield module): it answers `vgs`/`lvs`
 * from a small in-memory VG and applies `lvcreate --snapshot`, `lvremove`, `lvrename` and
 * `vgchange --addtag/--deltag` to it, so a probe after a rotation sees what LVM would show.
 * Tests still assert the exact argv transcript the RecordingRunner captured.
 */
export class FakeLvm {
  vg: VgRow;
  lvs: LvRow[];
  /** Epoch seconds stamped as lv_time on LVs that lvcreate makes. */
  createTime = 1763900000;
  private nextMinor = 10;
  private readonly failures = new Map<string, { exitCode: number; stderr: string }>();

  constructor(init: { vg?: Partial<VgRow>; lvs: LvRow[] }) {
    this.vg = { name: 'vgroup', extentBytes: EXTENT, extentCount: 7679, freeExtents: 5000, ...init.vg };
    this.lvs = init.lvs.map((l) => ({ ...l }));
  }

  find(name: string): LvRow | undefined {
    return this.lvs.find((l) => l.name === name);
  }

  /** Make the next call of `tool` fail as LVM would, changing nothing. */
  failOnce(tool: string, reply: { exitCode: number; stderr: string }): this {
    this.failures.set(tool, reply);
    return this;
  }

  install(runner: RecordingRunner): RecordingRunner {
    const handle = (tool: string, fn: (argv: readonly string[]) => CannedReply) =>
      runner.on(
        (argv) => argv[0] === tool,
        (argv) => {
          const failure = this.failures.get(tool);
          this.failures.delete(tool);
          return failure ?? fn(argv);
        },
      );
    handle('vgs', (argv) => {
      // The VG name, when asked for one, is the last argument (after the -o field list).
      const want = argv.at(-1) ?? '';
      if (!want.includes('vg_name') && want !== this.vg.name) {
        return {
          exitCode: 5,
          stderr: `  Volume group "${want}" not found\n  Cannot process volume group ${want}\n`,
        };
      }
      return { stdout: vgsJson([this.vg]) };
    });
    handle('lvs', () => ({ stdout: lvsJson(this.vg.name, this.lvs) }));
    handle('lvcreate', (argv) => this.lvcreate(argv));
    handle('lvremove', (argv) => this.lvremove(argv));
    handle('lvrename', (argv) => this.lvrename(argv));
    handle('vgchange', (argv) => this.vgchange(argv));
    return runner;
  }

  private lvcreate(argv: readonly string[]): CannedReply {
    const opt = (name: string) => argv[argv.indexOf(name) + 1] ?? '';
    const tags = argv.flatMap((a, i) => (argv[i - 1] === '--addtag' ? [a] : []));
    const [, originName] = (argv.at(-1) ?? '').split('/');
    const origin = this.find(originName ?? '');
    if (!argv.includes('--snapshot') || !origin)
      return { exitCode: 5, stderr: '  fake lvcreate: unsupported\n' };
    const bytes = Number(opt('--size').replace(/b$/, ''));
    const extents = Math.ceil(bytes / this.vg.extentBytes);
    if (extents > this.vg.freeExtents) {
      return {
        exitCode: 5,
        stderr: `  Volume group "${this.vg.name}" has insufficient free space (${this.vg.freeExtents} extents): ${extents} required.\n`,
      };
    }
    this.vg.freeExtents -= extents;
    origin.attr = `o${origin.attr.slice(1, 6)}s${origin.attr.slice(7)}`;
    this.lvs.push({
      name: opt('--name'),
      attr: 'swi-a-s---',
      size: extents * this.vg.extentBytes,
      origin: origin.name,
      snapPercent: '0.00',
      tags,
      time: this.createTime,
      minor: this.nextMinor++,
    });
    return { stdout: `  Logical volume "${opt('--name')}" created.\n` };
  }

  private lvremove(argv: readonly string[]): CannedReply {
    const name = (argv.at(-1) ?? '').split('/')[1] ?? '';
    const lv = this.find(name);
    if (!lv) return { exitCode: 5, stderr: `  Failed to find logical volume "${argv.at(-1)}"\n` };
    this.lvs = this.lvs.filter((l) => l !== lv);
    this.vg.freeExtents += Math.ceil(lv.size / this.vg.extentBytes);
    const origin = lv.origin ? this.find(lv.origin) : undefined;
    if (origin && !this.lvs.some((l) => l.origin === origin.name)) {
      origin.attr = `-${origin.attr.slice(1, 6)}-${origin.attr.slice(7)}`;
    }
    return { stdout: `  Logical volume "${name}" successfully removed.\n` };
  }

  private lvrename(argv: readonly string[]): CannedReply {
    const [, , from, to] = argv;
    const lv = this.find(from ?? '');
    if (!lv || !to || this.find(to)) return { exitCode: 5, stderr: '  fake lvrename: cannot rename\n' };
    lv.name = to;
    return { stdout: `  Renamed "${from}" to "${to}" in volume group "${this.vg.name}"\n` };
  }

  /** `vgchange [--addtag T | --deltag T]... VG`: every tag change in one go, as LVM commits them. */
  private vgchange(argv: readonly string[]): CannedReply {
    let tags = this.vg.tags ?? [];
    const ops = argv.slice(1, -1);
    if (ops.length === 0 || ops.length % 2 !== 0)
      return { exitCode: 3, stderr: '  fake vgchange: unsupported\n' };
    for (let i = 0; i < ops.length; i += 2) {
      const [op, tag] = [ops[i], ops[i + 1]!];
      if (op === '--addtag') tags = [...tags.filter((t) => t !== tag), tag];
      else if (op === '--deltag') tags = tags.filter((t) => t !== tag);
      else return { exitCode: 3, stderr: '  fake vgchange: unsupported\n' };
    }
    this.vg.tags = tags;
    return { stdout: `  Volume group "${this.vg.name}" successfully changed\n` };
  }
}
