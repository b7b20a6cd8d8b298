// Benchmarks (not tests): zshield against the plain tools doing the same work, measured in the same
// guest run, printed as ratios. Run by `npm run bench` (build/bench.sh).
//
//   backup          `zshield backup` (a rotation)        vs  `lvremove` + `lvcreate -s` by hand
//   status          `zshield status --json`              vs  a bare `lvs`
//   start           `zshield --version`                  (the binary's start time)
//   daemon memory   VmRSS of an idle `zshield daemon`
//   factory reset   `zshield recover factory --yes`      vs  a bare rsync of the same root onto a fresh fs
//   restore         `zshield recover latest --yes`       vs  a bare `lvconvert --merge`

import { Appliance } from '../test/bench/appliance.js';
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

async function median(vm: Appliance, script: string, setup?: string): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    if (setup) await vm.shOk(setup, { timeoutMs: 600_000 });
    runs.push(await timed(vm, script));
  }
  runs.sort((a, b) => a - b);
  return runs[Math.floor(runs.length / 2)]!;
}

const rows: [string, string][] = [];
function ratio(name: string, ours: number, plain: number, plainName: string): void {
  rows.push([
    name,
    `${ours.toFixed(2)} s vs ${plainName} ${plain.toFixed(2)} s: ratio ${(ours / plain).toFixed(2)}`,
  ]);
  console.log(`${name}: ${rows.at(-1)![1]}`);
}

async function main(): Promise<void> {
  const disks = [
    { name: 'golden', sizeMiB: 2048, serial: GOLDEN_SERIAL },
    { name: 'system', sizeMiB: 4096, serial: SYSTEM_SERIAL },
  ];
  const vm = await Appliance.boot({ workDir: freshWorkDir('bench'), disks });
  try {
    await makeSeedLayout(vm);
    await writeConfig(vm, { log: { file: null } });
    await vm.shOk('zshield backup', { timeoutMs: 300_000 });

    const zBackup = await median(vm, 'zshield backup');
    // What zshield's rotation replaces: the seed's two commands (20 % of the 1 GiB lv-root).
    const raw = await median(
      vm,
      'lvremove -q -y vgroup/snap0 && lvcreate -q -s -n snap0 -L 208M vgroup/lv-root',
    );
    ratio('backup', zBackup, raw, 'lvremove + lvcreate -s');

    ratio('status', await median(vm, 'zshield status --json'), await median(vm, 'lvs'), 'lvs');
    const start = await median(vm, 'zshield --version');
    rows.push(['start', `zshield --version ${start.toFixed(2)} s`]);
    console.log(`start: ${rows.at(-1)![1]}`);

    const d = vm.spawn('exec zshield daemon --quiet');
    await vm.shOk('sleep 15');
    const rss = await vm.shOk(
      "pid=$(pidof zshield | cut -d' ' -f1); grep VmRSS /proc/$pid/status | awk '{print $2}'",
    );
    rows.push(['daemon memory', `idle VmRSS ${(Number(rss) / 1024).toFixed(1)} MiB`]);
    console.log(`daemon memory: ${rows.at(-1)![1]}`);
    await d.kill('TERM');
    await d.wait();

    // Factory reset of the system disk from the running root, against the bare copy of that root.
    await writeConfig(vm, {
      log: { file: null },
      disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } },
    });
    const reset = await timed(vm, 'zshield recover factory --yes');
    console.log(`factory reset: ${reset.toFixed(2)} s`);
    const bareCopy = await timed(
      vm,
      'lvcreate -q -y -L 512M -n bench-copy vgroup && mkfs.ext4 -q /dev/vgroup/bench-copy && mkdir -p /mnt/bc && mount /dev/vgroup/bench-copy /mnt/bc && rsync -aHAXx --numeric-ids --exclude=/proc/* --exclude=/sys/* --exclude=/dev/* --exclude=/run/* --exclude=/tmp/* / /mnt/bc/ && umount /mnt/bc && lvremove -q -y vgroup/bench-copy',
    );
    ratio('factory reset', reset, bareCopy, 'mkfs + rsync of the root');

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
    ratio('restore', restore, merge, 'lvconvert --merge');
  } finally {
    await vm.kill();
  }
  console.log('\nsummary (same guest, same run):');
  for (const [k, v] of rows) console.log(`  ${k.padEnd(14)} ${v}`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
