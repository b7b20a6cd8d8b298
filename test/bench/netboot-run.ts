// `tsx test/bench/netboot-run.ts N [WORKDIR]`: the netboot chain with N boxes, outside vitest (for
// the benchmark and by hand), on the bench's golden image and kernel; prints the times as JSON.
// Needs the bench built (BENCH_DIR) and build/out/zshield; root.
import fs from 'node:fs';
import path from 'node:path';
import { GOLDEN_MEDIUM_MiB, packagedGolden } from '../appliance/golden-fixture.js';
import { BENCH_DIR, benchInfo } from './appliance.js';
import { runChain } from './netboot.js';

const count = Number(process.argv[2] ?? '2');
const workDir = process.argv[3] ?? path.join(BENCH_DIR, 'work', `netboot-run-${count}`);
fs.rmSync(workDir, { recursive: true, force: true });
fs.mkdirSync(workDir, { recursive: true });
const golden = await packagedGolden(workDir);
const info = benchInfo();
const r = await runChain({
  workDir,
  count,
  zshieldBin: process.env['ZSHIELD_BIN'] ?? path.resolve(import.meta.dirname, '../../build/out/zshield'),
  kernelDir: path.dirname(path.dirname(info.vmlinuz)),
  image: golden.image,
  keyFile: golden.keyFile,
  publicKey: golden.key.publicText,
  size: golden.manifest.size,
  sha256: golden.manifest.sha256,
  diskMiB: GOLDEN_MEDIUM_MiB,
});
console.log(r.senderOut);
for (const d of r.disks) {
  fs.writeFileSync(path.join(workDir, `${d.name}.console.copy.log`), d.console);
  console.log(
    `${d.name}: disk ${d.sha256 === golden.manifest.sha256 ? 'identical to the image' : `DIFFERS (${d.sha256})`}, system ${d.bootedSystem ? 'booted' : 'NOT booted'}`,
  );
}
console.log(
  JSON.stringify({ boxes: count, senderCode: r.senderCode, rescueBytes: r.rescueBytes, seconds: r.seconds }),
);
process.exit(
  r.senderCode === 0 && r.disks.every((d) => d.sha256 === golden.manifest.sha256 && d.bootedSystem) ? 0 : 1,
);
