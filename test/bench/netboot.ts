// The netboot bench: a LAN in a hub network namespace (198.18.0.0/24 only there), boxes that are
// QEMU guests behind OpenIPMI's ipmi_sim BMCs (ipmitool's power on/cycle/status really start,
// reset and stop them), with blank disks and a boot order of network first, then disk; radvd on
// the bridge as a LAN's router would (iPXE waits 16-30 s for a router advertisement without one).
// `zshield clone send --netboot` runs in the hub, on its bridge, and does the rest. What the shared
// probes (pxe-boot-probe.sh, ipmi-probe.sh) found is written again here, for the repository.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { GOLDEN_MEDIUM_MiB, type PackagedGolden } from '../appliance/golden-fixture.js';
import { type StampedLine, newLines } from './netboot-parts.js';

export const HUB_ADDRESS = '198.18.0.1';
export const DHCP_RANGE = '198.18.0.100,198.18.0.199';
const BMC_USER = 'admin';
const BMC_PASSWORD = 'bench-bmc-pw';

export interface NetbootBox {
  name: string;
  mac: string;
  serial: string;
  disk: string;
  console: string;
  pidFile: string;
  lanPort: number;
  /** The ipmitool argv for a power action (the password comes from IPMI_PASSWORD, -E). */
  ipmi: (action: 'status' | 'on' | 'cycle' | 'off') => string[];
}

export interface NetbootLan {
  hub: string;
  boxes: NetbootBox[];
  /** The file holding the BMCs' password (0600). */
  passwordFile: string;
  /** Runs argv in the hub namespace (where the BMCs, dnsmasq and the sender live). */
  spawnInHub: (argv: string[], env: Record<string, string>) => ChildProcess;
  destroy: () => void;
}

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

/** The QEMU command ipmi_sim starts on "power on" (no -no-reboot: an IPMI reset is a guest reset). */
function qemuCommand(b: NetbootBox, tap: string, serialPort: number): string {
  return [
    'qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 1024 -nodefaults -no-user-config',
    // graphics=off: SeaBIOS and iPXE write to the serial console too (timings, "Booting from").
    '-machine pc,graphics=off -display none -monitor none',
    `-pidfile ${b.pidFile} -chardev file,id=con,path=${b.console},append=on -serial chardev:con`,
    `-netdev tap,id=n0,ifname=${tap},script=no,downscript=no`,
    `-device virtio-net-pci,netdev=n0,mac=${b.mac},bootindex=1`,
    `-drive file=${b.disk},format=raw,if=none,id=d0,cache=unsafe`,
    `-device virtio-blk-pci,drive=d0,serial=${b.serial},bootindex=2`,
    `-chardev socket,id=ipmi0,host=127.0.0.1,port=${serialPort},reconnect=2`,
    '-device ipmi-bmc-extern,id=bmc0,chardev=ipmi0 -device isa-ipmi-kcs,bmc=bmc0',
    // The bench system's agent says BENCH-READY on the console once it has a port named bench.
    '-chardev null,id=bench -device virtio-serial-pci -device virtserialport,chardev=bench,name=bench',
  ].join(' ');
}

/** lan.conf of one BMC: lanplus on the hub's loopback, the VM channel QEMU connects to. */
function lanConf(b: NetbootBox, tap: string, serialPort: number): string {
  const auths = 'none md2 md5 straight';
  return [
    `name "${b.name}bmc"`,
    'set_working_mc 0x20',
    '  startlan 1',
    `    addr 127.0.0.1 ${b.lanPort}`,
    '    priv_limit admin',
    ...['callback', 'user', 'operator', 'admin'].map((p) => `    allowed_auths_${p} ${auths}`),
    // Without a guid every lanplus (RMCP+) session fails.
    '    guid a123456789abcdefa123456789abcdef',
    '  endlan',
    `  serial 15 127.0.0.1 ${serialPort} codec VM`,
    `  startcmd "${qemuCommand(b, tap, serialPort)}"`,
    '  startnow false',
    '  poweroff_wait 10',
    '  kill_wait 5',
    `  user 2 true "${BMC_USER}" "${BMC_PASSWORD}" admin 10 ${auths}`,
    '',
  ].join('\n');
}

const SIM_EMU = [
  'mc_setbmc 0x20',
  'mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr',
  'sel_enable 0x20 1000 0x0a',
  'mc_enable 0x20',
  '',
].join('\n');

/**
 * The hub, radvd, and per box a blank disk of `diskMiB`, a tap and an ipmi_sim BMC (its QEMU not
 * started: the boxes are off). `destroy` stops every process by pid and removes the namespace.
 */
export function makeNetbootLan(workDir: string, count: number, diskMiB: number): NetbootLan {
  const hub = `zsnb${process.pid % 100000}`;
  const procs: ChildProcess[] = [];
  const boxes: NetbootBox[] = [];
  const passwordFile = path.join(workDir, 'bmc.pw');
  const inHub = (argv: string[], env: Record<string, string>, log?: string) => {
    const out = log ? fs.openSync(log, 'a') : 'pipe';
    const child = spawn('ip', ['netns', 'exec', hub, ...argv], {
      env,
      detached: true,
      stdio: ['ignore', out, out],
    });
    procs.push(child);
    return child;
  };
  const destroy = () => {
    for (const b of boxes) {
      // QEMU removes its pid file when it exits.
      const pid = Number(fs.existsSync(b.pidFile) ? fs.readFileSync(b.pidFile, 'utf8').trim() || 0 : 0);
      if (pid > 0) spawnSync('kill', ['-9', String(pid)]);
    }
    for (const p of procs.splice(0)) {
      try {
        if (p.pid) process.kill(-p.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    spawnSync('ip', ['netns', 'del', hub]);
  };
  const env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' };
  try {
    ip(['netns', 'add', hub]);
    ip(['-n', hub, 'link', 'set', 'lo', 'up']);
    ip(['-n', hub, 'link', 'add', 'br0', 'type', 'bridge', 'forward_delay', '0', 'mcast_snooping', '0']);
    ip(['-n', hub, 'addr', 'add', `${HUB_ADDRESS}/24`, 'brd', '+', 'dev', 'br0']);
    ip(['-n', hub, 'link', 'set', 'br0', 'up']);
    // A bridge whose ports are all down has no carrier, and an interface without carrier has no
    // address for node (libuv lists running interfaces only): a veth pair keeps br0 running
    // while every box is off, as a switch port keeps a real LAN interface up.
    ip(['-n', hub, 'link', 'add', 'carrier0', 'type', 'veth', 'peer', 'name', 'carrier1']);
    ip(['-n', hub, 'link', 'set', 'carrier0', 'master', 'br0', 'up']);
    ip(['-n', hub, 'link', 'set', 'carrier1', 'up']);
    ip(['-n', hub, 'route', 'add', '224.0.0.0/4', 'dev', 'br0']);
    fs.writeFileSync(passwordFile, `${BMC_PASSWORD}\n`, { mode: 0o600 });
    // An RA without prefix and with router lifetime 0: iPXE's IPv6 wait ends at once.
    const radvd = path.join(workDir, 'radvd.conf');
    fs.writeFileSync(
      radvd,
      'interface br0 {\n AdvSendAdvert on;\n AdvDefaultLifetime 0;\n MaxRtrAdvInterval 30;\n};\n',
    );
    spawnSync('ip', ['netns', 'exec', hub, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    inHub(
      ['radvd', '-n', '-C', radvd, '-p', path.join(workDir, 'radvd.pid'), '-m', 'stderr'],
      env,
      path.join(workDir, 'radvd.log'),
    );
    for (let i = 0; i < count; i++) {
      const name = `box${i + 1}`;
      const lanPort = 9101 + 2 * i;
      const b: NetbootBox = {
        name,
        mac: `52:54:00:18:00:${(0x11 + i).toString(16)}`,
        serial: `ZS-NETBOOT-${i + 1}`,
        disk: path.join(workDir, `${name}.img`),
        console: path.join(workDir, `${name}.console.log`),
        pidFile: path.join(workDir, `${name}.pid`),
        lanPort,
        ipmi: (action) => [
          'ipmitool',
          '-I',
          'lanplus',
          '-C',
          '3',
          '-H',
          '127.0.0.1',
          '-p',
          String(lanPort),
          '-U',
          BMC_USER,
          '-E',
          'chassis',
          'power',
          action,
        ],
      };
      boxes.push(b);
      fs.writeFileSync(b.pidFile, '');
      fs.writeFileSync(b.console, '');
      fs.closeSync(fs.openSync(b.disk, 'w'));
      fs.truncateSync(b.disk, diskMiB * 1024 * 1024);
      const tap = `${hub}t${i}`;
      ip(['-n', hub, 'tuntap', 'add', tap, 'mode', 'tap']);
      ip(['-n', hub, 'link', 'set', tap, 'master', 'br0', 'up']);
      const conf = path.join(workDir, `${name}.lan.conf`);
      fs.writeFileSync(conf, lanConf(b, tap, lanPort + 1));
      const emu = path.join(workDir, `${name}.emu`);
      fs.writeFileSync(emu, SIM_EMU);
      const state = path.join(workDir, `${name}.state`);
      fs.mkdirSync(state, { recursive: true });
      inHub(
        ['ipmi_sim', '-n', '-c', conf, '-f', emu, '-s', state],
        env,
        path.join(workDir, `${name}.ipmi_sim.log`),
      );
    }
  } catch (err) {
    destroy();
    throw err;
  }
  return {
    hub,
    boxes,
    passwordFile,
    spawnInHub: (argv, e) => inHub(argv, e),
    destroy,
  };
}

/** A sender config with the boxes as clone.machines, their BMC password from the 0600 file. */
export function senderConfig(
  lan: NetbootLan,
  c: { publicKey: string; keyFile: string },
): Record<string, unknown> {
  return {
    log: { file: null },
    clone: {
      trustedKeys: [c.publicKey],
      signingKey: c.keyFile,
      interface: 'br0',
      send: { maxWaitSeconds: 600, startTimeoutSeconds: 1200, repairWindowSeconds: 900 },
      machines: lan.boxes.map((b) => ({
        name: b.name,
        mac: b.mac,
        disk: b.serial,
        power: { status: b.ipmi('status'), on: b.ipmi('on'), cycle: b.ipmi('cycle') },
        password: { file: lan.passwordFile },
      })),
    },
  };
}

export interface ChainInput {
  workDir: string;
  count: number;
  zshieldBin: string;
  /** A kernel folder (boot/vmlinuz-V, lib/modules/V): the bench's kernel. */
  kernelDir: string;
  image: string;
  keyFile: string;
  publicKey: string;
  /** The image's raw size and SHA-256 (each box's disk is checked against them). */
  size: number;
  sha256: string;
  diskMiB: number;
  /** One more box on the bridge, not listed, booting network first then its own disk (the image). */
  unlisted?: boolean;
  /** This box's network is cut for `cutSeconds` once it received 10 % (its receiver gives up). */
  cutNetworkOf?: string;
  cutSeconds?: number;
  /** The rescue trusts this key instead (its rescue.json is made to say it trusts the session's). */
  rescueKey?: string;
  /** udp-sender's patience (default 1000: guests under emulation stall for seconds while they write). */
  retriesUntilDrop?: number;
  /** clone send options added (a shorter repair window, say). */
  senderArgs?: string[];
}

/** A chain's inputs from the bench: the zshield binary, its kernel (the folder above vmlinuz's), the packaged golden image and its key. */
export function benchChainInput(
  workDir: string,
  golden: PackagedGolden,
  bench: { zshieldBin: string; vmlinuz: string },
): Omit<ChainInput, 'count'> {
  return {
    workDir,
    zshieldBin: bench.zshieldBin,
    kernelDir: path.dirname(path.dirname(bench.vmlinuz)),
    image: golden.image,
    keyFile: golden.keyFile,
    publicKey: golden.key.publicText,
    size: golden.manifest.size,
    sha256: golden.manifest.sha256,
    diskMiB: GOLDEN_MEDIUM_MiB,
  };
}

export interface BoxOutcome {
  name: string;
  sha256: string;
  bootedSystem: boolean;
  console: string;
}

export interface ChainResult {
  senderCode: number | null;
  senderOut: string;
  rescueBytes: number;
  /** Per box: SHA-256 of the first `size` bytes of its disk, and whether its console showed the system. */
  disks: BoxOutcome[];
  /** The unlisted box: its disk before and after, and whether it booted its own system. */
  unlisted: (BoxOutcome & { sha256Before: string }) | null;
  seconds: Record<string, number | null>;
  /** Every line of the sender and of each box's console, stamped when the bench saw it (seconds after clone send started). */
  timeline: { sender: StampedLine[]; consoles: Map<string, StampedLine[]> };
}

const ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C',
};

function sha256Head(file: string, size: number): string {
  const r = spawnSync('sh', ['-c', 'head -c "$1" "$2" | sha256sum', 'sh', String(size), file], {
    encoding: 'utf8',
  });
  return r.stdout.slice(0, 64);
}

const SYSTEM_MARKER = 'BENCH-READY';
const booted = (consoleLog: string) => fs.readFileSync(consoleLog, 'utf8').includes(SYSTEM_MARKER);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The rescue, made by the binary; with `rescueKey`, one that trusts another key than the session's. */
function makeRescue(c: ChainInput, rescue: string): void {
  const made = spawnSync(
    c.zshieldBin,
    ['clone', 'rescue', 'make', rescue, '--key', c.rescueKey ?? c.publicKey, '--kernel', c.kernelDir],
    { encoding: 'utf8', env: ENV },
  );
  if (made.status !== 0) throw new Error(`rescue make: ${made.stdout}${made.stderr}`);
  if (c.rescueKey) {
    // The sender checks rescue.json; the initramfs holds the other key: the box's own check decides.
    const m = path.join(rescue, 'rescue.json');
    const j = JSON.parse(fs.readFileSync(m, 'utf8'));
    j.trustedKeys = [c.publicKey];
    fs.writeFileSync(m, JSON.stringify(j));
  }
}

/** The unlisted box: its disk holds the image (a system of its own), it boots network first. */
function startUnlisted(c: ChainInput, lan: NetbootLan): { disk: string; console: string; before: string } {
  const disk = path.join(c.workDir, 'unlisted.img');
  const consoleLog = path.join(c.workDir, 'unlisted.console.log');
  spawnSync('sh', ['-c', 'zstd -dcq "$1" >"$2"', 'sh', c.image, disk]);
  fs.writeFileSync(consoleLog, '');
  const tap = `${lan.hub}u`;
  ip(['-n', lan.hub, 'tuntap', 'add', tap, 'mode', 'tap']);
  ip(['-n', lan.hub, 'link', 'set', tap, 'master', 'br0', 'up']);
  const box: NetbootBox = {
    ...lan.boxes[0]!,
    name: 'unlisted',
    mac: '52:54:00:18:00:99',
    serial: 'ZS-UNLISTED',
    disk,
    console: consoleLog,
    pidFile: path.join(c.workDir, 'unlisted.pid'),
  };
  // No BMC: started as it is, its ipmi device pointing nowhere is left out.
  const argv = qemuCommand(box, tap, 0)
    .replace(/ -chardev socket,id=ipmi0\S*| -device ipmi-bmc-extern\S*| -device isa-ipmi-kcs\S*/g, '')
    .split(' ');
  lan.spawnInHub(argv, ENV);
  return { disk, console: consoleLog, before: sha256Head(disk, c.size) };
}

/** Cuts a box's tap for a while once its console says it received 10 %. */
async function cutNetwork(c: ChainInput, lan: NetbootLan, done: () => boolean): Promise<void> {
  const i = lan.boxes.findIndex((b) => b.name === c.cutNetworkOf);
  const b = lan.boxes[i]!;
  // Not the plan's step title (printed before the session is joined): its first progress line.
  while (!done() && !fs.readFileSync(b.console, 'utf8').includes('received 10%')) await sleep(500);
  if (done()) return;
  const tap = `${lan.hub}t${i}`;
  ip(['-n', lan.hub, 'link', 'set', tap, 'down']);
  await sleep((c.cutSeconds ?? 40) * 1000);
  ip(['-n', lan.hub, 'link', 'set', tap, 'up']);
}

function sendArgv(c: ChainInput, conf: string, rescue: string): string[] {
  return [
    c.zshieldBin,
    '-c',
    conf,
    'clone',
    'send',
    c.image,
    '--netboot',
    '--interface',
    'br0',
    '--rescue',
    rescue,
    '--dhcp-range',
    DHCP_RANGE,
    '--rescue-args',
    'console=ttyS0',
    // Guests under emulation stall for seconds while they write: a patient sender, capped.
    '--retries-until-drop',
    String(c.retriesUntilDrop ?? 1000),
    '--max-bitrate',
    '40m',
    '--boot-timeout',
    '600',
    ...(c.senderArgs ?? []),
  ];
}

/**
 * Reads each box's console as it grows (every 250 ms) and stamps each new line: the consoles are
 * the only clock of a box's boots (power on to the rescue's network, the system up from disk).
 */
function watchConsoles(
  boxes: readonly NetbootBox[],
  since: () => number,
): { lines: Map<string, StampedLine[]>; stop: () => void } {
  const lines = new Map(boxes.map((b) => [b.name, [] as StampedLine[]]));
  const state = new Map(boxes.map((b) => [b.name, { offset: 0, rest: '' }]));
  const read = () => {
    for (const b of boxes) {
      const s = state.get(b.name)!;
      // A box not started yet has no console file: nothing to read this time.
      if (!fs.existsSync(b.console)) continue;
      const fd = fs.openSync(b.console, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        if (size <= s.offset) continue;
        const buf = Buffer.alloc(size - s.offset);
        fs.readSync(fd, buf, 0, buf.length, s.offset);
        s.offset = size;
        lines.get(b.name)!.push(...newLines(buf.toString('latin1'), s, since()));
      } finally {
        fs.closeSync(fd);
      }
    }
  };
  const timer = setInterval(read, 250);
  let stopped = false;
  return {
    lines,
    stop: () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      read();
    },
  };
}

/**
 * The whole chain: rescue make, then `clone send --netboot` powering the boxes through ipmitool,
 * until it exits; then until each box's console shows the bench system (booted from its disk).
 */
export async function runChain(c: ChainInput): Promise<ChainResult> {
  const rescue = path.join(c.workDir, 'rescue');
  const t0 = Date.now();
  makeRescue(c, rescue);
  const rescueMake = (Date.now() - t0) / 1000;
  const lan = makeNetbootLan(c.workDir, c.count, c.diskMiB);
  let consoles: ReturnType<typeof watchConsoles> | undefined;
  try {
    const conf = path.join(c.workDir, 'sender.conf');
    fs.writeFileSync(conf, JSON.stringify(senderConfig(lan, c)));
    const other = c.unlisted ? startUnlisted(c, lan) : null;
    const t1 = Date.now();
    const since = () => (Date.now() - t1) / 1000;
    const sender = lan.spawnInHub(sendArgv(c, conf, rescue), ENV);
    let out = '';
    const lines: StampedLine[] = [];
    const streams = { stdout: { rest: '' }, stderr: { rest: '' } };
    const take = (which: keyof typeof streams) => (d: Buffer) => {
      out += d;
      lines.push(...newLines(String(d), streams[which], since()));
    };
    sender.stdout?.on('data', take('stdout'));
    sender.stderr?.on('data', take('stderr'));
    consoles = watchConsoles(lan.boxes, since);
    let ended = false;
    const exited = new Promise<number | null>((resolve) => sender.on('close', (x) => resolve(x)));
    void exited.then(() => (ended = true));
    const cut = c.cutNetworkOf ? cutNetwork(c, lan, () => ended) : Promise.resolve();
    const code = await exited;
    await cut;
    const sendToExit = (Date.now() - t1) / 1000;
    const end = Date.now() + 600_000;
    const consoleLogs = [...lan.boxes.map((b) => b.console), ...(other ? [other.console] : [])];
    while (code === 0 && Date.now() < end && !consoleLogs.every(booted)) await sleep(1000);
    const sendToAllBooted = (Date.now() - t1) / 1000;
    consoles.stop();
    for (const b of lan.boxes)
      spawnSync('ip', ['netns', 'exec', lan.hub, ...b.ipmi('off')], {
        env: { ...ENV, IPMI_PASSWORD: BMC_PASSWORD },
      });
    const at = (re: RegExp, last = false) => {
      const hits = lines.filter((l) => re.test(l.line));
      return (last ? hits.at(-1) : hits[0])?.t ?? null;
    };
    const outcome = (name: string, disk: string, consoleLog: string): BoxOutcome => ({
      name,
      sha256: sha256Head(disk, c.size),
      bootedSystem: booted(consoleLog),
      console: fs.readFileSync(consoleLog, 'utf8'),
    });
    return {
      senderCode: code,
      senderOut: out,
      rescueBytes: fs.statSync(path.join(rescue, 'initramfs.img')).size,
      disks: lan.boxes.map((b) => outcome(b.name, b.disk, b.console)),
      unlisted: other
        ? { ...outcome('unlisted', other.disk, other.console), sha256Before: other.before }
        : null,
      seconds: {
        rescueMake,
        sendToExit,
        sendToAllBooted,
        // Parts, from the sender's own lines (seconds after clone send started).
        lastPoweredOn: at(/: (powered on|power cycled)$/),
        lastReceiverJoined: at(/^receiver \S+ joined/, true),
        reportsIn: at(/^receiver\s+name\s+multicast/),
        cycled: at(/: (powered on|power cycled)$/, true),
      },
      timeline: { sender: lines, consoles: consoles.lines },
    };
  } finally {
    consoles?.stop();
    lan.destroy();
  }
}
