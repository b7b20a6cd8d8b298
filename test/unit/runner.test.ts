import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CommandError, DryRunError, InterruptedError, MissingToolError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log/logger.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { ExecaRunner } from '../../src/system/runner.js';
import { formatArgv } from '../../src/system/command.js';
import { requireTools } from '../../src/system/tools.js';
import { tempDir } from './helpers/context.js';

// Real processes: the programs are coreutils and sh, as on any Linux box.
const PRINTF = existsSync('/usr/bin/printf') ? '/usr/bin/printf' : '/bin/printf';
const ENV = existsSync('/usr/bin/env') ? '/usr/bin/env' : '/bin/env';

describe('ExecaRunner (real processes)', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  it('passes every argument verbatim: no shell, no splitting, no expansion', async () => {
    const log = memoryLogger();
    const runner = new ExecaRunner({ log });
    const tricky = [
      'two words',
      `it's "quoted"`,
      '$(touch pwned)',
      '`id`',
      '*',
      '~',
      '; rm -rf x',
      '',
      'a\\b',
    ];
    const res = await runner.run({ file: PRINTF, args: ['%s\\n', ...tricky], mutates: false, cwd: dir });
    expect(res.stdout).toBe(tricky.map((a) => `${a}\n`).join(''));
    expect(res.exitCode).toBe(0);
    expect(res.skipped).toBe(false);
    expect(res.argv).toEqual([PRINTF, '%s\\n', ...tricky]);
    expect(existsSync(path.join(dir, 'pwned'))).toBe(false);
    expect(log.lines).toContain(`debug: $ ${formatArgv(res.argv)}`);
  });

  it('finds a tool by name on the PATH it was given', async () => {
    const runner = new ExecaRunner({ log: memoryLogger(), pathEnv: path.dirname(PRINTF) });
    expect(await runner.which('printf')).toBe(PRINTF);
    expect((await runner.run({ file: 'printf', args: ['x'], mutates: false })).stdout).toBe('x');
  });

  it('a non-zero exit is a CommandError carrying argv, code and stderr', async () => {
    const runner = new ExecaRunner({ log: memoryLogger() });
    const err = await runner
      .run({
        file: 'sh',
        args: ['-c', 'echo partial; echo "  Volume group \\"vgx\\" not found" >&2; exit 5'],
        mutates: false,
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    const ce = err as CommandError;
    expect(ce.code).toBe(5);
    expect(ce.signal).toBeUndefined();
    expect(ce.stdout).toBe('partial\n');
    expect(ce.stderr).toBe('  Volume group "vgx" not found\n');
    expect(ce.argv[0]).toBe('sh');
    expect(ce.message).toBe('sh failed (exit 5): Volume group "vgx" not found');
    expect(ce.exitCode).toBe(8);
  });

  it('a command that never started says why (the spawn error), not "exit ?"', async () => {
    const runner = new ExecaRunner({ log: memoryLogger() });
    const gone = path.join(dir, 'no-such-folder');
    for (const run of [
      () => runner.run({ file: PRINTF, args: ['x'], mutates: false, cwd: gone }),
      () => runner.start({ file: PRINTF, args: ['x'], mutates: false, cwd: gone }).then((s) => s.done),
    ]) {
      const err = await run().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      const ce = err as CommandError;
      expect(ce.code).toBeUndefined();
      expect(ce.message).toMatch(new RegExp(`^${PRINTF} failed \\(did not start: .*ENOENT`));
      expect(ce.message).not.toContain('exit ?');
    }
  });

  it('okCodes: listed non-zero exits are results, not errors', async () => {
    const runner = new ExecaRunner({ log: memoryLogger() });
    const res = await runner.run({ file: 'sh', args: ['-c', 'exit 1'], mutates: false, okCodes: [0, 1] });
    expect(res.exitCode).toBe(1);
    await expect(
      runner.run({ file: 'sh', args: ['-c', 'exit 2'], mutates: false, okCodes: [0, 1] }),
    ).rejects.toThrow(CommandError);
  });

  it('a missing tool is a MissingToolError before anything is spawned', async () => {
    const log = memoryLogger();
    const runner = new ExecaRunner({ log, pathEnv: dir });
    expect(await runner.which('zshield-no-such-tool')).toBeNull();
    const err = await runner
      .run({ file: 'zshield-no-such-tool', args: [], mutates: false })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingToolError);
    expect((err as MissingToolError).tool).toBe('zshield-no-such-tool');
    expect((err as MissingToolError).exitCode).toBe(4);
    expect(log.lines.some((l) => l.includes('$ '))).toBe(false);
    // An absolute path that does not exist, and a file that is not executable, are missing too.
    await expect(runner.run({ file: path.join(dir, 'nope'), args: [], mutates: false })).rejects.toThrow(
      MissingToolError,
    );
    writeFileSync(path.join(dir, 'notexec'), '#!/bin/sh\n', { mode: 0o644 });
    await expect(runner.run({ file: 'notexec', args: [], mutates: false })).rejects.toThrow(MissingToolError);
  });

  it('requireTools names every missing tool at once, with an lvm2 hint for LVM tools', async () => {
    const runner = new ExecaRunner({ log: memoryLogger(), pathEnv: dir });
    const err = (await requireTools(runner, ['lvs', 'vgs', 'lvs']).catch(
      (e: unknown) => e,
    )) as MissingToolError;
    expect(err).toBeInstanceOf(MissingToolError);
    expect(err.message).toBe('required tool not found: lvs, vgs');
    expect(err.hint).toMatch(/lvm2/);
    await expect(requireTools(new ExecaRunner({ log: memoryLogger() }), ['sh'])).resolves.toBeUndefined();
  });

  it('dry-run refuses mutating commands (DryRunError, without even looking for them), never skips them silently, and runs read-only ones', async () => {
    const log = memoryLogger();
    const runner = new ExecaRunner({ log, dryRun: true });
    const marker = path.join(dir, 'marker');
    const refused = await runner.run({ file: 'touch', args: [marker], mutates: true }).catch((e) => e);
    expect(refused).toBeInstanceOf(DryRunError);
    expect(refused.exitCode).toBe(1);
    expect(refused.message).toBe(`dry run: refused to change anything (touch ${marker})`);
    expect(existsSync(marker)).toBe(false);
    await expect(runner.run({ file: 'zshield-no-such-tool', args: [], mutates: true })).rejects.toThrow(
      DryRunError,
    );
    await expect(runner.start({ file: 'touch', args: [marker], mutates: true })).rejects.toThrow(DryRunError);
    expect(existsSync(marker)).toBe(false);
    const read = await runner.run({ file: PRINTF, args: ['read-only'], mutates: false });
    expect(read).toMatchObject({ stdout: 'read-only', skipped: false });
  });

  it('the child gets a small fixed environment: no inherited secrets, C locale, extra env passed', async () => {
    process.env['ZSHIELD_TEST_SECRET'] = 'hunter2';
    try {
      const runner = new ExecaRunner({ log: memoryLogger(), pathEnv: '/usr/bin:/bin' });
      const res = await runner.run({ file: ENV, args: [], mutates: false, env: { ZSHIELD_EXTRA: 'yes' } });
      const vars = Object.fromEntries(
        res.stdout
          .trim()
          .split('\n')
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
      expect(vars['ZSHIELD_TEST_SECRET']).toBeUndefined();
      expect(res.stdout).not.toContain('hunter2');
      expect(vars['HOME']).toBeUndefined();
      expect(vars).toMatchObject({ LC_ALL: 'C', LANG: 'C', PATH: '/usr/bin:/bin', ZSHIELD_EXTRA: 'yes' });
    } finally {
      delete process.env['ZSHIELD_TEST_SECRET'];
    }
  });

  it('input goes to stdin, not argv', async () => {
    const runner = new ExecaRunner({ log: memoryLogger() });
    const res = await runner.run({
      file: 'sh',
      args: ['-c', 'cat; echo " args=$#"'],
      mutates: false,
      input: 's3cret',
    });
    expect(res.stdout).toBe('s3cret args=0\n');
  });

  it('onLine sees each stdout/stderr line as it comes, \\r counting as a line end', async () => {
    const runner = new ExecaRunner({ log: memoryLogger() });
    const lines: string[] = [];
    await runner.run({
      file: 'sh',
      args: ['-c', 'printf "one\\ntwo\\r three\\n\\n"; echo oops >&2; printf "last"'],
      mutates: false,
      onLine: (line, stream) => lines.push(`${stream}:${line}`),
    });
    expect(lines.filter((l) => l.startsWith('stdout:'))).toEqual([
      'stdout:one',
      'stdout:two',
      'stdout: three',
      'stdout:last',
    ]);
    expect(lines.filter((l) => l.startsWith('stderr:'))).toEqual(['stderr:oops']);
  });

  it('a timeout kills the child and fails the command', async () => {
    const runner = new ExecaRunner({ log: memoryLogger() });
    // sleep 600 ends only by the kill (the project's test timeout bounds a hang); the signal is the proof.
    const err = await runner
      .run({ file: 'sleep', args: ['600'], mutates: false, timeoutMs: 200 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).signal).toBeTruthy();
  });

  it('an abort (SIGINT/SIGTERM) interrupts a running command and refuses to start new ones', async () => {
    const ac = new AbortController();
    const runner = new ExecaRunner({ log: memoryLogger(), signal: ac.signal });
    setTimeout(() => ac.abort(), 150);
    // sleep 600 returns only if the abort kills it (the project's test timeout bounds a hang).
    await expect(runner.run({ file: 'sleep', args: ['600'], mutates: false })).rejects.toBeInstanceOf(
      InterruptedError,
    );
    await expect(runner.run({ file: PRINTF, args: ['x'], mutates: false })).rejects.toBeInstanceOf(
      InterruptedError,
    );
  });
});

describe('formatArgv', () => {
  it('quotes only where a shell would need it', () => {
    expect(formatArgv(['lvcreate', '--size', '2147483648b', 'vgroup/lv-root'])).toBe(
      'lvcreate --size 2147483648b vgroup/lv-root',
    );
    expect(formatArgv(['printf', 'two words', "it's", '', 'report/time_format="%s"'])).toBe(
      `printf 'two words' 'it'\\''s' '' 'report/time_format="%s"'`,
    );
  });
});

describe('RecordingRunner', () => {
  it('records argv, answers from the newest matching rule, honours okCodes and dry-run', async () => {
    const runner = new RecordingRunner(true)
      .on('lvs', { stdout: 'old' })
      .on('lvs', { stdout: 'new' })
      .on(/^vgs /, { exitCode: 5, stderr: 'boom' })
      .withoutTool('sfdisk');
    expect((await runner.run({ file: 'lvs', args: ['-o', 'x'], mutates: false })).stdout).toBe('new');
    await expect(runner.run({ file: 'vgs', args: ['vgroup'], mutates: false })).rejects.toThrow(CommandError);
    await expect(
      runner.run({ file: 'lvremove', args: ['--yes', 'vgroup/snap0'], mutates: true }),
    ).rejects.toThrow(DryRunError);
    await expect(runner.run({ file: 'sfdisk', args: [], mutates: false })).rejects.toThrow(MissingToolError);
    expect(await runner.which('sfdisk')).toBeNull();
    expect(runner.transcript()).toEqual(['$ lvs -o x', '$ vgs vgroup', '! lvremove --yes vgroup/snap0']);
  });
});
