#!/usr/bin/env node
// The gate's dependency check: dependency-cruiser reads every import of src/ (static, dynamic and
// type-only) and checks the rules in .dependency-cruiser.cjs (no file circles, system/ and names/
// import no capability); this script adds what dependency-cruiser has no rule for: no circle
// between folders (src/<folder>/..., counting src/*.ts files as their own room), a src/ folder
// missing from the README's layout table, the floors (the longest chain of folder imports from
// src/cli/ down), and the imports that reach into another capability's internals instead of its
// front door (src/<cap>/index.ts). The last two are ratchets: each fails above its ceiling, and a
// ceiling may only go down.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

// The house, in one list. Every room of src/ is a shared layer (imported freely), the wiring on
// top, or a capability (imported from outside its folder only through its front door, index.ts,
// and only by a capability listed below with the reason it needs it).
const WIRING = {
  cli: "src/cli/: mounts each capability's yargs module (<cap>/cli.ts) and maps errors to exit codes",
  'src/index.ts': 'the entry file: starts src/cli/',
};
const SHARED = {
  system: 'the tools every capability drives: Runner, LVM, disks, mounts, lock, writes',
  names: 'the words the system shares: LVM tags, snapshot and backup file names',
  plan: 'Step, Plan and runPlan: how every destructive flow is shown and applied',
  log: 'the logger',
  config: 'the configuration schema, its loading and sizes (the config command is src/cli/config.ts)',
  state: 'the small JSON state files',
  ssh: 'the SSH and SFTP transport: sessions and host keys, uploads proven by hash, the retrying connection, credentials (remote copy and the history targets)',
  'restore-point':
    'snap0, the restore point the capabilities stand on: taken under the LVM lock (backup, apt hook, image, reset to a fingerprint), rotated, repaired, its health and the boot menu that lists it',
  'src/errors.ts': 'typed errors, mapped to exit codes in src/cli/',
  'src/output.ts': 'printing results (text or JSON)',
  'src/context.ts': 'the context handed to every command',
  'src/assets.ts': 'files bundled into the executable',
  'src/version.ts': 'the version string',
};
// [from, to, why]: a capability that may import another capability's front door.
const ALLOWED = [
  ['daemon', 'image', 'the daily image after the backup'],
  ['daemon', 'remote', 'the copy off the box after a backup or an image'],
  ['daemon', 'history', 'replication and retention after a backup'],
  [
    'clone',
    'golden',
    'send and receive carry the golden image (manifest, chunks) and write it with the target writer',
  ],
  ['fleet', 'history', "the fleet view reads each box's store and catalog on a target"],
  [
    'recovery',
    'golden',
    'a factory reset fills lv-root from the golden root; the boot hook answers golden update first',
  ],
  [
    'recovery',
    'history',
    'a reset to a fingerprint and the off-box restore fetch their root from the history (catalog, stores, tree restore)',
  ],
  [
    'recovery',
    'image',
    'the boot-time resume finishes an interrupted image restore; a reset to a fingerprint writes the image identity',
  ],
  ['status', 'history', 'the replication state, and the catalog for the metrics'],
  ['status', 'image', 'the images on disk and an unfinished image restore'],
];
const CAPABILITIES = [
  'backup',
  'image',
  'recovery',
  'remote',
  'history',
  'fleet',
  'clone',
  'golden',
  'daemon',
  'status',
  'hooks',
];
// Ratchets: today's values. Lower them as the house gets flatter; never raise them.
// Issue 22's target: floors <= 8, no import into another capability's internals.
const FLOORS_CEILING = 7;
// Capability floors: the longest chain of capabilities importing capabilities (issue 22: at most 2,
// the rest is shared layers below them).
const CAP_FLOORS_CEILING = 2;
const INTERNALS_CEILING = 0;
// Re-export statements outside front doors (a name with two import paths).
const REEXPORTS_CEILING = 0;

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

// Every room is classified, so a new folder has to be placed in the house.
const rooms = new Set();
for (const m of result.modules) if (room(m.source)) rooms.add(room(m.source));
for (const r of rooms) {
  if (!(r in WIRING) && !(r in SHARED) && !CAPABILITIES.includes(r)) {
    problems.push(`${r} is neither wiring, a shared layer nor a capability: add it to one list`);
  }
}

// Imports from one capability into another: through the front door (index.ts), by a listed pair.
// src/cli/ may also import each capability's cli.ts (the yargs module it mounts).
const allowed = new Set(ALLOWED.map(([from, to]) => `${from} -> ${to}`));
const used = new Set();
const internals = [];
const seen = new Set();
for (const m of result.modules) {
  const from = room(m.source);
  if (!from) continue;
  for (const d of m.dependencies) {
    const to = room(d.resolved);
    if (!to || to === from || !CAPABILITIES.includes(to)) continue;
    const edge = `${m.source} -> ${d.resolved}`;
    if (seen.has(edge)) continue;
    seen.add(edge);
    if (from === 'cli' && d.resolved === `src/${to}/cli.ts`) continue;
    if (from in WIRING) {
      if (d.resolved !== `src/${to}/index.ts`) internals.push(edge);
      continue;
    }
    if (!CAPABILITIES.includes(from)) {
      problems.push(`shared layer ${from} imports capability ${to}: ${edge}`);
      continue;
    }
    const pair = `${from} -> ${to}`;
    used.add(pair);
    if (!allowed.has(pair))
      problems.push(`${pair} is not an allowed pair (ALLOWED in build/deps-check.mjs): ${edge}`);
    if (d.resolved !== `src/${to}/index.ts`) internals.push(edge);
  }
}
for (const pair of allowed)
  if (!used.has(pair)) problems.push(`ALLOWED lists ${pair}, which no import uses: remove it`);
const inCli = internals.filter((e) => /^src\/(cli\/|[^/]+\/cli\.ts )/.test(e)).length;
// The list itself with --list, or when the count is above its ceiling.
if (process.argv.includes('--list') || internals.length > INTERNALS_CEILING) {
  for (const e of internals) console.log(`deps-check: into another capability's internals: ${e}`);
}
console.log(
  `deps-check: ${internals.length} imports into other capabilities' internals (ceiling ${INTERNALS_CEILING}), ${inCli} of them in src/cli/ or a cli.ts`,
);
if (internals.length > INTERNALS_CEILING) {
  problems.push(
    `${internals.length} imports into other capabilities' internals, above the ceiling of ${INTERNALS_CEILING}`,
  );
} else if (internals.length < INTERNALS_CEILING) {
  console.log(`deps-check: lower INTERNALS_CEILING to ${internals.length}`);
}

// A re-export outside a front door gives one name two import paths: only index.ts re-exports.
const reexports = [];
for (const m of result.modules) {
  if (!m.source.startsWith('src/') || m.source.endsWith('/index.ts')) continue;
  const text = readFileSync(m.source, 'utf8');
  for (const x of text.matchAll(/^export\s+(?:type\s+)?(?:\*|\{[^}]*\})\s+from\s+'([^']+)'/gm)) {
    reexports.push(`${m.source}: ${x[1]}`);
  }
}
if (process.argv.includes('--list'))
  for (const r of reexports) console.log(`deps-check: re-export outside a front door: ${r}`);
console.log(`deps-check: ${reexports.length} re-exports outside front doors (ceiling ${REEXPORTS_CEILING})`);
if (reexports.length > REEXPORTS_CEILING) {
  problems.push(
    `${reexports.length} re-exports outside front doors, above the ceiling of ${REEXPORTS_CEILING}: ${reexports.join(', ')}`,
  );
} else if (reexports.length < REEXPORTS_CEILING) {
  console.log(`deps-check: lower REEXPORTS_CEILING to ${reexports.length}`);
}

// Floors: the longest chain of folder imports from src/cli/ down to a room that imports none.
if (!sccs.length) {
  const memo = new Map();
  const chain = (v) => {
    if (memo.has(v)) return memo.get(v);
    let best = [v];
    for (const w of edges.get(v)?.keys() ?? []) {
      const c = chain(w);
      if (c.length + 1 > best.length) best = [v, ...c];
    }
    memo.set(v, best);
    return best;
  };
  // The same walk over capabilities only: how many stand on each other between src/cli/ and the shared layers.
  const capMemo = new Map();
  const capChain = (v) => {
    if (capMemo.has(v)) return capMemo.get(v);
    let best = [v];
    for (const w of edges.get(v)?.keys() ?? []) {
      if (!CAPABILITIES.includes(w)) continue;
      const c = capChain(w);
      if (c.length + 1 > best.length) best = [v, ...c];
    }
    capMemo.set(v, best);
    return best;
  };
  const capFloors = CAPABILITIES.map(capChain).reduce((a, b) => (b.length > a.length ? b : a), []);
  console.log(
    `deps-check: capabilities stand ${capFloors.length} deep (ceiling ${CAP_FLOORS_CEILING}): ${capFloors.join(' -> ')}`,
  );
  if (capFloors.length > CAP_FLOORS_CEILING)
    problems.push(`capabilities stand ${capFloors.length} deep, above the ceiling of ${CAP_FLOORS_CEILING}`);
  const floors = chain('cli');
  console.log(`deps-check: ${floors.length} floors (ceiling ${FLOORS_CEILING}): ${floors.join(' -> ')}`);
  if (floors.length > FLOORS_CEILING)
    problems.push(`${floors.length} floors, above the ceiling of ${FLOORS_CEILING}`);
  else if (floors.length < FLOORS_CEILING)
    console.log(`deps-check: lower FLOORS_CEILING to ${floors.length}`);
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
