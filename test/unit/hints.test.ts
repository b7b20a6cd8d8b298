import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { type CommandDoc, commandDocs } from '../../build/command-tree.js';
import { cliParser, commandModules } from '../../src/cli/main.js';
import type { CommandKit } from '../../src/context.js';
import { ZshieldError } from '../../src/errors.js';

// Hints that work: every `hint` given to an error in src/, read with TypeScript's parser (template
// parts filled with a sample value, both sides of a condition), and every `zshield ...` command a
// hint names is parsed by the real command tree (the yargs modules main() runs, their handlers
// stopped before they do anything). An unknown command or option fails here, not in front of an
// operator who followed the hint.

const SRC = path.resolve(import.meta.dirname, '../../src');
const SAMPLE = 'SAMPLE';
/** Hints naming a zshield command when this test was written: fewer means hints were lost. */
const AT_LEAST = 27;

interface Hint {
  where: string;
  text: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sourceFiles(path.join(dir, e.name))
      : e.name.endsWith('.ts')
        ? [path.join(dir, e.name)]
        : [],
  );
}

/** Every text an expression can evaluate to, with each unknown part replaced by SAMPLE. */
function texts(e: ts.Expression): string[] {
  if (ts.isStringLiteral(e) || ts.isNoSubstitutionTemplateLiteral(e)) return [e.text];
  if (ts.isParenthesizedExpression(e)) return texts(e.expression);
  if (ts.isTemplateExpression(e)) {
    let out = [e.head.text];
    for (const span of e.templateSpans) {
      const inner = texts(span.expression);
      const parts = inner.length ? inner : [SAMPLE];
      out = out.flatMap((o) => parts.map((p) => o + p + span.literal.text));
    }
    return out;
  }
  if (ts.isConditionalExpression(e)) return [...texts(e.whenTrue), ...texts(e.whenFalse)];
  if (ts.isBinaryExpression(e)) {
    const op = e.operatorToken.kind;
    if (op === ts.SyntaxKind.PlusToken) {
      const l = texts(e.left);
      const r = texts(e.right);
      return (l.length ? l : [SAMPLE]).flatMap((a) => (r.length ? r : [SAMPLE]).map((b) => a + b));
    }
    if (op === ts.SyntaxKind.QuestionQuestionToken || op === ts.SyntaxKind.BarBarToken)
      return [...texts(e.left), ...texts(e.right)];
  }
  return [];
}

function hintsIn(file: string): Hint[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: Hint[] = [];
  const visit = (n: ts.Node) => {
    if (ts.isPropertyAssignment(n) && n.name.getText(sf) === 'hint') {
      const line = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
      for (const text of texts(n.initializer))
        out.push({ where: `${path.relative(SRC, file)}:${line}`, text });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const docs = commandDocs().filter((d) => !d.group);
const words = (d: CommandDoc) => d.command.split(' ').filter((w) => !/^[<[]/.test(w));

/** Looks like an argument rather than the prose after a command: FILE, a path, host:dir, a number. */
const argLike = (t: string) => /^[A-Z][A-Z0-9_.:-]*$/.test(t) || /[/=@:.\d]/.test(t) || t.includes(SAMPLE);

/** The argv of each `zshield ...` in a hint: the command words, then options and arguments until prose. */
function commandsIn(text: string): string[][] {
  const found: string[][] = [];
  // Each `zshield ` up to the next one: a hint may name two commands in one sentence.
  const parts = text.split(/\bzshield (?=[a-z])/).slice(1);
  for (const part of parts) {
    const tokens = part.split(/\s+/);
    const argv: string[] = [];
    let doc: CommandDoc | undefined;
    let takesValue = false;
    for (let raw of tokens) {
      if (raw.startsWith('(') || raw === '') break;
      raw = raw.replace(/^[`'"]|[`'"]$/g, '');
      const last = /[,;)]$|\.$/.test(raw) && !/^\.+$/.test(raw);
      const t = last ? raw.replace(/[,;).]+$/, '') : raw;
      const next = [...argv, t];
      const asCommand = docs.filter((d) => words(d).slice(0, next.length).join(' ') === next.join(' '));
      if (!doc && asCommand.length && next.length <= Math.max(...asCommand.map((d) => words(d).length))) {
        argv.push(t);
        doc = asCommand.find((d) => words(d).length === next.length);
        if (last) break;
        continue;
      }
      if (argv.length === 0) {
        argv.push(t); // an unknown command: the parser says so
        break;
      }
      doc ??= docs.find((d) => words(d).join(' ') === argv.join(' '));
      if (t.startsWith('-')) {
        argv.push(t);
        const name = t.replace(/^-+/, '').split('=')[0]!;
        const opt = doc?.options.find((o) => o.name === name);
        takesValue = !t.includes('=') && !!opt && opt.def.type !== 'boolean';
      } else if (takesValue || argLike(t)) {
        argv.push(t);
        takesValue = false;
      } else break;
      if (last) break;
    }
    found.push(argv);
  }
  return found;
}

class Stopped extends Error {}
const kit: CommandKit = { context: () => Promise.reject(new Stopped('parsed')) };

/** Null when the real command tree accepts the command line, else why not. */
async function parseError(argv: string[]): Promise<string | null> {
  try {
    // A middleware runs once yargs has validated the command line, before the handler: stop there.
    await cliParser(argv, commandModules(kit, { defaultReason: 'manual' }))
      .middleware(() => {
        throw new Stopped('parsed');
      })
      .parseAsync();
    return null;
  } catch (err) {
    if (err instanceof Stopped) return null;
    return err instanceof ZshieldError ? err.message : String(err);
  }
}

const hints = sourceFiles(SRC).flatMap(hintsIn);
const withCommands = hints
  .map((h) => ({ ...h, commands: commandsIn(h.text) }))
  .filter((h) => h.commands.length > 0);

describe('hints', () => {
  it(`finds the hints of src/ (at least ${AT_LEAST} naming a zshield command)`, () => {
    expect(hints.length).toBeGreaterThan(AT_LEAST);
    expect(withCommands.length).toBeGreaterThanOrEqual(AT_LEAST);
  });

  it('reads a command out of prose, and fills template parts', () => {
    expect(
      commandsIn('zshield history list shows the fingerprints; zshield history status, the targets'),
    ).toEqual([
      ['history', 'list'],
      ['history', 'status'],
    ]);
    expect(commandsIn('restore by hand: zshield image restore FILE --yes')).toEqual([
      ['image', 'restore', 'FILE', '--yes'],
    ]);
    expect(commandsIn('run zshield history restore SAMPLE --from t1 (or another target)')).toEqual([
      ['history', 'restore', SAMPLE, '--from', 't1'],
    ]);
  });

  it('the parser refuses what an operator could not run', async () => {
    expect(await parseError(['history', 'nosuch'])).toMatch(/Unknown argument|command/i);
    expect(await parseError(['image', 'restore', 'FILE', '--no-such-option'])).toMatch(/Unknown argument/);
    expect(await parseError(['image', 'restore', 'FILE', '--yes'])).toBeNull();
  });

  it('the hints read include these, each once corrected (a command without its argument)', () => {
    const named = withCommands.flatMap((h) => h.commands.map((c) => c.join(' ')));
    expect(named).toEqual(
      expect.arrayContaining([
        'recover fingerprint FINGERPRINT',
        `image verify ${SAMPLE}`,
        `image restore ${SAMPLE} --yes`,
      ]),
    );
  });

  it('every zshield command a hint names parses with the real command tree', async () => {
    const bad: string[] = [];
    for (const h of withCommands)
      for (const argv of h.commands) {
        const why = await parseError(argv);
        if (why) bad.push(`${h.where}: zshield ${argv.join(' ')}: ${why}\n    hint: ${h.text}`);
      }
    expect(bad).toEqual([]);
  });
});
