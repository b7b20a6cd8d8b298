import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CommandError, DryRunError, InterruptedError, MissingToolError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log/logger.js';
import { pidAlive } from '../../src/system/lock.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { ExecaRunner } from '../../src/system/runner.js';
import { tempDir, waitFor } from './helpers/context.js';

// The two-process pipeline with real processes: data goes child to child, failures are told
// apart, dry-run skips, and a signal stops every stage.

describe('runner.pipeline (real processes)', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir('zshield-pipe-'));
  });
  afterEach(() => cleanup());

  it('joins stdout to stdin without a shell: the bytes arrive intact', async () => {
    const src = path.join(dir, 'src.bin');
    const data = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
    writeFileSync(src, data);
    const out = path.join(dir, 'out.zst');
    const log = memoryLogger();
    const r = await new ExecaRunner({ log }).pipeline({
      mutates: true,
      stages: [
        { file: 'cat', args: [src], mutates: false },
        { file: 'zstd', args: ['-q', '--check', '-f', '-o', out], mutates: true },
      ],
    });
    expect(r.skipped).toBe(false);
    expect(r.stages.map((s) => s.exitCode)).toEqual([0, 0]);
    expect(log.lines).toContain(`info: $ cat ${src} | zstd -q --check -f -o ${out}`);
    const back = await new ExecaRunner({ log }).pipeline({
      mutates: false,
      stages: [
        { file: 'zstd', args: ['-d', '-c', '-q', out], mutates: false },
        { file: 'sha256sum', args: [], mutates: false },
      ],
    });
    expect(back.stages[1]!.stdout.split(' ')[0]).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('a failing first stage is the error (the second sees a normal end of input)', async () => {
    const err = await new ExecaRunner({ log: memoryLogger() })
      .pipeline({
        mutates: true,
        stages: [
          { file: 'cat', args: [path.join(dir, 'missing')], mutates: false },
          { file: 'zstd', args: ['-q', '-f', '-o', path.join(dir, 'o.zst')], mutates: true },
        ],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).argv[0]).toBe('cat');
    expect((err as CommandError).message).toMatch(/^cat failed \(exit 1\): .*No such file or directory/);
  });

  it('a failing last stage is the error, not the broken pipe it causes upstream', async () => {
    const err = await new ExecaRunner({ log: memoryLogger() })
      .pipeline({
        mutates: true,
        stages: [
          { file: 'cat', args: ['/dev/zero'], mutates: false },
          // zstd cannot write its output: it fails, and cat then dies on the closed pipe.
          { file: 'zstd', args: ['-q', '-o', path.join(dir, 'no', 'such', 'dir', 'o.zst')], mutates: true },
        ],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).argv[0]).toBe('zstd');
  });

  it('okCodes and onLine per stage; progress split on \\r', async () => {
    const lines: string[] = [];
    const r = await new ExecaRunner({ log: memoryLogger() }).pipeline({
      mutates: false,
      stages: [
        {
          file: 'printf',
          args: ['x'],
          mutates: false,
        },
        {
          file: 'sh',
          args: ['-c', 'cat >/dev/null; printf "a 10%%\\ra 50%%\\rdone\\n" >&2; exit 3'],
          mutates: false,
          okCodes: [0, 3],
          onLine: (l, s) => lines.push(`${s}:${l}`),
        },
      ],
    });
    expect(r.stages[1]!.exitCode).toBe(3);
    expect(lines).toEqual(['stderr:a 10%', 'stderr:a 50%', 'stderr:done']);
  });

  it('a missing tool is a MissingToolError before anything starts', async () => {
    const marker = path.join(dir, 'ran');
    const err = await new ExecaRunner({ log: memoryLogger() })
      .pipeline({
        mutates: true,
        stages: [
          { file: 'touch', args: [marker], mutates: true },
          { file: 'no-such-tool-zshield', args: [], mutates: true },
        ],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingToolError);
    expect(existsSync(marker)).toBe(false);
  });

  it('dry-run refuses a mutating pipeline (DryRunError naming it), running no stage', async () => {
    const out = path.join(dir, 'o.zst');
    const log = memoryLogger();
    const r = new ExecaRunner({ log, dryRun: true }).pipeline({
      mutates: true,
      stages: [
        { file: 'cat', args: ['/etc/hostname'], mutates: false },
        { file: 'zstd', args: ['-q', '-o', out], mutates: true },
      ],
    });
    await expect(r).rejects.toThrow(new DryRunError(`cat /etc/hostname | zstd -q -o ${out}`));
    expect(existsSync(out)).toBe(false);
  });

  it("the pipeline's own signal stops every stage at once (a slow source)", async () => {
    const pids = [path.join(dir, 'a.pid'), path.join(dir, 'b.pid')];
    const abort = new AbortController();
    const run = new ExecaRunner({ log: memoryLogger() }).pipeline({
      mutates: true,
      signal: abort.signal,
      stages: [
        // A source that writes a little and then stalls, as e2image on a slow disk.
        { file: 'sh', args: ['-c', `echo $$ > ${pids[0]}; echo start; exec sleep 3600`], mutates: false },
        {
          file: 'sh',
          args: ['-c', `echo $$ > ${pids[1]}; exec cat > ${path.join(dir, 'out')}`],
          mutates: true,
        },
      ],
    });
    await waitFor(
      () => pids.every((p) => existsSync(p) && readFileSync(p, 'utf8').trim() !== ''),
      'both stages',
    );
    abort.abort();
    const err = await run.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InterruptedError);
    for (const p of pids) expect(pidAlive(Number(readFileSync(p, 'utf8')))).toBe(false);
  });

  it("the runner's signal stops it too, and an aborted runner starts nothing", async () => {
    const abort = new AbortController();
    const runner = new ExecaRunner({ log: memoryLogger(), signal: abort.signal });
    const run = runner.pipeline({
      mutates: false,
      stages: [
        { file: 'sleep', args: ['60'], mutates: false },
        { file: 'cat', args: [], mutates: false },
      ],
    });
    setTimeout(() => abort.abort(), 100);
    await expect(run).rejects.toBeInstanceOf(InterruptedError);
    const marker = path.join(dir, 'later');
    await expect(
      runner.pipeline({ mutates: true, stages: [{ file: 'touch', args: [marker], mutates: true }] }),
    ).rejects.toBeInstanceOf(InterruptedError);
    expect(existsSync(marker)).toBe(false);
    // Cleanup of what the job made still runs after the signal.
    await runner.run({ file: 'touch', args: [marker], mutates: true, runsAfterAbort: true });
    expect(existsSync(marker)).toBe(true);
  });
});

describe('RecordingRunner.pipeline', () => {
  it('records the stages, answers each from the rules, and reports the last failing stage', async () => {
    const r = new RecordingRunner().on('zstd', { exitCode: 1, stderr: 'zstd: error 70 : Write error\n' });
    const err = await r
      .pipeline({
        mutates: true,
        stages: [
          { file: 'e2image', args: ['-ra', '-p', '/dev/vgroup/snap0', '-'], mutates: false },
          { file: 'zstd', args: ['-o', '/diskbackup/x.part'], mutates: true },
        ],
      })
      .catch((e: unknown) => e);
    expect((err as CommandError).message).toBe('zstd failed (exit 1): zstd: error 70 : Write error');
    expect(r.transcript()).toEqual(['$ e2image -ra -p /dev/vgroup/snap0 - | zstd -o /diskbackup/x.part']);
    expect(r.calls[0]!.stages).toEqual([
      ['e2image', '-ra', '-p', '/dev/vgroup/snap0', '-'],
      ['zstd', '-o', '/diskbackup/x.part'],
    ]);
  });

  it('dry-run: refused (DryRunError) and shown with !', async () => {
    const r = new RecordingRunner(true);
    const res = r.pipeline({
      mutates: true,
      stages: [
        { file: 'zstd', args: ['-dc', 'a'], mutates: false },
        { file: 'dd', args: ['of=/dev/x'], mutates: true },
      ],
    });
    await expect(res).rejects.toThrow(DryRunError);
    expect(r.transcript()).toEqual(['! zstd -dc a | dd of=/dev/x']);
  });
});
