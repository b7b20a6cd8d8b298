import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import type { Machine } from '../../config/clone.js';
import type { Context } from '../../context.js';
import {
  CommandError,
  ConfigError,
  InterruptedError,
  MissingToolError,
  NotFoundError,
  RefusedError,
  VerifyError,
} from '../../errors.js';
import type { Check, Step } from '../../plan/plan.js';
import type { Started } from '../../system/runner.js';
import { loadSigningKey } from '../../system/signing.js';
import { type PowerSecrets, loadPowerSecrets, powerCommand, powerStatus } from '../power.js';
import { RESCUE_FILES, type RescueManifest } from '../rescue/names.js';
import type { ReceiverRow, SendExtension } from '../send.js';
import { IPXE_BOOT_FILE, bootFileScript, checkRange, dnsmasqCommand, parseDhcpRange } from './dnsmasq.js';
import { type BoxState, type NetbootServer, startNetbootServer } from './http.js';
import { type BoxRow, boxRows, formatBoxTable } from './table.js';

export interface NetbootOptions {
  /** The rescue folder `clone rescue make` wrote. */
  rescue: string;
  /** START,END: the addresses dnsmasq gives the listed boxes. */
  dhcpRange: string;
  httpPort: number;
  /** Kernel arguments of the rescue (its console). */
  kernelArgs: string;
  /** What the rescue does once its receive ended (the sender cycles verified boxes either way). */
  after: 'poweroff' | 'reboot';
  /** How long a verified box may take to come back and be sent to its disk. */
  bootTimeoutSeconds: number;
  /** The session's signing key file (its public key must be one the rescue trusts). */
  keyFile: string | null;
}

interface Io {
  address?: string;
  netmask?: string;
  secrets?: PowerSecrets;
  dir?: string;
  server?: NetbootServer;
  dnsmasq?: Started;
  dnsmasqDone?: Promise<unknown>;
  powered: Set<string>;
  giveUp: AbortController;
}

/**
 * `clone send --netboot`: the send's plan with the boxes of clone.machines around it. Checks
 * (before anything is powered): the machines, the rescue folder against its rescue.json and the
 * session's key, the DHCP range inside the interface's subnet, dnsmasq, every password, every
 * box's power status. Then dnsmasq and the HTTP server, each box powered on (or cycled when on),
 * the stream waits for all of them; each verified box is switched to "boot from the local disk"
 * and cycled; the session ends when every verified box fetched that answer, or the boot timeout.
 */
export function netbootExtension(ctx: Context, o: NetbootOptions) {
  return (s: { session: string; portbase: number; interface: string }): SendExtension => {
    const machines = ctx.config.clone.machines;
    const io: Io = { powered: new Set(), giveUp: new AbortController() };
    const range = parseDhcpRange(o.dhcpRange);
    return {
      giveUp: io.giveUp.signal,
      minReceivers: Math.max(1, machines.length),
      checks: netbootChecks(ctx, o, s.interface, io, range),
      before: [
        {
          title: `start dnsmasq on ${s.interface} (DHCP ${range.start}-${range.end} for the ${machines.length} listed MAC(s) only, TFTP ${IPXE_BOOT_FILE}) and the HTTP server (port ${o.httpPort}) for the rescue`,
          edit: {
            files: [],
            apply: async () => startServers(ctx, o, s, io, range),
          },
        },
        ...machines.map(
          (m): Step => ({
            title: `power ${m.name}: on (${m.power.on.join(' ')}), or cycle when it is on (${m.power.cycle.join(' ')})`,
            edit: { files: [], apply: async () => powerUp(ctx, m, io) },
          }),
        ),
      ],
      finish: (rows) => finish(ctx, o, io, rows),
      always: [
        {
          title: 'stop dnsmasq and the HTTP server, remove their folder',
          edit: { files: [], apply: async () => stopServers(io) },
        },
      ],
    };
  };
}

function netbootChecks(
  ctx: Context,
  o: NetbootOptions,
  iface: string,
  io: Io,
  range: ReturnType<typeof parseDhcpRange>,
): Check[] {
  const machines = ctx.config.clone.machines;
  return [
    {
      title: `clone.machines lists the boxes (${machines.map((m) => m.name).join(', ') || 'none'})`,
      run: () => {
        if (machines.length === 0)
          throw new ConfigError([
            { where: 'clone.machines', message: 'no machine listed: --netboot has no box to power' },
          ]);
      },
    },
    {
      title: `the rescue in ${o.rescue} matches its rescue.json and trusts the session's signing key`,
      run: () => checkRescue(o),
    },
    {
      title: `the DHCP range ${range.start}-${range.end} is inside ${iface}'s subnet; dnsmasq is installed`,
      run: async () => {
        const a = (networkInterfaces()[iface] ?? []).find((x) => x.family === 'IPv4' && !x.internal);
        if (!a) throw new NotFoundError(`network interface ${iface} has no IPv4 address`);
        const bad = checkRange(range, a.address, a.netmask);
        if (bad) throw new ConfigError([{ where: '--dhcp-range', message: bad }]);
        io.address = a.address;
        io.netmask = a.netmask;
        if (!(await ctx.runner.which('dnsmasq')))
          throw new MissingToolError('dnsmasq', { hint: 'apt-get install dnsmasq-base (no service)' });
      },
    },
    {
      title:
        "every box's BMC password loads and its power status command answers on or off (nothing is powered before all do)",
      run: async () => {
        io.secrets = loadPowerSecrets(machines);
        for (const m of machines) {
          const st = await powerStatus(ctx.runner, m, io.secrets);
          ctx.out.print(`${m.name}: power ${st}`);
        }
      },
    },
  ];
}

async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const piece of createReadStream(file)) h.update(piece as Buffer);
  return h.digest('hex');
}

async function checkRescue(o: NetbootOptions): Promise<void> {
  const file = path.join(o.rescue, RESCUE_FILES.manifest);
  const text = await readFile(file, 'utf8').catch(() => null);
  if (text === null)
    throw new NotFoundError(`${file} does not exist: make the rescue with zshield clone rescue make`);
  let m: RescueManifest;
  try {
    m = JSON.parse(text) as RescueManifest;
    if (!Array.isArray(m.trustedKeys)) throw new Error('no trustedKeys');
  } catch (err) {
    throw new VerifyError(`${file} is not a rescue manifest (${(err as Error).message})`);
  }
  const want: [string, string][] = [
    [RESCUE_FILES.kernel, m.kernelSha256],
    [RESCUE_FILES.initramfs, m.initramfsSha256],
    [RESCUE_FILES.zshield, m.zshieldSha256],
  ];
  for (const [f, sha] of want) {
    const got = await sha256Of(path.join(o.rescue, f)).catch(() => 'missing');
    if (got !== sha) throw new VerifyError(`${path.join(o.rescue, f)} does not match ${file} (${got})`);
  }
  if (!o.keyFile)
    throw new ConfigError([
      { where: 'clone.signingKey', message: 'no signing key to sign the session with' },
    ]);
  const key = await loadSigningKey(o.keyFile);
  if (!m.trustedKeys.includes(key.publicText)) {
    throw new VerifyError(
      `the rescue in ${o.rescue} does not trust the session's key ${key.publicText}: every box would refuse the session`,
      { hint: `make the rescue with --key ${key.publicText}` },
    );
  }
}

async function startServers(
  ctx: Context,
  o: NetbootOptions,
  s: { session: string; portbase: number; interface: string },
  io: Io,
  range: ReturnType<typeof parseDhcpRange>,
): Promise<void> {
  const machines = ctx.config.clone.machines;
  io.server = await startNetbootServer({
    address: io.address!,
    port: o.httpPort,
    rescueDir: o.rescue,
    machines,
    session: s.session,
    portbase: s.portbase,
    kernelArgs: o.kernelArgs,
    after: o.after,
  });
  // dnsmasq drops root and runs as nobody: its TFTP root must be readable by everyone.
  io.dir = await mkdtemp(path.join(tmpdir(), 'zshield-netboot-'));
  await chmod(io.dir, 0o755);
  const tftp = path.join(io.dir, 'tftp');
  await mkdir(tftp, { mode: 0o755 });
  await writeFile(path.join(tftp, IPXE_BOOT_FILE), bootFileScript(io.server.url), { mode: 0o644 });
  if (!ctx.runner.start) throw new MissingToolError('dnsmasq', { hint: 'this runner cannot start a server' });
  io.dnsmasq = await ctx.runner.start(
    dnsmasqCommand({
      interface: s.interface,
      range,
      netmask: io.netmask!,
      machines,
      dir: io.dir,
      tftpRoot: tftp,
      onLine: (line) => ctx.log.debug(`dnsmasq: ${line}`),
    }),
  );
  io.dnsmasqDone = io.dnsmasq.done.catch((e: unknown) => e);
  // dnsmasq that cannot bind (another DHCP server on this machine) exits at once: said now, not
  // after the boxes waited for an answer that never comes.
  const early = await Promise.race([
    io.dnsmasqDone,
    new Promise((r) => setTimeout(() => r('running'), 1500)),
  ]);
  if (early !== 'running') {
    const why = early instanceof CommandError ? early.stderr.trim().split('\n').at(-1) : String(early);
    throw new RefusedError(`dnsmasq stopped at once: ${why}`, {
      hint: 'is another DHCP server running on this machine (port 67)?',
    });
  }
  ctx.out.print(`netboot: dnsmasq on ${s.interface}, rescue at ${io.server.url}`);
  void giveUpWhenAllFailed(io.server, io.giveUp);
}

/** Every box told the server it failed: nothing more can come of the stream. */
async function giveUpWhenAllFailed(server: NetbootServer, giveUp: AbortController): Promise<void> {
  const boxes = [...server.boxes.values()];
  while (!boxes.every((b) => b.failed !== null)) await server.nextChange();
  giveUp.abort();
}

async function stopServers(io: Io): Promise<void> {
  io.dnsmasq?.kill('SIGTERM');
  await io.dnsmasqDone;
  await io.server?.close();
  if (io.dir) await rm(io.dir, { recursive: true, force: true });
}

/** A BMC's cycle is off, a pause, on: its status is read once that has settled. */
const CYCLE_SETTLE_MS = 5000;

/** On, or cycled when it is on; after a cycle, on when its status says off (a cycle of an off box may do nothing). */
async function powerUp(ctx: Context, m: Machine, io: Io): Promise<void> {
  const before = await powerStatus(ctx.runner, m, io.secrets!);
  await ctx.runner.run(powerCommand(m, before === 'on' ? 'cycle' : 'on', io.secrets!));
  if (before === 'on') {
    await new Promise((r) => setTimeout(r, CYCLE_SETTLE_MS));
    if ((await powerStatus(ctx.runner, m, io.secrets!)) === 'off')
      await ctx.runner.run(powerCommand(m, 'on', io.secrets!));
  }
  io.powered.add(m.name);
  ctx.out.print(`${m.name}: ${before === 'on' ? 'power cycled' : 'powered on'}`);
}

async function finish(
  ctx: Context,
  o: NetbootOptions,
  io: Io,
  rows: ReceiverRow[],
): Promise<{ boxes: BoxRow[] }> {
  const server = io.server!;
  const verified = [...server.boxes.values()].filter((b) =>
    rows.some((r) => r.name === b.machine.name && r.result === 'verified'),
  );
  for (const b of verified) {
    b.answer = 'disk';
    // One BMC failing now does not leave the others in their rescue: its row says why.
    await powerUp(ctx, b.machine, io).catch((err: unknown) => {
      b.failed = `power cycle after verify failed: ${(err as Error).message}`;
    });
  }
  await waitForDisks(ctx, server, verified, o.bootTimeoutSeconds * 1000);
  const boxes = boxRows([...server.boxes.values()], rows, io.powered);
  ctx.out.print(formatBoxTable(boxes));
  const bad = boxes.filter((b) => !(b.verified && b.bootedFromDisk));
  if (bad.length > 0) {
    throw new VerifyError(
      `${bad.length} of ${boxes.length} box(es) not verified and booted from disk: ${bad.map((b) => `${b.name} (${b.problem})`).join('; ')}`,
    );
  }
  return { boxes };
}

async function waitForDisks(
  ctx: Context,
  server: NetbootServer,
  boxes: BoxState[],
  timeoutMs: number,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (boxes.some((b) => !b.sentToDisk) && Date.now() < end && !ctx.signal.aborted) {
    await Promise.race([server.nextChange(), new Promise((r) => setTimeout(r, 1000))]);
  }
  if (ctx.signal.aborted) throw new InterruptedError('interrupted while the boxes boot from their disks');
}
