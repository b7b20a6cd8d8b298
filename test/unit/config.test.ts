import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, parseConfigText } from '../../src/config/load.js';
import { renderConfig } from '../../src/config/render.js';
import { defaultConfig } from '../../src/config/schema.js';
import { formatBytes, parseSize, resolveSize } from '../../src/config/size.js';
import { ConfigError, ExitCode } from '../../src/errors.js';
import { tempDir } from './helpers/context.js';

const F = '/etc/zshield/zshield.conf';

function problemsOf(text: string): { where: string; message: string }[] {
  try {
    parseConfigText(text, F);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('defaults', () => {
  it('are the seed layout: vgroup/lv-root, snap0 at 20%, daily at 03:00', () => {
    const c = defaultConfig();
    expect(c.lvm).toEqual({ vg: 'vgroup', rootLv: 'lv-root', snapshot: 'snap0' });
    expect(c.snapshot.size).toEqual({ kind: 'percent', percent: 20 });
    expect(c.snapshot.rotation).toBe('auto');
    expect([c.snapshot.warnPercent, c.snapshot.errorPercent]).toEqual([80, 95]);
    expect(c.daemon.dailyAt).toEqual({ hour: 3, minute: 0, text: '03:00' });
    expect(c.daemon.catchUp).toBe(true);
    expect(c.boot).toEqual({ capture: true, dir: '/boot' });
  });

  it('an empty object and a partial section both fill in the rest', () => {
    expect(parseConfigText('{}', F).config).toEqual(defaultConfig());
    const { config } = parseConfigText('{"lvm": {"vg": "sysvg"}}', F);
    expect(config.lvm).toEqual({ vg: 'sysvg', rootLv: 'lv-root', snapshot: 'snap0' });
    expect(config.daemon.dailyAt.text).toBe('03:00');
  });
});

describe('parseConfigText', () => {
  it('accepts a full, valid config', () => {
    const { config, warnings } = parseConfigText(
      JSON.stringify({
        lvm: { vg: 'vg_sys', rootLv: 'root', snapshot: 'root-snap' },
        snapshot: { size: '10G', rotation: 'create-first', warnPercent: 70, errorPercent: 90 },
        boot: { capture: false, dir: '/boot' },
        daemon: { dailyAt: '23:45', catchUp: false, checkEverySeconds: 30 },
        paths: { stateDir: '/var/lib/zs', runDir: '/run/zs' },
        log: { file: null, level: 'debug' },
        layout: { volumes: [{ name: 'root', size: '50%', mount: '/' }] },
      }),
      F,
    );
    expect(warnings).toEqual([]);
    expect(config.snapshot.size).toEqual({ kind: 'bytes', bytes: 10 * 1024 ** 3 });
    expect(config.daemon.dailyAt).toEqual({ hour: 23, minute: 45, text: '23:45' });
    expect(config.log.file).toBeNull();
  });

  it('reports every problem at once, each with its file and dotted path', () => {
    const problems = problemsOf(
      JSON.stringify({
        snapshot: { size: 'abc', warnPercent: 'eighty' },
        daemon: { dailyAt: '3am' },
        bogus: true,
      }),
    );
    expect(problems).toHaveLength(4);
    const at = (p: string) => problems.find((x) => x.where === `${F}: ${p}`);
    expect(at('snapshot.size')?.message).toMatch(/"abc" is not a size/);
    expect(at('snapshot.warnPercent')).toBeDefined();
    expect(at('daemon.dailyAt')?.message).toMatch(/HH:MM/);
    expect(
      problems.some((p) => p.where.startsWith(`${F}:`) && /unknown setting\(s\): bogus/.test(p.message)),
    ).toBe(true);
  });

  it('two bad fields and an unknown key in a section give three problems', () => {
    const problems = problemsOf('{"lvm": {"vg": "-bad", "snapshot": "a/b", "colour": "red"}}');
    expect(problems).toHaveLength(3);
    expect(problems.map((p) => p.where).sort()).toEqual([`${F}: lvm`, `${F}: lvm.snapshot`, `${F}: lvm.vg`]);
    expect(problems.find((p) => p.where === `${F}: lvm`)?.message).toBe('unknown setting(s): colour');
  });

  it('the error message names the first problem and counts the rest', () => {
    const err = (() => {
      try {
        parseConfigText('{"lvm": {"vg": "-bad", "rootLv": ""}}', F);
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(err?.exitCode).toBe(ExitCode.config);
    expect(err?.message).toMatch(
      /^config: \/etc\/zshield\/zshield\.conf: lvm\.(vg|rootLv): .*\(and 1 more problem\(s\)\)$/,
    );
  });

  it('a JSON syntax error points at file:line:col', () => {
    const text = '{\n  "lvm": {\n    "vg": "vgroup",\n  }\n}\n';
    const [p, ...rest] = problemsOf(text);
    expect(rest).toEqual([]);
    expect(p?.where).toBe(`${F}:4:3`);
    expect(p?.message).not.toMatch(/position/);
  });

  it('an unquoted percentage is located on its line', () => {
    const [p] = problemsOf('{\n  "snapshot": {\n    "size": 20%\n  }\n}\n');
    expect(p?.where).toBe(`${F}:3:15`);
  });

  it('a shell-style comment is located too, and the message stays one line', () => {
    const [p] = problemsOf('# zshield settings\n{}\n');
    expect(p?.where).toBe(`${F}:1:1`);
    expect(p?.message).toBe("Unexpected token '#'");
    const [q] = problemsOf('{\n  "boot": {"capture": yes}\n}\n');
    expect(q?.where).toBe(`${F}:2:23`);
  });

  it('a truncated file is located at its end', () => {
    expect(problemsOf('{\n  "lvm": {"vg": "vgroup"}\n')[0]?.where).toBe(`${F}:3:1`);
    const [p] = problemsOf('{\n  "lvm": {"vg": ');
    expect(p).toEqual({ where: `${F}:2:17`, message: 'Unexpected end of JSON input' });
  });

  it('a config that is not an object is refused', () => {
    for (const text of ['[]', 'null', '"x"', '42']) {
      expect(problemsOf(text)).toEqual([{ where: F, message: 'must be a JSON object' }]);
    }
  });

  it('refuses a snapshot named like lv-root', () => {
    expect(problemsOf('{"lvm": {"snapshot": "lv-root"}}')).toContainEqual({
      where: `${F}: lvm.snapshot`,
      message: 'must differ from lvm.rootLv',
    });
  });

  it('refuses warnPercent >= errorPercent (equal too)', () => {
    for (const [w, e] of [
      [95, 90],
      [90, 90],
    ]) {
      const problems = problemsOf(JSON.stringify({ snapshot: { warnPercent: w, errorPercent: e } }));
      expect(problems).toEqual([
        { where: `${F}: snapshot.warnPercent`, message: 'must be below snapshot.errorPercent' },
      ]);
    }
  });

  it('both cross-field rules are reported together', () => {
    const problems = problemsOf(
      '{"lvm": {"snapshot": "lv-root"}, "snapshot": {"warnPercent": 96, "errorPercent": 95}}',
    );
    expect(problems.map((p) => p.where)).toContain(`${F}: lvm.snapshot`);
    expect(problems.map((p) => p.where)).toContain(`${F}: snapshot.warnPercent`);
  });

  it('warns (does not refuse) about a tiny snapshot', () => {
    const { config, warnings } = parseConfigText('{"snapshot": {"size": "2%"}}', F);
    expect(config.snapshot.size).toEqual({ kind: 'percent', percent: 2 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.where).toBe(`${F}: snapshot.size`);
  });

  it('rejects values out of range and bad types', () => {
    const problems = problemsOf(
      '{"daemon": {"checkEverySeconds": 0, "catchUp": "yes", "dailyAt": "24:00"}, "log": {"level": "loud", "file": "relative.log"}, "paths": {"runDir": "run"}}',
    );
    expect(problems.map((p) => p.where.replace(`${F}: `, '')).sort()).toEqual([
      'daemon.catchUp',
      'daemon.checkEverySeconds',
      'daemon.dailyAt',
      'log.file',
      'log.level',
      'paths.runDir',
    ]);
  });

  it('renderConfig round-trips through parseConfigText', () => {
    for (const text of [
      '{}',
      '{"snapshot": {"size": "512M", "rotation": "create-first"}, "daemon": {"dailyAt": "00:05"}, "log": {"file": null}}',
      '{"snapshot": {"size": "12.5%"}, "lvm": {"vg": "sys.vg", "rootLv": "root+1", "snapshot": "s_0"}, "layout": {"bootSize": "1G", "volumes": [{"name": "root+1", "size": "10G", "mount": "/"}]}}',
    ]) {
      const { config } = parseConfigText(text, F);
      const rendered = JSON.stringify(renderConfig(config), null, 2);
      expect(parseConfigText(rendered, F).config).toEqual(config);
    }
    expect(renderConfig(defaultConfig())).toMatchObject({
      snapshot: { size: '20%' },
      daemon: { dailyAt: '03:00' },
    });
  });

  it('rc/zshield.conf.example is the full file with every default (what config show prints of no file)', () => {
    const example = readFileSync(path.resolve(import.meta.dirname, '../../rc/zshield.conf.example'), 'utf8');
    expect(JSON.parse(example)).toEqual(renderConfig(defaultConfig()));
    expect(parseConfigText(example, F).config).toEqual(defaultConfig());
  });
});

describe('loadConfig', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  it('an explicit file is read and validated', async () => {
    const file = path.join(dir, 'z.conf');
    writeFileSync(file, '{"lvm": {"vg": "other"}}');
    const loaded = await loadConfig(file);
    expect(loaded.file).toBe(file);
    expect(loaded.config.lvm.vg).toBe('other');
  });

  it('a missing file that was named is a ConfigError naming it', async () => {
    const file = path.join(dir, 'nope.conf');
    const err = await loadConfig(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([{ where: file, message: 'cannot read: ENOENT' }]);
  });

  it('a directory given as the file is a ConfigError', async () => {
    mkdirSync(path.join(dir, 'd'));
    const err = (await loadConfig(path.join(dir, 'd')).catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.problems[0]?.message).toBe('cannot read: EISDIR');
  });

  it('problems in a file carry its path', async () => {
    const file = path.join(dir, 'bad.conf');
    writeFileSync(file, '{"snapshot": {"size": "lots"}}');
    const err = (await loadConfig(file).catch((e: unknown) => e)) as ConfigError;
    expect(err.problems.map((p) => p.where)).toEqual([`${file}: snapshot.size`]);
  });

  it('no file at the default path means the built-in defaults (when the host has none)', async () => {
    const { existsSync } = await import('node:fs');
    if (existsSync(F)) {
      // A host with a real config: the default path is read, not ignored.
      expect((await loadConfig(undefined)).file).toBe(F);
      return;
    }
    const loaded = await loadConfig(undefined);
    expect(loaded).toEqual({ config: defaultConfig(), file: null, warnings: [] });
  });
});

describe('parseSize', () => {
  it('reads binary units, bytes and percentages', () => {
    expect(parseSize('10G', true)).toEqual({ kind: 'bytes', bytes: 10 * 1024 ** 3 });
    expect(parseSize('512M', false)).toEqual({ kind: 'bytes', bytes: 512 * 1024 ** 2 });
    expect(parseSize('512m', false)).toEqual({ kind: 'bytes', bytes: 512 * 1024 ** 2 });
    expect(parseSize('1.5G', false)).toEqual({ kind: 'bytes', bytes: 1.5 * 1024 ** 3 });
    expect(parseSize('2TiB', false)).toEqual({ kind: 'bytes', bytes: 2 * 1024 ** 4 });
    expect(parseSize('64K', false)).toEqual({ kind: 'bytes', bytes: 65536 });
    expect(parseSize('4096', false)).toEqual({ kind: 'bytes', bytes: 4096 });
    expect(parseSize(4096, false)).toEqual({ kind: 'bytes', bytes: 4096 });
    expect(parseSize('20%', true)).toEqual({ kind: 'percent', percent: 20 });
    expect(parseSize(' 12.5 % ', true)).toEqual({ kind: 'percent', percent: 12.5 });
  });

  it('explains what is wrong', () => {
    expect(parseSize('abc', true)).toBe('"abc" is not a size (examples: 20%, 512M, 10G)');
    expect(parseSize('20%', false)).toBe('a percentage is not allowed here');
    expect(parseSize('0%', true)).toBe('percentage must be in (0, 100]');
    expect(parseSize('101%', true)).toBe('percentage must be in (0, 100]');
    expect(parseSize('0G', true)).toBe('size must be greater than zero');
    expect(parseSize(0, true)).toBe('must be a positive whole number of bytes');
    expect(parseSize(1.5, true)).toBe('must be a positive whole number of bytes');
    expect(typeof parseSize('-1G', true)).toBe('string');
    expect(typeof parseSize('10X', true)).toBe('string');
    expect(typeof parseSize('', true)).toBe('string');
  });

  it('resolveSize takes a share of the whole, rounding up', () => {
    expect(resolveSize({ kind: 'percent', percent: 20 }, 10 * 1024 ** 3)).toBe(2 * 1024 ** 3);
    expect(resolveSize({ kind: 'percent', percent: 10 }, 1001)).toBe(101);
    expect(resolveSize({ kind: 'bytes', bytes: 123 }, 1)).toBe(123);
  });

  it('formatBytes is short and binary', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(2 * 1024 ** 3)).toBe('2.0 GiB');
    expect(formatBytes(1536 * 1024 ** 2)).toBe('1.5 GiB');
    expect(formatBytes(300 * 1024 ** 2)).toBe('300 MiB');
  });
});
