// The netboot benchmark (run as root, by build/bench.sh): `clone send --netboot` to 1 box, then to
// 2 (test/bench/netboot.ts: QEMU boxes behind ipmi_sim BMCs, blank disks, network first), from its
// start to every box's system up from its disk (BENCH-READY on its console), and the parts: power
// on to the rescue's network up, the stream (every receiver joined to each one's last byte), the
// verify (each box's read-back of the image), the reboot (the power cycle after it verified to its
// system up from disk). Writes the netboot section of build/bench-results.json.
//
//   tsx test/bench/netboot-bench.ts [--rounds R] [--boxes 1,2]
//
// Each round of 2 boxes takes 3-8 minutes of two TCG guests: 1 round by default (medians otherwise).
// At most 2 guests run at once. Needs the bench (BENCH_DIR) and build/out/zshield (or ZSHIELD_BIN).
import fs from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { type BenchRow, median, writeBenchSection } from '../../build/bench-table.js';
import { packagedGolden } from '../appliance/golden-fixture.js';
import { BENCH_DIR, benchInfo } from './bench-env.js';
import { type ChainParts, chainParts } from './netboot-parts.js';
import { benchChainInput, runChain } from './netboot.js';

const START_LOAD = loadavg();
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const ROUNDS = Number(arg('rounds', '1'));
const COUNTS = arg('boxes', '1,2').split(',').map(Number);
/** sendArgv's cap (test/bench/netboot.ts): guests under emulation write slower than a LAN sends. */
const BITRATE = '40 Mbit/s';
const zshieldBin = process.env['ZSHIELD_BIN'] ?? path.resolve(import.meta.dirname, '../../build/out/zshield');

const s1 = (x: number) => x.toFixed(1);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

interface Round {
  parts: ChainParts;
  sendToExit: number;
  rescueBytes: number;
}

/** One chain of `count` boxes; throws unless every box verified and booted its system from disk. */
async function round(count: number, r: number): Promise<Round & { image: { raw: number; packed: number } }> {
  const workDir = path.join(BENCH_DIR, 'work', `netboot-bench-${count}`);
  fs.rmSync(workDir, { recursive: true, force: true });
  fs.mkdirSync(workDir, { recursive: true });
  const golden = await packagedGolden(workDir);
  const image = { raw: golden.manifest.size, packed: fs.statSync(golden.image).size };
  const res = await runChain({
    ...benchChainInput(workDir, golden, { zshieldBin, vmlinuz: benchInfo().vmlinuz }),
    count,
  });
  const parts = chainParts(res.timeline.sender, res.timeline.consoles);
  // Kept for the record beside the consoles; the disks and copies go (1 GiB each).
  fs.writeFileSync(
    path.join(workDir, `round-${r}.json`),
    `${JSON.stringify({ count, senderCode: res.senderCode, seconds: res.seconds, parts }, null, 2)}\n`,
  );
  fs.writeFileSync(path.join(workDir, `round-${r}.sender.log`), res.senderOut);
  for (const name of fs.readdirSync(workDir)) {
    if (!/\.(log|json)$/.test(name)) fs.rmSync(path.join(workDir, name), { recursive: true, force: true });
  }
  const bad = res.disks.filter((d) => d.sha256 !== golden.manifest.sha256 || !d.bootedSystem);
  if (res.senderCode !== 0 || bad.length > 0) {
    throw new Error(
      `${count} box(es), round ${r}: clone send exited ${res.senderCode}; not identical or not booted: ${bad.map((d) => d.name).join(', ') || 'none'} (logs in ${workDir})\n${res.senderOut.slice(-3000)}`,
    );
  }
  const missing = parts.perBox.filter((b) => Object.values(b).some((v) => v === null));
  if (parts.allUp === null || parts.allJoined === null || missing.length > 0) {
    throw new Error(
      `${count} box(es), round ${r}: a step's marker is missing from the sender's lines or a console (${workDir}/round-${r}.json)`,
    );
  }
  console.log(
    `${count} box(es), round ${r}: all up ${s1(parts.allUp)} s (clone send exited ${s1(res.seconds['sendToExit']!)} s)`,
  );
  return { parts, sendToExit: res.seconds['sendToExit']!, rescueBytes: res.rescueBytes, image };
}

type Part = 'powerToNetwork' | 'stream' | 'verify' | 'reboot';

/** The rows of `count` boxes: the whole chain and each part, the slowest box's (each box's in the detail). */
function rowsOf(count: number, rounds: Round[], image: { raw: number; packed: number }): BenchRow[] {
  const label = `${count} box${count > 1 ? 'es' : ''}`;
  const last = rounds.at(-1)!;
  const slowest = (r: Round, p: Part) => Math.max(...r.parts.perBox.map((b) => b[p]!));
  const perBox = (p: Part) =>
    count > 1 ? `; ${last.parts.perBox.map((b) => `${b.name} ${s1(b[p]!)} s`).join(', ')}` : '';
  const row = (name: string, runs: number[], detail: string): BenchRow => ({
    name: `${label}: ${name}`,
    zshield: median(runs),
    plain: null,
    ratio: null,
    rounds: runs.length,
    unit: 's',
    ...(runs.length > 1 ? { zshieldRuns: runs } : {}),
    detail,
  });
  const part = (p: Part, name: string, detail: string) =>
    row(
      name,
      rounds.map((r) => slowest(r, p)),
      `${detail}${perBox(p)}`,
    );
  const at = (xs: (number | null)[]) => s1(Math.max(...xs.map((x) => x ?? Number.NaN)));
  const b = last.parts.boxes;
  return [
    row(
      'clone send --netboot to every system up from its disk',
      rounds.map((r) => r.parts.allUp!),
      `seconds after the start: ${count > 1 ? 'last ' : ''}powered ${at(b.map((x) => x.poweredOn))}, all joined ${s1(last.parts.allJoined!)}, received ${at(b.map((x) => x.received))}, verified ${at(b.map((x) => x.verified))}, cycled ${at(b.map((x) => x.cycled))}; clone send exited ${s1(last.sendToExit)}`,
    ),
    part(
      'powerToNetwork',
      'power on to rescue network up',
      `firmware, DHCP, iPXE script, kernel and ${mib(last.rescueBytes)} initramfs over HTTP, drivers, DHCP`,
    ),
    part(
      'stream',
      'stream, receivers joined to received',
      `${mib(image.packed)} compressed (${mib(image.raw)} raw) multicast, capped at ${BITRATE}`,
    ),
    part('verify', 'verify, read back every chunk', `${mib(image.raw)} read back and hashed by the rescue`),
    part(
      'reboot',
      'reboot, cycle after verified to system up from disk',
      'BMC power on (the rescue powered off), iPXE told to boot the disk, GRUB, kernel, the system',
    ),
  ];
}

async function main(): Promise<void> {
  const rows: BenchRow[] = [];
  for (const count of COUNTS) {
    const rounds: Round[] = [];
    let image = { raw: 0, packed: 0 };
    for (let r = 1; r <= ROUNDS; r++) {
      const got = await round(count, r);
      image = got.image;
      rounds.push(got);
    }
    rows.push(...rowsOf(count, rounds, image));
  }
  writeBenchSection('netboot', rows, {
    loadBefore: START_LOAD,
    intro:
      "From the start of `clone send --netboot` to every box running its new system from its own disk (BENCH-READY on its serial console), and the parts of it, read from the sender's lines and from each box's serial console as the bench saw them appear (every 250 ms). With 2 boxes a part is the slower box's; both are in the detail. No plain tool does this chain: the multicast alone against one receiver is the Cloning line.",
    note: `QEMU TCG guests of 1 CPU and 1 GiB, at most 2 at once, on ${cpus().length} host cores shared with other work; ${ROUNDS === 1 ? '1 round per box count (a 2-box run takes 3-8 minutes of emulation, with the load of the host): single runs, not medians' : `medians of ${ROUNDS} rounds`}.`,
  });
}

await main();
