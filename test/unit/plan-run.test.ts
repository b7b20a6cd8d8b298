import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { InterruptedError, RefusedError } from '../../src/errors.js';
import { type Plan, formatPlan, planToJson, toolsOf } from '../../src/plan/plan.js';
import { progressParsers } from '../../src/plan/progress.js';
import { runPlan } from '../../src/plan/run.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { StreamPrompter } from '../../src/system/prompt.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';

const cmd = (file: string, ...args: string[]) => ({ file, args, mutates: true });

function fixture(opts: { dryRun?: boolean; runner?: RecordingRunner } = {}) {
  const t = tempDir();
  const runner = opts.runner ?? new RecordingRunner(opts.dryRun ?? false);
  const ctx = testContext({
    runner,
    dir: t.dir,
    clock: new FakeClock(new Date(0)),
    dryRun: opts.dryRun ?? false,
  });
  return { ctx, runner, cleanup: t.cleanup };
}

let cleanup: () => void = () => {};
afterEach(() => cleanup());

function samplePlan(log: string[]): Plan {
  return {
    title: 'Sample',
    notes: ['a note'],
    checks: [{ title: 'the disk is there', run: () => void log.push('check') }],
    steps: [
      { title: 'one', command: cmd('mkfs.ext4', '/dev/x') },
      { title: 'two', pipeline: { stages: [cmd('zstd', '-d'), cmd('dd', 'of=/dev/x')], mutates: true } },
      { title: 'edit', edit: { files: ['/etc/fstab'], root: '/mnt', apply: () => void log.push('edit') } },
      {
        title: 'maybe',
        when: { text: 'if a capture exists', holds: () => false },
        command: cmd('rsync', 'a', 'b'),
      },
    ],
    always: [{ title: 'unmount', command: cmd('umount', '/mnt') }],
    later: [{ title: 'finish at boot', command: cmd('lvm', 'lvpoll') }],
  };
}

describe('runPlan', () => {
  it('prints every step, its condition, the always and the after-boot parts; JSON has the same steps', () => {
    const text = formatPlan(samplePlan([]));
    expect(text).toContain('checks first: the disk is there');
    expect(text).toContain('4. maybe (only if a capture exists)');
    expect(text).toContain('(zshield writes /mnt/etc/fstab)');
    expect(text).toContain('$ zstd -d | dd of=/dev/x');
    expect(text).toMatch(/always, at the end[^\n]*\n {2}5\. unmount/);
    expect(text).toMatch(/after the next boot:\n {2}6\. finish at boot/);
    const json = planToJson(samplePlan([])) as {
      steps: { title: string }[];
      always: unknown[];
      later: unknown[];
    };
    expect(json.steps.map((s) => s.title)).toEqual(['one', 'two', 'edit', 'maybe']);
    expect(json.always).toHaveLength(1);
    expect(json.later).toHaveLength(1);
    expect(toolsOf(samplePlan([]))).toEqual(['mkfs.ext4', 'zstd', 'dd', 'rsync', 'umount']);
  });

  it('applies exactly the printed steps, skips an unmet condition, runs always, never the later part', async () => {
    const f = fixture();
    cleanup = f.cleanup;
    const log: string[] = [];
    const r = await runPlan(f.ctx, samplePlan(log), { confirm: 'yes' });
    expect(f.runner.transcript()).toEqual([
      '$ mkfs.ext4 /dev/x',
      '$ zstd -d | dd of=/dev/x',
      '$ umount /mnt',
    ]);
    expect(log).toEqual(['check', 'edit']);
    expect(r).toEqual({ applied: true, ran: ['one', 'two', 'edit', 'unmount'], skipped: ['maybe'] });
  });

  it('a dry run shows and checks, and runs nothing', async () => {
    const f = fixture({ dryRun: true });
    cleanup = f.cleanup;
    const log: string[] = [];
    const r = await runPlan(f.ctx, samplePlan(log), { confirm: 'ask' });
    expect(r.applied).toBe(false);
    expect(f.runner.calls).toEqual([]);
    expect(log).toEqual(['check']);
    expect(f.ctx.printed.join('\n')).toContain('1. one');
  });

  it('a failing check or a missing tool stops it before the first step', async () => {
    const f = fixture({ runner: new RecordingRunner().withoutTool('dd') });
    cleanup = f.cleanup;
    await expect(runPlan(f.ctx, samplePlan([]), { confirm: 'yes' })).rejects.toThrow(
      /required tool not found: dd/,
    );
    const plan = samplePlan([]);
    plan.checks = [
      {
        title: 'no',
        run: () => {
          throw new RefusedError('the disk is too small');
        },
      },
    ];
    const g = fixture();
    await expect(runPlan(g.ctx, plan, { confirm: 'yes' })).rejects.toThrow(/too small/);
    expect(f.runner.calls).toEqual([]);
    expect(g.runner.calls).toEqual([]);
    g.cleanup();
  });

  it('a dry run shown as JSON prints its plan only once every check passed: a failed check leaves stdout to the error', async () => {
    const failing = samplePlan([]);
    failing.checks = [
      {
        title: 'no',
        run: () => {
          throw new RefusedError('the disk is too small');
        },
      },
    ];
    const f = fixture({ dryRun: true });
    cleanup = f.cleanup;
    await expect(runPlan(f.ctx, failing, { confirm: 'ask', show: 'json' })).rejects.toThrow(/too small/);
    expect(f.ctx.printed).toEqual([]);
    const log: string[] = [];
    const g = fixture({ dryRun: true });
    await runPlan(g.ctx, samplePlan(log), { confirm: 'ask', show: 'json' });
    expect(log).toEqual(['check']);
    expect(JSON.parse(g.ctx.printed.join('\n'))).toMatchObject({ title: 'Sample' });
    g.cleanup();
  });

  it('without --yes it refuses, having run nothing', async () => {
    const f = fixture();
    cleanup = f.cleanup;
    await expect(runPlan(f.ctx, samplePlan([]), { confirm: 'ask' })).rejects.toBeInstanceOf(RefusedError);
    expect(f.runner.calls).toEqual([]);
  });

  it('a failing step still runs the always steps, and the failure is reported', async () => {
    const f = fixture({ runner: new RecordingRunner().on('zstd', { exitCode: 1, stderr: 'bad frame' }) });
    cleanup = f.cleanup;
    await expect(runPlan(f.ctx, samplePlan([]), { confirm: 'yes' })).rejects.toThrow(/zstd failed/);
    expect(f.runner.transcript()).toEqual([
      '$ mkfs.ext4 /dev/x',
      '$ zstd -d | dd of=/dev/x',
      '$ umount /mnt',
    ]);
  });

  it("a failing step's error is the one reported when an always step fails after it too (a mount, then its unmount)", async () => {
    const f = fixture({
      runner: new RecordingRunner()
        .on('mount', { exitCode: 32, stderr: 'mount: wrong fs type' })
        .on('umount', { exitCode: 32, stderr: 'umount: /mnt: not mounted' }),
    });
    cleanup = f.cleanup;
    const plan: Plan = {
      title: 'Mount and write',
      notes: [],
      steps: [{ title: 'mount', command: cmd('mount', '/dev/x', '/mnt') }],
      always: [{ title: 'unmount', command: cmd('umount', '/mnt') }],
    };
    await expect(runPlan(f.ctx, plan, { confirm: 'yes' })).rejects.toThrow(/wrong fs type/);
    expect(f.runner.transcript()).toEqual(['$ mount /dev/x /mnt', '$ umount /mnt']);
    expect(f.ctx.log.lines).toContainEqual(expect.stringMatching(/^warn: unmount failed: .*not mounted/));
    // Alone, a failing always step is the failure.
    const g = fixture({ runner: new RecordingRunner().on('umount', { exitCode: 32, stderr: 'busy' }) });
    await expect(runPlan(g.ctx, plan, { confirm: 'yes' })).rejects.toThrow(/busy/);
    g.cleanup();
  });

  it("a step's progress: plain lines on the console; with the plan shown as JSON (stdout one document) in the log file only", async () => {
    for (const show of ['out', 'json'] as const) {
      const f = fixture({
        runner: new RecordingRunner().on('rsync', {
          stdout: '     1,048,576  50%   10.00MB/s    0:00:01\n     2,097,152 100%   10.00MB/s    0:00:02\n',
        }),
      });
      cleanup = f.cleanup;
      const console: string[] = [];
      const file: string[] = [];
      f.ctx.log = {
        ...f.ctx.log,
        info: (m: string) => void console.push(m),
        toFile: (_l: string, m: string) => void file.push(m),
      };
      const plan: Plan = {
        title: 'Copy',
        notes: [],
        steps: [{ title: 'copy', command: cmd('rsync', 'a', 'b'), progress: progressParsers.rsync }],
      };
      await runPlan(f.ctx, plan, { confirm: 'yes', show });
      const progress = (lines: string[]) => lines.filter((l) => /\d%/.test(l));
      if (show === 'out') expect(progress(console)).toHaveLength(2);
      else {
        expect(progress(console)).toEqual([]);
        expect(progress(file)).toEqual([
          '  50% 1,048,576  50%   10.00MB/s    0:00:01',
          '  100% 2,097,152 100%   10.00MB/s    0:00:02',
        ]);
      }
      f.cleanup();
    }
  });

  it('the console countdown: c and Enter cancels with nothing run', async () => {
    const f = fixture();
    cleanup = f.cleanup;
    f.ctx.config.recovery.countdownSeconds = 30;
    const input = new PassThrough();
    const output = new PassThrough();
    const prompter = new StreamPrompter(input, output);
    input.write('c\n');
    await expect(
      runPlan(f.ctx, samplePlan([]), { confirm: 'countdown', what: 'The reset', prompter }),
    ).rejects.toBeInstanceOf(InterruptedError);
    expect(f.runner.calls).toEqual([]);
    expect(String(output.read())).toContain('The reset starts in 30 s');
    prompter.close();
  });
});
