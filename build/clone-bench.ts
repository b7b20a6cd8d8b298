// The cloning benchmark (run as root: it makes network namespaces, and removes them):
//   tsx build/clone-bench.ts [--mib 256] [--cap 100m]
// One golden image (half random, half zeros), sent with the multicast bit rate capped well below
// what two cores decode, so the network path is measured and not the CPU: to 1 receiver, then to
// 4 at once, then, for reference, the plain local `zstd -dc IMAGE | dd of=TARGET`. Prints wall
// time and the sender's bytes on the wire (its interface's tx_bytes, repairs included); with the
// default size and cap, the rows go to the `clone` section of build/bench-results.json.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { writeBenchSection } from './bench-table.js';
import { makeGoldenImage } from '../src/golden/golden-image.js';
import { writeNewSigningKey } from '../src/system/signing.js';
import { BUNDLE, ensureBundle } from '../test/bundle.js';
import { type Lan, makeLan, runIn } from '../test/host/netns.js';
import { REAL_WRITES } from '../src/system/writes.js';

const ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C',
};
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const MIB = Number(arg('mib', '256'));
// 100 Mbit/s: at 400 the four receivers' decoding on two cores shared with other QEMU guests set the
// pace (1.3-2 times one receiver's time), which is the CPU measured, not the network path.
const CAP = arg('cap', '100m');
const START_LOAD = loadavg();

function txBytes(lan: Lan): number {
  const r = spawnSync(
    'ip',
    ['netns', 'exec', lan.ns('s'), 'cat', '/sys/class/net/eth0/statistics/tx_bytes'],
    {
      encoding: 'utf8',
    },
  );
  return Number(r.stdout.trim());
}

async function session(lan: Lan, dir: string, config: string, image: string, n: number) {
  const hosts = ['r1', 'r2', 'r3', 'r4'].slice(0, n);
  const zs = (host: string, args: string[]) =>
    runIn(lan.ns(host), [process.execPath, BUNDLE, '-c', config, ...args], ENV);
  const targets = hosts.map((h) => path.join(dir, `${h}-${n}.disk`));
  const rx = hosts.map((h, i) =>
    zs(h, ['clone', 'receive', '--target-file', targets[i]!, '--yes', '--name', h]),
  );
  const tx0 = txBytes(lan);
  const t0 = performance.now();
  const sender = zs('s', ['clone', 'send', image, '--min-receivers', String(n), '--max-bitrate', CAP]);
  let streamed = 0;
  const poll = setInterval(() => {
    if (!streamed && /stream sent|^receiver +name/m.test(sender.out()))
      streamed = (performance.now() - t0) / 1000;
  }, 20);
  const code = await sender.exited;
  clearInterval(poll);
  const seconds = (performance.now() - t0) / 1000;
  const codes = await Promise.all(rx.map((p) => p.exited));
  if (code !== 0 || codes.some((c) => c !== 0)) {
    throw new Error(`session of ${n} failed:\n${sender.out()}\n${rx.map((p) => p.out()).join('\n')}`);
  }
  const wire = txBytes(lan) - tx0;
  for (const t of targets) rmSync(t);
  return {
    seconds,
    streamed: streamed || seconds,
    wire,
    table: sender
      .out()
      .split('\n')
      .filter((l) => /^(receiver |198\.18\.0\.)/.test(l)),
  };
}

/** The plain tools' pipeline, zstd's stdout handed to dd as its stdin (a kernel pipe, no shell). */
async function plain(image: string, target: string): Promise<number> {
  const t0 = performance.now();
  const zstd = spawn('zstd', ['-dc', image], { stdio: ['ignore', 'pipe', 'inherit'] });
  const dd = spawn('dd', [`of=${target}`, 'bs=4M', 'status=none'], {
    stdio: [zstd.stdout, 'ignore', 'inherit'],
  });
  zstd.stdout.destroy(); // dd holds the pipe now; ours would keep zstd from seeing dd's end
  const codes = await Promise.all([zstd, dd].map((c) => new Promise((r) => c.on('exit', r))));
  if (codes.some((c) => c !== 0)) throw new Error(`zstd | dd failed: ${codes.join(', ')}`);
  const s = (performance.now() - t0) / 1000;
  rmSync(target);
  return s;
}

async function main(): Promise<void> {
  ensureBundle();
  // Targets on tmpfs: the disk under /tmp would be measured, not the clone.
  const dir = mkdtempSync('/dev/shm/zshield-clone-bench-');
  const lan = makeLan(['s', 'r1', 'r2', 'r3', 'r4']);
  try {
    const half = (MIB / 2) * 1024 * 1024;
    writeFileSync(path.join(dir, 'raw.img'), Buffer.concat([randomBytes(half), Buffer.alloc(half)]));
    const key = await writeNewSigningKey(REAL_WRITES, path.join(dir, 'vendor.key'));
    const image = path.join(dir, 'golden.img.zst');
    const m = await makeGoldenImage({
      source: path.join(dir, 'raw.img'),
      out: image,
      name: 'bench',
      version: '1',
      key,
    });
    rmSync(path.join(dir, 'raw.img'));
    const config = path.join(dir, 'zshield.conf');
    writeFileSync(
      config,
      JSON.stringify({
        log: { file: null },
        clone: { trustedKeys: [key.publicText], signingKey: path.join(dir, 'vendor.key') },
      }),
    );
    console.log('clone to 1 receiver ...');
    const one = await session(lan, dir, config, image, 1);
    console.log('clone to 4 receivers ...');
    const four = await session(lan, dir, config, image, 4);
    const dd = await plain(image, path.join(dir, 'plain.disk'));
    const z = m.compressedSize;
    const mib = (b: number) => (b / 1024 / 1024).toFixed(1);
    console.log(
      `image: ${mib(m.size)} MiB raw, ${mib(z)} MiB compressed; multicast capped at ${CAP}bit/s; load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
    );
    console.log(
      '| run | stream sent | until all verified | sender bytes on the wire | wire / compressed image |',
    );
    console.log('|---|---|---|---|---|');
    console.log(
      `| clone to 1 receiver | ${one.streamed.toFixed(1)} s | ${one.seconds.toFixed(1)} s | ${mib(one.wire)} MiB | ${(one.wire / z).toFixed(2)} |`,
    );
    console.log(
      `| clone to 4 receivers | ${four.streamed.toFixed(1)} s (${(four.streamed / one.streamed).toFixed(2)} × 1) | ${four.seconds.toFixed(1)} s (${(four.seconds / one.seconds).toFixed(2)} × 1) | ${mib(four.wire)} MiB (${(four.wire / one.wire).toFixed(2)} × 1) | ${(four.wire / z).toFixed(2)} |`,
    );
    console.log(`| zstd -dc \\| dd, local | - | ${dd.toFixed(1)} s | - | - |`);
    console.log(four.table.join('\n'));
    if (MIB === 256 && CAP === '100m') writeSection(one, four, dd, z);
  } finally {
    lan.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

type Session = Awaited<ReturnType<typeof session>>;

/** The `clone` section: one receiver against the local pipeline, four against one, the bytes sent. */
function writeSection(one: Session, four: Session, dd: number, compressed: number): void {
  const mib = (b: number) => b / 1024 / 1024;
  writeBenchSection(
    'clone',
    [
      {
        name: 'clone to 1 receiver, until verified (vs zstd -dc | dd, local)',
        zshield: one.seconds,
        plain: dd,
        ratio: one.seconds / dd,
        rounds: 1,
        unit: 's',
        detail: `stream sent in ${one.streamed.toFixed(1)} s`,
      },
      {
        name: 'clone to 4 receivers, until all verified (vs 1 receiver)',
        zshield: four.seconds,
        plain: one.seconds,
        ratio: four.seconds / one.seconds,
        rounds: 1,
        unit: 's',
        detail: `stream sent in ${four.streamed.toFixed(1)} s`,
      },
      {
        name: "sender's bytes on the wire, 4 receivers (vs the compressed image)",
        zshield: mib(four.wire),
        plain: mib(compressed),
        ratio: four.wire / compressed,
        rounds: 1,
        unit: 'MiB',
        detail: `1 receiver: ${mib(one.wire).toFixed(1)} MiB`,
      },
    ],
    {
      loadBefore: START_LOAD,
      intro: `A ${MIB} MiB golden image (half random, half zeros) cloned over udpcast in network namespaces on this host, the multicast capped at ${CAP}bit/s so the network path is measured, not two cores decoding; targets on tmpfs.`,
    },
  );
}

await main();
