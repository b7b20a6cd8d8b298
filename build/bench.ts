// Benchmarks (not tests): zshield against the plain tools doing the same work, measured in the same
// guest run, printed as ratios. Run by `npm run bench` (build/bench.sh).
//
//   backup          `zshield backup` (a rotation)        vs  `lvremove` + `lvcreate -s` by hand
//   status          `zshield status --json`              vs  a bare `lvs`
//   start           `zshield --version`                  (the binary's start time)
//   daemon memory   VmRSS of an idle `zshield daemon`
//   factory reset   `zshield recover factory --yes`      vs  a bare rsync of the same root onto a fresh fs
//   restore         `zshield recover latest --yes`       vs  a bare `lvconvert --merge`
//   image           `zshield image create` (nearly empty and nearly full lv-root)
//                                                        vs  `dd if=<snapshot> bs=4M | zstd -T0 > f`
//                   `zshield image restore --yes`        vs  `zstd -d < f | dd of=<lv> bs=4M`
//
// `--only core` or `--only image` runs one section (each boots its own guest).

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
}

/**
 * Image backup on a 512 MiB lv-root, nearly empty (a few MiB of system) and then nearly full (~85 %
 * of it copies of the zshield executable). One round each: a round is minutes under emulation.
 * zshield's create includes what the plain pipeline does not: the verification (SHA-256, unpack,
 * e2fsck, debugfs) and the manifest; its restore includes the checksum, e2fsck and a new snap0.
 */
async function image(): Promise<void> {
  const vm = await bootGuest('bench-image', 8192);
  try {
    await makeSeedLayout(vm, 512);
    await vm.shOk(
      `set -e; lvcreate -q -y -L 2G -n lv-backup vgroup; mkfs.ext4 -q /dev/vgroup/lv-backup
       mkdir -p /diskbackup /mnt/root; mount /dev/vgroup/lv-backup /diskbackup
       mount /dev/vgroup/lv-root /mnt/root; cp -a /etc /mnt/root/; umount /mnt/root`,
      { timeoutMs: 300_000 },
    );
    await writeConfig(vm, { log: { file: null }, image: { dir: '/diskbackup', keep: 100 } });
    const plainCreate =
      'lvcreate -q -y -s -n bench-snap -L 128M vgroup/lv-root && dd if=/dev/vgroup/bench-snap bs=4M 2>/dev/null | zstd -T0 -q -f -o /diskbackup/plain.zst && lvremove -q -y vgroup/bench-snap';
    const plainRestore =
      'zstd -d -q -c /diskbackup/plain.zst | dd of=/dev/vgroup/lv-root bs=4M conv=fsync 2>/dev/null';
    for (const state of ['nearly empty', 'nearly full'] as const) {
      if (state === 'nearly full') {
        // Copies of the zshield executable (a Node binary: compresses about as a system's
        // binaries and libraries do) until 85 % of the file system is in use. Copying the guest's
        // /usr file by file instead did not finish in 20 minutes under emulation.
        await vm.shOk(
          `set -e; mount /dev/vgroup/lv-root /mnt/root; i=0
           target=$(( $(df -B1 --output=size /mnt/root | tail -1) * 85 / 100 ))
           while used=$(df -B1 --output=used /mnt/root | tail -1); [ "$used" -lt "$target" ]; do
             i=$((i+1)); head -c $((target - used)) /usr/sbin/zshield > /mnt/root/fill$i; sync
           done
           df -h /mnt/root >&2; umount /mnt/root`,
          { timeoutMs: 900_000 },
        );
      }
      const used = (
        await vm.shOk("dumpe2fs -h /dev/vgroup/lv-root 2>/dev/null | grep -E '^(Block count|Free blocks):'")
      )
        .trim()
        .split('\n')
        .map((l) => Number(l.split(':')[1]));
      const pct = (100 * (used[0]! - used[1]!)) / used[0]!;
      await vm.shOk('rm -f /diskbackup/zshield-* /diskbackup/plain.zst');
      const ours = await timed(vm, 'zshield image create');
      const plain = await timed(vm, plainCreate);
      const sizes = await vm.shOk('stat -c %s /diskbackup/zshield-*.img.zst /diskbackup/plain.zst');
      const [imgBytes, plainBytes] = sizes.trim().split('\n').map(Number);
      ratio(`image create, ${state} (${pct.toFixed(0)} % used)`, ours, plain, 'dd | zstd -T0');
      rows.push([
        `  sizes, ${state}`,
        `image ${(imgBytes! / 2 ** 20).toFixed(1)} MiB vs dd | zstd ${(plainBytes! / 2 ** 20).toFixed(1)} MiB`,
      ]);
      console.log(`${rows.at(-1)![0]}: ${rows.at(-1)![1]}`);
      const file = (await vm.shOk('ls /diskbackup/zshield-*.img.zst')).trim();
      const restore = await timed(vm, `zshield image restore ${file} --yes`);
      // The plain write, with no snapshot to slow it down (zshield's restore removes snap0 first too).
      await vm.shOk('lvremove -q -y vgroup/snap0 2>/dev/null || true', { timeoutMs: 300_000 });
      const plainR = await timed(vm, plainRestore);
      ratio(`image restore, ${state}`, restore, plainR, 'zstd -d | dd');
    }
  } finally {
    await vm.kill();
  }
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--only');
  const only = i >= 0 ? process.argv[i + 1] : undefined;
  if (only !== undefined && only !== 'core' && only !== 'image') {
    throw new Error(`--only takes core or image, not ${only}`);
  }
  if (!only || only === 'core') await core();
  if (!only || only === 'image') await image();
  console.log('\nsummary (same guest per section, same run):');
  for (const [k, v] of rows) console.log(`  ${k.padEnd(34)} ${v}`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
