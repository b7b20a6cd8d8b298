// `tsx test/bench/netboot-run.ts N [WORKDIR] [--unlisted] [--cut BOX] [--wrong-key]`: the netboot
// chain with N boxes outside vitest (for the benchmark and by hand), on the bench's golden image and
// kernel; prints the sender's output, each disk's state and the times as JSON. --unlisted adds a box
// whose MAC is not listed; --cut BOX cuts that box's network for 40 s once it received 10 %; --wrong-key
// gives the boxes a rescue that trusts another key. Needs the bench (BENCH_DIR) and
// build/out/zshield (or ZSHIELD_BIN); root.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { packagedGolden } from '../appliance/golden-fixture.js';
import { BENCH_DIR, benchInfo } from './bench-env.js';
import { benchChainInput, runChain } from './netboot.js';

const args = process.argv.slice(2);
const flag = (f: string) => args.includes(f);
const value = (f: string) => (args.includes(f) ? args[args.indexOf(f) + 1] : undefined);
const positional = args.filter((a, i) => !a.startsWith('--') && !['--cut'].includes(args[i - 1] ?? ''));
const count = Number(positional[0] ?? '2');
const workDir = positional[1] ?? path.join(BENCH_DIR, 'work', `netboot-run-${count}`);
const zshieldBin = process.env['ZSHIELD_BIN'] ?? path.resolve(import.meta.dirname, '../../build/out/zshield');
fs.rmSync(workDir, { recursive: true, force: true });
fs.mkdirSync(workDir, { recursive: true });
const golden = await packagedGolden(workDir);
const info = benchInfo();
let rescueKey: string | undefined;
if (flag('--wrong-key')) {
  const k = spawnSync(zshieldBin, ['golden', 'image', 'key', path.join(workDir, 'other.key')], {
    encoding: 'utf8',
  });
  rescueKey = k.stdout.trim().split('\n').at(-1);
}
const cut = value('--cut');
const r = await runChain({
  ...benchChainInput(workDir, golden, { zshieldBin, vmlinuz: info.vmlinuz }),
  count,
  unlisted: flag('--unlisted'),
  ...(cut ? { cutNetworkOf: cut, retriesUntilDrop: 30 } : {}),
  ...(rescueKey ? { rescueKey, senderArgs: ['--repair-window', '90'] } : {}),
});
console.log(r.senderOut);
const zeros = spawnSync('sh', ['-c', `head -c ${golden.manifest.size} /dev/zero | sha256sum`], {
  encoding: 'utf8',
}).stdout.slice(0, 64);
const state = (sha: string) =>
  sha === golden.manifest.sha256
    ? 'identical to the image'
    : sha === zeros
      ? 'blank (nothing written)'
      : `DIFFERENT (${sha})`;
for (const d of [...r.disks, ...(r.unlisted ? [r.unlisted] : [])]) {
  fs.writeFileSync(path.join(workDir, `${d.name}.console.copy.log`), d.console);
  console.log(`${d.name}: disk ${state(d.sha256)}, system ${d.bootedSystem ? 'booted' : 'NOT booted'}`);
}
if (r.unlisted)
  console.log(`unlisted: disk ${r.unlisted.sha256 === r.unlisted.sha256Before ? 'unchanged' : 'CHANGED'}`);
console.log(
  JSON.stringify({ boxes: count, senderCode: r.senderCode, rescueBytes: r.rescueBytes, seconds: r.seconds }),
);
const good = r.disks.every((d) => d.sha256 === golden.manifest.sha256 && d.bootedSystem);
process.exit(r.senderCode === 0 && good ? 0 : 1);
