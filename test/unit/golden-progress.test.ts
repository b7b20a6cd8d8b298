// Progress of the golden image commands (make, verify, write: many seconds for a real medium)
// through the one progress component, and the rule of where progress goes: never stdout; with
// --json no progress lines on the console (a bar on a terminal's stderr only). Driven by calling
// the functions on a small file image, and through the built bundle (the bar on a pseudo-terminal).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGoldenMake } from '../../src/golden/golden-make.js';
import { runGoldenWrite } from '../../src/golden/image-write.js';
import { verifyImageFile, verifyWrittenDisk } from '../../src/golden/verify-disk.js';
import { meterFor, progressFor } from '../../src/plan/progress.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { writeNewSigningKey } from '../../src/system/signing.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import { BUNDLE, ensureBundle } from '../bundle.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';

const MiB = 1024 * 1024;

/** A log that tells the console (info) from the log file (toFile). */
function splitLog() {
  const console: string[] = [];
  const file: string[] = [];
  return {
    console,
    file,
    info: (m: string) => {
      console.push(m);
      file.push(m);
    },
    toFile: (_l: string, m: string) => void file.push(m),
  };
}

/** A terminal standing in for stderr: what was drawn on it. */
function fakeTty() {
  const drawn: string[] = [];
  return {
    drawn,
    tty: { write: (s: string) => drawn.push(s), columns: 100 } as unknown as NodeJS.WriteStream,
  };
}

describe('where progress goes (plan/progress.ts progressFor, the one place)', () => {
  it('without --json: plain lines on the console and in the log when stderr is no terminal', () => {
    const log = splitLog();
    const p = progressFor({ log }, 'job', { tty: null });
    p.update({ fraction: 0.5, text: 'half' });
    p.done();
    expect(log.console).toEqual(['  50% half']);
  });

  it('with --json (ctx.doc): no progress line on the console, the log file still has it; a terminal still gets the bar', () => {
    const log = splitLog();
    const doc = { print: () => {} };
    const plain = progressFor({ log, doc }, 'job', { tty: null });
    plain.update({ fraction: 0.5, text: 'half' });
    expect(log.console).toEqual([]);
    expect(log.file).toEqual(['  50% half']);
    const { drawn, tty } = fakeTty();
    const bar = progressFor({ log, doc }, 'job', { tty });
    bar.update({ fraction: 0.25, text: 'a quarter' });
    bar.done();
    expect(drawn.join('')).toMatch(/^\r\x1b\[2Kjob \[#{5}\.{15}\] 25% a quarter\n$/);
    expect(log.console).toEqual([]);
  });

  it('a meter counts bytes of a total, throttled: the first piece and the end logged, not every piece', () => {
    const log = splitLog();
    let t = 0;
    const m = meterFor({ log }, 'make x', 10 * MiB, { tty: null, now: () => t });
    for (let done = MiB; done <= 10 * MiB; done += MiB) {
      t += 100;
      m.at(done);
    }
    m.done();
    expect(log.console).toEqual(['make x: 10% 1.0 MiB of 10.0 MiB', 'make x: 100% 10.0 MiB of 10.0 MiB']);
  });

  it('on a terminal the bar is redrawn at most 4 times a second, and always at the end (it ends at 100%)', () => {
    const log = splitLog();
    const { drawn, tty } = fakeTty();
    let t = 0;
    const m = meterFor({ log }, 'verify x', 10 * MiB, { tty, now: () => t });
    for (let done = MiB; done <= 10 * MiB; done += MiB) {
      t += done === 10 * MiB ? 40 : 100;
      m.at(done);
    }
    m.done();
    const bars = drawn.filter((d) => d.startsWith('\r'));
    expect(bars).toHaveLength(4); // at 0.1 s, 0.4, 0.7, and the end at 0.94 s (0.25 s not past)
    expect(bars.at(-1)).toContain('[####################] 100% 10.0 MiB of 10.0 MiB');
    expect(drawn.at(-1)).toBe('\n');
    // The bar is what the terminal shows; the lines go to the log file only.
    expect(log.console).toEqual([]);
    expect(log.file).toHaveLength(2);
  });
});

describe('golden image make, verify and write report progress', () => {
  let dir: string;
  let cleanup: () => void;
  beforeAll(() => ({ dir, cleanup } = tempDir('zshield-golden-progress-')));
  afterAll(() => cleanup());

  it('on a small file image: bytes read, checked and written of the total, on the log the console shows', async () => {
    const raw = path.join(dir, 'medium.raw');
    writeFileSync(raw, randomBytes(9 * MiB));
    const key = path.join(dir, 'vendor.key');
    const { publicText } = await writeNewSigningKey(REAL_WRITES, key, { writePublic: true });
    const ctx = testContext({ runner: new RecordingRunner(), dir, clock: new FakeClock(new Date()) });
    ctx.config.clone.trustedKeys = [publicText];
    const out = path.join(dir, 'appliance-1.img.zst');
    const made = await runGoldenMake(ctx, {
      source: raw,
      out,
      name: 'appliance',
      version: '1',
      keyFile: key,
      force: false,
    });
    expect(made?.chunks).toHaveLength(3); // 4 MiB chunks
    const progress = (what: string) => ctx.log.lines.filter((l) => l.startsWith(`info: ${what}`));
    // The first chunk (a line at once), then the end (the rest is within the 5 s throttle).
    expect(progress('golden image make appliance-1.img.zst:')).toEqual([
      'info: golden image make appliance-1.img.zst: 44% 4.0 MiB of 9.0 MiB',
      'info: golden image make appliance-1.img.zst: 100% 9.0 MiB of 9.0 MiB',
    ]);

    await verifyImageFile(ctx, out);
    expect(progress('golden image verify appliance-1.img.zst:')).toEqual([
      'info: golden image verify appliance-1.img.zst: 44% 4.0 MiB of 9.0 MiB',
      'info: golden image verify appliance-1.img.zst: 100% 9.0 MiB of 9.0 MiB',
    ]);

    const target = path.join(dir, 'target.img');
    writeFileSync(target, Buffer.alloc(9 * MiB));
    ctx.log.lines.length = 0;
    await runGoldenWrite(ctx, { image: out, target: { file: target }, yes: true });
    expect(readFileSync(target).equals(readFileSync(raw))).toBe(true);
    // The check before the write, the write, the read-back.
    expect(progress('golden image verify appliance-1.img.zst:')).toHaveLength(2);
    expect(progress(`golden image write ${target}:`).at(-1)).toBe(
      `info: golden image write ${target}: 100% 9.0 MiB of 9.0 MiB`,
    );
    expect(progress(`golden image write: read back ${target}:`).at(-1)).toBe(
      `info: golden image write: read back ${target}: 100% 9.0 MiB of 9.0 MiB`,
    );

    ctx.log.lines.length = 0;
    const disk = await verifyWrittenDisk(ctx, out, target);
    expect(disk.badChunks).toEqual([]);
    expect(progress(`golden image verify ${target}:`).at(-1)).toBe(
      `info: golden image verify ${target}: 100% 9.0 MiB of 9.0 MiB`,
    );
  });
});

// The built bundle, as the operator runs it (cli.test.ts builds it when src/ is newer).
const hasScript = spawnSync('script', ['--version']).status === 0;

describe('the binary: progress on stderr, never in the --json document', () => {
  let dir: string;
  let cleanup: () => void;
  let config: string;
  let key: string;
  let raw: string;
  beforeAll(async () => {
    ({ dir, cleanup } = tempDir('zshield-golden-progress-bin-'));
    ensureBundle();
    key = path.join(dir, 'vendor.key');
    const { publicText } = await writeNewSigningKey(REAL_WRITES, key, { writePublic: true });
    config = path.join(dir, 'zshield.conf');
    writeFileSync(
      config,
      JSON.stringify({
        log: { file: path.join(dir, 'zshield.log') },
        paths: { stateDir: path.join(dir, 'state'), runDir: path.join(dir, 'run') },
        clone: { trustedKeys: [publicText] },
      }),
      { mode: 0o600 },
    );
    raw = path.join(dir, 'medium.raw');
    writeFileSync(raw, randomBytes(9 * MiB));
  }, 180_000);
  afterAll(() => cleanup());

  const make = (out: string, ...more: string[]) => [
    BUNDLE,
    '-c',
    config,
    'golden',
    'image',
    'make',
    raw,
    out,
    '--name',
    'appliance',
    '--image-version',
    '1',
    '--key',
    key,
    ...more,
  ];

  it('stderr no terminal: progress lines without --json; with --json stdout is the one document and stderr has none', () => {
    const text = spawnSync(process.execPath, make(path.join(dir, 'a.img.zst')), { encoding: 'utf8' });
    expect(text.status, text.stderr).toBe(0);
    expect(text.stderr).toContain('golden image make a.img.zst: 100% 9.0 MiB of 9.0 MiB');
    expect(text.stdout).not.toMatch(/%/);
    const json = spawnSync(process.execPath, make(path.join(dir, 'b.img.zst'), '--json'), {
      encoding: 'utf8',
    });
    expect(json.status, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ name: 'appliance', version: '1' });
    expect(json.stderr).not.toMatch(/golden image make/);
    // The log file keeps the progress of both runs.
    expect(readFileSync(path.join(dir, 'zshield.log'), 'utf8')).toMatch(
      /golden image make b\.img\.zst: 100% 9\.0 MiB of 9\.0 MiB/,
    );
  });

  it.skipIf(!hasScript)(
    'stderr a terminal: the bar is drawn there; stdout (a file) holds only the JSON document',
    () => {
      const out = path.join(dir, 'c.img.zst');
      const doc = path.join(dir, 'c.json');
      const typescript = path.join(dir, 'c.typescript');
      // script(1) gives the command a pseudo-terminal; stdout is redirected to a file, stderr stays on it.
      const cmd = [process.execPath, ...make(out, '--json')].join(' ');
      const r = spawnSync('script', ['-q', '-e', '-c', `${cmd} > ${doc}`, typescript], { encoding: 'utf8' });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(JSON.parse(readFileSync(doc, 'utf8'))).toMatchObject({ image: out, name: 'appliance' });
      expect(readFileSync(typescript, 'utf8')).toMatch(
        /\r\x1b\[2Kgolden image make c\.img\.zst \[#+\.*\] \d+% /,
      );
    },
  );
});
