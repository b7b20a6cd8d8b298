// The command contract, generated from the command tree (build/command-tree.ts, the walk that
// writes the README's tables): for every command, `--help` exits 0, an unknown option exits 2, and
// its dry run in a world where every check passes exits 0, prints the whole plan and the one
// "nothing was changed" line, and changes nothing (config, state, history, images, targets, disks
// hashed before and after); `--json` gives one JSON document on success and on failure, holding no
// secret of the world. The worlds are the fixtures, one file per capability in fixtures/: a
// command added to the tree without one fails here.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { commandDocs } from '../../build/command-tree.js';
import { DRY_RUN_DONE } from '../../src/plan/plan.js';
import { type Fixture, type Fixtures, type Run, World } from './world.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const fixtures: Fixtures = {};
for (const f of readdirSync(FIXTURES)
  .filter((n) => n.endsWith('.ts'))
  .sort()) {
  const mod = (await import(path.join(FIXTURES, f))) as { fixtures: Fixtures };
  for (const [name, fx] of Object.entries(mod.fixtures)) {
    if (fixtures[name]) throw new Error(`contract: ${name} has a fixture in two files (${f})`);
    fixtures[name] = fx;
  }
}

/** Each command as the operator types it (`golden image make`), without its positionals. */
const commands = commandDocs()
  .filter((c) => !c.group)
  .map((c) => ({ name: c.command.replace(/ [<[].*$/, ''), doc: c }));

const worlds: World[] = [];
afterAll(() => {
  for (const w of worlds) w.remove();
});

const words = (name: string) => name.split(' ');
const show = (r: Run) =>
  `zshield ${r.argv.join(' ')} -> ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

describe('the tree and the fixtures', () => {
  it('every command of the tree has a fixture', () => {
    const missing = commands.filter((c) => !fixtures[c.name]).map((c) => c.name);
    expect(missing, 'add them to test/contract/fixtures/<capability>.ts').toEqual([]);
  });
  it('every fixture is a command of the tree', () => {
    const names = new Set(commands.map((c) => c.name));
    expect(Object.keys(fixtures).filter((n) => !names.has(n))).toEqual([]);
  });
  it('the commands without a dry run, by name, with the reason', () => {
    const without = Object.entries(fixtures)
      .filter(([, f]) => f.noDryRun)
      .map(([n, f]) => `${n}: ${f.noDryRun}`)
      .sort();
    expect(without.map((l) => l.split(':')[0])).toEqual(['boot', 'config edit', 'daemon']);
  });
});

/** The plans in a --json document: objects with a title and a list of steps, wherever they are. */
function plansIn(doc: unknown): { title: string; steps: { title: string }[] }[] {
  if (doc === null || typeof doc !== 'object') return [];
  if (Array.isArray(doc)) return doc.flatMap(plansIn);
  const o = doc as Record<string, unknown>;
  const self = typeof o['title'] === 'string' && Array.isArray(o['steps']) ? [o as never] : [];
  return [...self, ...Object.values(o).flatMap(plansIn)];
}

/** Text with its time stamps (20261207T020104Z, as file names carry them) made alike. */
const unstamped = (t: string) => t.replace(/\d{8}T\d{6}Z/g, '<stamp>');

function parseJson(r: Run): unknown {
  try {
    return JSON.parse(r.stdout);
  } catch (err) {
    throw new Error(`stdout is not one JSON document (${(err as Error).message}):\n${show(r)}`);
  }
}

function expectNoSecrets(w: World, texts: string[], what: string): void {
  for (const s of w.secrets) {
    for (const t of texts) expect(t.includes(s), `${what} holds a secret (${s.slice(0, 4)}…)`).toBe(false);
  }
}

const sharedWorlds = new Map<string, Promise<World>>();

/** The world of a command's fixture, made once for its cases (or shared, see Fixture.shared). */
function worldOf(fx: Fixture): () => Promise<{ w: World; args: string[] }> {
  let made: Promise<{ w: World; args: string[] }> | null = null;
  const fresh = () => {
    const w = new World();
    worlds.push(w);
    return Promise.resolve(w);
  };
  return () => {
    made ??= (async () => {
      let world: Promise<World>;
      if (fx.shared) {
        world = sharedWorlds.get(fx.shared) ?? fresh();
        sharedWorlds.set(fx.shared, world);
      } else world = fresh();
      const w = await world;
      const args = await fx.healthy!(w);
      return { w, args };
    })();
    return made;
  };
}

describe('help and usage', () => {
  // One world for all: these runs read no config (and a usage error changes nothing).
  let shared: World | null = null;
  const anyWorld = () => {
    if (!shared) {
      shared = new World();
      worlds.push(shared);
    }
    return shared;
  };
  for (const { name, doc } of commands) {
    it.concurrent(`${name} --help exits 0 and names the command`, async () => {
      const w = anyWorld();
      const r = await w.zshield([...words(name), '--help'], { config: null });
      expect(r.code, show(r)).toBe(0);
      expect(r.stdout).toContain(`zshield ${name}`);
    });

    it.concurrent(`${name}: an unknown option exits 2`, async () => {
      const w = anyWorld();
      // Its positionals and required options given (any word), so that the unknown option is the one thing wrong.
      const positionals = doc.options.filter((o) => o.positional).map(() => 'x');
      const required = doc.options
        .filter((o) => !o.positional && o.def.demandOption)
        .flatMap((o) => [`--${o.name}`, 'x']);
      const r = await w.zshield([...words(name), ...positionals, ...required, '--bogus-option-x'], {
        config: null,
      });
      expect(r.code, show(r)).toBe(2);
      expect(r.stderr).toMatch(/^zshield: .*bogus-option-x/m);
    });
  }
});

/**
 * The dry-run cases of one command. Its two cases run one after the other in its world; the
 * worlds run side by side (each holds its own folders, tools and server folder), but the
 * commands that share one (Fixture.shared) run one at a time: a dry run that wrote would
 * otherwise be seen in another command's snapshot.
 */
function dryRunCases(name: string, fx: Fixture, opts: { concurrent: boolean }): void {
  describe(name, opts.concurrent ? { concurrent: true } : { sequential: true }, () => {
    const world = worldOf(fx);
    // One `--dry-run --json` run for both cases (made inside the first one's snapshots when it runs).
    let jsonRun: Promise<Run> | null = null;
    const dryJson = (w: World, args: string[]) =>
      (jsonRun ??= w.zshield([...words(name), '--dry-run', '--json', ...args], {
        input: fx.input?.(w) ?? '',
      }));

    it.sequential('its dry run in a healthy world exits 0, prints the whole plan and changes nothing', async () => {
      const { w, args } = await world();
      const before = w.snapshot();
      const text = await w.zshield([...words(name), '--dry-run', ...args], { input: fx.input?.(w) ?? '' });
      const json = fx.noJson ? null : await dryJson(w, args);
      const after = w.snapshot();
      expect(text.code, show(text)).toBe(0);
      const changed = [...new Set([...before.keys(), ...after.keys()])].filter(
        (p) => before.get(p) !== after.get(p),
      );
      expect(changed, 'the dry run changed these').toEqual([]);
      if (json) expect(json.code, show(json)).toBe(0);
      if (fx.readOnly) return;
      const lines = `${text.stdout}\n${text.stderr}`
        .split('\n')
        .map((l) => l.replace(/^.*?zshield: /, '').trim());
      expect(lines, `no "${DRY_RUN_DONE}" line:\n${show(text)}`).toContain(DRY_RUN_DONE);
      if (!json) return;
      const plans = plansIn(parseJson(json));
      expect(plans.length, `no plan in the --json document:\n${show(json)}`).toBeGreaterThan(0);
      // The two runs are seconds apart: a name made from the clock (an image's time stamp) differs.
      const shown = unstamped(text.stdout);
      for (const p of plans) {
        for (const t of [p.title, ...p.steps.map((s) => s.title)]) {
          expect(shown, `the plan shown lacks "${t}"`).toContain(unstamped(t));
        }
      }
    });

    if (!fx.noJson) {
      it.sequential('--json: one document on success and on failure, no secret in it or in the log', async () => {
        const { w, args } = await world();
        const ok = await dryJson(w, args);
        expect(ok.code, show(ok)).toBe(0);
        parseJson(ok);
        // A failure every command reports the same way: its config file is not JSON.
        const broken = path.join(w.dir, 'log', 'broken.conf');
        const { writeFileSync } = await import('node:fs');
        writeFileSync(broken, '{ "log": ', { mode: 0o600 });
        const bad = await w.zshield([...words(name), '--json', ...args], {
          config: broken,
          input: fx.input?.(w) ?? '',
        });
        expect(bad.code, show(bad)).toBe(3);
        const doc = parseJson(bad) as Record<string, unknown>;
        expect(Object.keys(doc)).toEqual(expect.arrayContaining(['code', 'message', 'hint']));
        expect(doc['code']).toBe(3);
        expectNoSecrets(w, [ok.stdout, bad.stdout, w.logText()], `${name} --json or the log`);
      });
    }
  });
}

// The commands with a dry run, grouped by the world they share (alone: their own).
const groups = new Map<string, string[]>();
for (const { name } of commands) {
  const fx = fixtures[name];
  // The commands without a fixture fail above; those without a dry run are listed there.
  if (!fx || fx.noDryRun || !fx.healthy) continue;
  const key = fx.shared ?? name;
  groups.set(key, [...(groups.get(key) ?? []), name]);
}
for (const [key, names] of groups) {
  if (names.length === 1) dryRunCases(names[0]!, fixtures[names[0]!]!, { concurrent: true });
  else {
    describe(`one world (${key})`, { concurrent: true }, () => {
      for (const name of names) dryRunCases(name, fixtures[name]!, { concurrent: false });
    });
  }
}
