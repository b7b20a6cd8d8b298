import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

// The command line stays typed: handlers read the types yargs infers from their builders
// (src/output.ts command()), so no cast of parsed arguments comes back. Read with TypeScript's
// parser, not a grep: a cast in a comment or a help text is not one.

const SRC = path.resolve(import.meta.dirname, '../../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The command-line files: each capability's cli.ts, cli/, and output.ts (the shared options). */
const isCommandLine = (rel: string) =>
  /^[^/]+\/cli\.ts$/.test(rel) || rel.startsWith('cli/') || rel === 'output.ts';

/** Casts a command-line file may make: none of them is of parsed arguments. */
const ALLOWED = new Set([
  'const',
  // A chunk read from process.stdin (history/cli.ts readStdinLine).
  'Buffer',
  // What main() caught, when it is not a ZshieldError (cli/main.ts report).
  'Error',
]);

interface Cast {
  where: string;
  type: string;
  text: string;
  /** `x as unknown as T`: a cast that would take any type to any other. */
  throughUnknown: boolean;
}

function isCast(n: ts.Node): n is ts.AsExpression | ts.TypeAssertion {
  return ts.isAsExpression(n) || ts.isTypeAssertionExpression(n);
}

function casts(file: string): Cast[] {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: Cast[] = [];
  const visit = (n: ts.Node) => {
    if (isCast(n)) {
      let inner: ts.Node = n.expression;
      while (ts.isParenthesizedExpression(inner)) inner = inner.expression;
      const line = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
      found.push({
        where: `src/${path.relative(SRC, file)}:${line}`,
        type: n.type.getText(sf),
        text: n.getText(sf).replace(/\s+/g, ' ').slice(0, 100),
        throughUnknown: isCast(inner) && inner.type.kind === ts.SyntaxKind.UnknownKeyword,
      });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return found;
}

describe('a typed command line', () => {
  const files = sourceFiles(SRC);

  it('no `as unknown as` anywhere in src/', () => {
    const bad = files
      .flatMap(casts)
      .filter((c) => c.throughUnknown)
      .map((c) => `${c.where}: ${c.text}`);
    expect(bad).toEqual([]);
  });

  it('the command-line files cast nothing but constants (handlers read what their builders declared)', () => {
    const cli = files.filter((f) => isCommandLine(path.relative(SRC, f).split(path.sep).join('/')));
    expect(cli.length).toBeGreaterThan(10);
    const bad = cli
      .flatMap(casts)
      .filter((c) => !ALLOWED.has(c.type))
      .map((c) => `${c.where}: ${c.text}`);
    expect(bad).toEqual([]);
  });
});
