#!/usr/bin/env node
// The gate's dependency check: dependency-cruiser reads every import of src/ (static, dynamic and
// type-only) and checks the rules in .dependency-cruiser.cjs (no file circles, system/ and names/
// import no capability); this script adds what dependency-cruiser has no rule for: no circle
// between folders (src/<folder>/..., counting src/*.ts files as their own room), and a src/ folder
// missing from the README's layout table.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

let out;
try {
  out = execFileSync('depcruise', ['src', '--config', '.dependency-cruiser.cjs', '--output-type', 'json'], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
} catch (err) {
  // depcruise exits non-zero when a rule is broken; its JSON is still on stdout.
  out = err.stdout;
  if (!out) throw err;
}
const result = JSON.parse(out);
const problems = [];
for (const v of result.summary.violations) {
  const cycle = v.cycle ? `: ${v.cycle.map((c) => c.name ?? c).join(' -> ')}` : '';
  problems.push(`${v.rule.name}: ${v.from} -> ${v.to}${cycle}`);
}

const room = (file) => {
  const m = /^src\/([^/]+)\//.exec(file);
  return m ? m[1] : file.startsWith('src/') ? file : null;
};
const edges = new Map();
for (const m of result.modules) {
  const from = room(m.source);
  if (!from) continue;
  for (const d of m.dependencies) {
    const to = room(d.resolved);
    if (!to || to === from) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    if (!edges.get(from).has(to)) edges.get(from).set(to, `${m.source} -> ${d.resolved}`);
  }
}
// A folder circle is a strongly connected component of more than one folder (Tarjan).
let index = 0;
const idx = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const sccs = [];
function visit(v) {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of edges.get(v)?.keys() ?? []) {
    if (!idx.has(w)) {
      visit(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const scc = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1) sccs.push(scc);
  }
}
for (const v of edges.keys()) if (!idx.has(v)) visit(v);
for (const scc of sccs) {
  const inside = new Set(scc);
  const why = [];
  for (const f of scc) for (const [t, e] of edges.get(f) ?? []) if (inside.has(t)) why.push(e);
  problems.push(`folder circle ${scc.sort().join(' <-> ')} (${why.join('; ')})`);
}

// The README's layout table names every folder of src/ (a newcomer finds a behaviour from it).
const readme = readFileSync('README.md', 'utf8');
const table = readme.slice(readme.indexOf('## Repository layout'));
for (const dir of readdirSync('src', { withFileTypes: true })) {
  if (dir.isDirectory() && !table.includes(`\`src/${dir.name}/\``)) {
    problems.push(`README.md's "Repository layout" table has no row for src/${dir.name}/`);
  }
}

if (problems.length) {
  for (const p of problems) console.error(`deps-check: ${p}`);
  process.exit(1);
}
console.log(
  `deps-check: ${result.modules.filter((m) => m.source.startsWith('src/')).length} modules, no circles`,
);
