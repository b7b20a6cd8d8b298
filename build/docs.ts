// The README's reference sections, generated from the code so they cannot drift: the commands and
// their options from the yargs modules (src/cli/main.ts wires them), the config settings from the
// zod schema (types and descriptions) and the effective defaults (`zshield config show` of no file),
// and the benchmark tables from build/bench-results.json (build/bench-table.ts).
//   tsx build/docs.ts            rewrite the marked regions of README.md
//   tsx build/docs.ts --check    exit 1 when README.md is not what it would write (the gate)
// A marked region is `<!-- generated:NAME -->` ... `<!-- /generated:NAME -->`.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Options } from 'yargs';
import { z } from 'zod';
import { GLOBAL_OPTIONS } from '../src/cli/global.js';
import { renderConfig } from '../src/config/render.js';
import { configSchema, defaultConfig } from '../src/config/schema.js';
import { withBenchTables } from './bench-table.js';
import { type CommandDoc, type OptionDoc, commandDocs } from './command-tree.js';

const REPO = path.resolve(import.meta.dirname, '..');
const README = path.join(REPO, 'README.md');
const EXAMPLE = path.join(REPO, 'rc/zshield.conf.example');

// ---- commands ------------------------------------------------------------------------------

/** The value's placeholder in a synopsis: `--source temporary|snap0`, `--wait S`, `--cmdline-file FILE`. */
const argName = (o: OptionDoc): string => {
  const d = o.def;
  if (d.type === 'boolean') return '';
  const choices = d.choices as readonly string[] | undefined;
  if (choices) return ` ${choices.length <= 3 ? choices.join('|') : o.name.toUpperCase()}`;
  if (d.type === 'number') return /^seconds/.test(String(d.describe)) ? ' S' : ' N';
  return ` ${o.name.split('-').at(-1)!.toUpperCase()}`;
};

export function synopsis(c: CommandDoc): string {
  const words = c.command.split(' ').map((w) => w.replace(/^<(.*)>$/, (_m, p: string) => p.toUpperCase()));
  const opts = c.options.filter((o) => !o.positional).map((o) => `[--${o.name}${argName(o)}]`);
  return ['zshield', ...words, ...opts].join(' ');
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function valueText(d: Options): string {
  if (d.choices) return (d.choices as readonly unknown[]).map((c) => `\`${c}\``).join(', ');
  if (d.type === 'boolean') return 'flag';
  if (d.type === 'number') return 'number';
  return 'text';
}

export function defaultText(d: Options): string {
  if (d.default === undefined || d.type === 'boolean') return '';
  return `\`${String(d.default)}\``;
}

function commandsSection(): string {
  const docs = commandDocs().filter((c) => !c.group);
  const rows = docs.map((c) => `| \`${cell(synopsis(c))}\` | ${cell(c.describe)} |`);
  return ['| command | what it does |', '|---|---|', ...rows].join('\n');
}

function optionsSection(): string {
  const rows: string[] = [];
  const put = (where: string, o: OptionDoc) => {
    const alias = o.def.alias ? `, \`-${o.def.alias}\`` : '';
    const name = o.positional ? o.name.toUpperCase() : `--${o.name}`;
    rows.push(
      `| ${where} | \`${name}\`${alias} | ${valueText(o.def)} | ${defaultText(o.def)} | ${cell(String(o.def.describe ?? ''))} |`,
    );
  };
  for (const [name, def] of Object.entries(GLOBAL_OPTIONS))
    put('every command', { name, def: def as Options, positional: false });
  for (const c of commandDocs()) {
    for (const o of c.options) put(`\`${c.command.replace(/ <.*$/, '')}\``, o);
  }
  return [
    '| command | option | value | default | what it does |',
    '|---|---|---|---|---|',
    ...rows,
    '',
    'Every command also has `--help`; `zshield --version` prints the version. An option is given at',
    'most once: a repeated one (`--reason daily --reason manual`) is a usage error (exit 2).',
  ].join('\n');
}

// ---- config --------------------------------------------------------------------------------

type Json = Record<string, unknown>;
interface SettingDoc {
  path: string;
  type: string;
  default: string;
  description: string;
}

function typeText(s: Json): string {
  if (s['format'] === 'size' || s['format'] === 'size or percent') return String(s['format']);
  const any = (s['anyOf'] ?? s['oneOf']) as Json[] | undefined;
  if (any) return any.map(typeText).join(' or ');
  if ('const' in s) return `\`${JSON.stringify(s['const'])}\``;
  if (s['enum']) return (s['enum'] as unknown[]).map((v) => `\`${JSON.stringify(v)}\``).join(' or ');
  const t = s['type'];
  if (Array.isArray(t)) return t.map((x) => typeText({ ...s, type: x })).join(' or ');
  if (t === 'null') return '`null`';
  if (t === 'array') return `list of ${typeText(s['items'] as Json)}`;
  if (t === 'integer' || t === 'number') {
    const lo = s['minimum'];
    const hi = s['maximum'];
    // zod's .int() alone gives the safe-integer bounds: no limit worth printing.
    const top = hi !== undefined && Number(hi) < Number.MAX_SAFE_INTEGER ? hi : undefined;
    const range =
      lo !== undefined && top !== undefined ? ` ${lo}-${top}` : lo !== undefined ? ` >= ${lo}` : '';
    return `${t}${range}`;
  }
  if (t === 'string' && s['format'] === 'starts_with' && s['pattern'] === '^\\/.*') return 'absolute path';
  if (t === 'object') {
    const props = Object.entries((s['properties'] ?? {}) as Record<string, Json>);
    return `{${props.map(([k, v]) => `"${k}": ${typeText(v)}`).join(', ')}}`;
  }
  return String(t);
}

function at(value: unknown, keys: string[]): unknown {
  let v = value;
  for (const k of keys) v = v === null || typeof v !== 'object' ? undefined : (v as Json)[k];
  return v;
}

/** Every setting: the leaves of the schema's objects; a list of objects also documents its fields. */
function settings(): SettingDoc[] {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Json;
  const defaults = renderConfig(defaultConfig());
  const out: SettingDoc[] = [];
  const walk = (s: Json, keys: string[], inList: boolean) => {
    const props = s['properties'] as Record<string, Json> | undefined;
    if (s['type'] === 'object' && props) {
      for (const [k, v] of Object.entries(props)) walk(v, [...keys, k], inList);
      return;
    }
    const items = s['items'] as Json | undefined;
    // A list of one kind of object, or of several told apart by their `type` (history.targets).
    const variants = (
      items?.['type'] === 'object' ? [items] : ((items?.['oneOf'] ?? items?.['anyOf']) as Json[])
    )?.filter((v) => v['type'] === 'object');
    const name = keys.join('.');
    const dflt = inList ? s['default'] : at(defaults, keys);
    out.push({
      path: name,
      type: variants?.length ? 'list of objects (below)' : typeText(s),
      default: dflt === undefined ? (inList ? 'required' : '') : `\`${JSON.stringify(dflt)}\``,
      description: String(s['description'] ?? ''),
    });
    for (const v of variants ?? []) {
      const props = v['properties'] as Record<string, Json>;
      const kind = variants!.length > 1 ? (props['type']?.['const'] as string | undefined) : undefined;
      const list = `${keys.at(-1)}[]${kind ? ` (type ${kind})` : ''}`;
      for (const [k, p] of Object.entries(props)) walk(p, [...keys.slice(0, -1), list, k], true);
    }
  };
  walk(schema, [], false);
  return out;
}

function configSection(docs: SettingDoc[]): string {
  const rows = docs.map(
    (d) => `| \`${d.path}\` | ${cell(d.type)} | ${cell(d.default)} | ${cell(d.description)} |`,
  );
  return ['| setting | type | default | what it is |', '|---|---|---|---|', ...rows].join('\n');
}

/** The example's settings (its leaves; a list is one setting). */
function exampleSettings(): string[] {
  const out: string[] = [];
  const walk = (v: unknown, keys: string[]) => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(x, [...keys, k]);
    } else out.push(keys.join('.'));
  };
  walk(JSON.parse(readFileSync(EXAMPLE, 'utf8')), []);
  return out;
}

// ---- README --------------------------------------------------------------------------------

function replaceRegion(text: string, name: string, body: string): string {
  const open = `<!-- generated:${name} -->`;
  const close = `<!-- /generated:${name} -->`;
  const a = text.indexOf(open);
  const b = text.indexOf(close);
  if (a < 0 || b < a) throw new Error(`README.md has no region ${open} ... ${close}`);
  return `${text.slice(0, a + open.length)}\n${body}\n${text.slice(b)}`;
}

function main(): number {
  const docs = settings();
  const example = exampleSettings();
  // The example is the full file with every default (README "Configuration"): both ways.
  const problems = [
    ...docs.filter((d) => !d.description).map((d) => `config setting ${d.path} has no description`),
    ...example
      .filter((p) => !docs.some((d) => d.path === p))
      .map((p) => `rc/zshield.conf.example: ${p} is not a setting of the schema`),
    ...docs
      .filter((d) => !d.path.includes('[]') && !example.includes(d.path))
      .map((d) => `rc/zshield.conf.example lacks ${d.path}`),
  ];
  if (problems.length) {
    for (const p of problems) console.error(`docs: ${p}`);
    return 1;
  }
  const before = readFileSync(README, 'utf8');
  let after = replaceRegion(before, 'commands', commandsSection());
  after = replaceRegion(after, 'options', optionsSection());
  after = replaceRegion(after, 'config', configSection(docs));
  after = withBenchTables(after);
  if (process.argv.includes('--check')) {
    if (after === before) return 0;
    console.error('docs: README.md is out of date with the code: run `tsx build/docs.ts` and commit it');
    return 1;
  }
  if (after !== before) writeFileSync(README, after);
  return 0;
}

// Also imported for its command tree (build/manpage.ts): act only when run as the script.
if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) process.exitCode = main();
