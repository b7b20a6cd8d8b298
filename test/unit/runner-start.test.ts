import { describe, expect, it } from 'vitest';
import { CommandError, DryRunError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log/logger.js';
import { LvmScopedRunner } from '../../src/system/lvm-scope.js';
import { ExecaRunner } from '../../src/system/runner.js';

// Runner.start: a command whose stdout node reads as a stream (udp-receiver in clone receive).
describe('ExecaRunner.start (real processes)', () => {
  it('streams binary stdout as it comes and settles when the child ends', async () => {
    const runner = new ExecaRunner({ log: memoryLogger() });
    const started = await runner.start({
      file: 'head',
      args: ['-c', '3000000', '/dev/zero'],
      mutates: false,
    });
    let bytes = 0;
    for await (const piece of started.stdout) bytes += (piece as Buffer).length;
    expect(bytes).toBe(3_000_000);
    expect((await started.done).exitCode).toBe(0);
  });

  it("a failing child's done rejects with its stderr; stderr lines reach onLine", async () => {
    const runner = new ExecaRunner({ log: memoryLogger() });
    const lines: string[] = [];
    const started = await runner.start({
      file: 'cat',
      args: ['/nonexistent/file'],
      mutates: false,
      onLine: (l) => lines.push(l),
    });
    started.stdout.resume();
    const err = await started.done.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).stderr).toMatch(/No such file/);
    expect(lines.join('\n')).toMatch(/No such file/);
  });

  it('kill ends a child that would run for ever', async () => {
    const runner = new ExecaRunner({ log: memoryLogger() });
    const started = await runner.start({ file: 'sleep', args: ['1000'], mutates: false });
    started.stdout.resume();
    started.kill('SIGKILL');
    const err = (await started.done.catch((e: unknown) => e)) as CommandError;
    expect(err.signal).toBe('SIGKILL');
  });

  it('dry-run refuses to start a command that changes the system (DryRunError)', async () => {
    const runner = new ExecaRunner({ log: memoryLogger(), dryRun: true });
    await expect(runner.start({ file: 'true', args: [], mutates: true })).rejects.toThrow(DryRunError);
  });
});

describe('LvmScopedRunner.start', () => {
  it('passes a streamed command to the runner under it (the CLI wraps every runner in the LVM scope)', async () => {
    const runner = new LvmScopedRunner(new ExecaRunner({ log: memoryLogger() }), {
      vg: 'vgroup',
      systemIds: [],
    });
    const started = await runner.start({ file: 'head', args: ['-c', '1000', '/dev/zero'], mutates: false });
    let bytes = 0;
    for await (const piece of started.stdout) bytes += (piece as Buffer).length;
    expect(bytes).toBe(1000);
    expect((await started.done).exitCode).toBe(0);
  });
});
