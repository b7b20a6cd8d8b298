import { formatColumns } from '../output.js';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { ConfigError, NoPeerError, NotFoundError, VerifyError } from '../errors.js';
import type { Check, Plan, Step } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { awaitReports, multicast } from './send-stream.js';
import { type SigningKey, loadSigningKey, signDocument } from '../system/signing.js';
import { imageIdOf, loadManifest, verifyGoldenImage } from '../golden/index.js';
import { type SessionInfo, encodeHeader } from './header.js';
import { type RepairServer, startRepairServer } from './repair-server.js';
import { type SenderSettings, senderCommand } from './udpcast.js';

export interface SendOptions {
  image: string;
  session?: string;
  keyFile?: string;
  interface?: string;
  minReceivers?: number;
  maxWaitSeconds?: number;
  maxBitrate?: string;
  retriesUntilDrop?: number;
  repairWindowSeconds?: number;
  /** What a session with more to it (netboot: dnsmasq, power) adds to the plan. */
  extend?: (s: { session: string; portbase: number; interface: string }) => SendExtension;
}

/**
 * Checks, steps before the stream and after the reports, and clean-up that a session adds to the
 * send's plan (clone send --netboot). With an extension, `finish` judges the session instead of
 * "every receiver that joined verified".
 */
export interface SendExtension {
  checks: Check[];
  /** After the session is signed and the repair server listens, before the stream. */
  before: Step[];
  /** How many receivers the stream waits for. */
  minReceivers: number;
  /** Once every report is in (or the window ended): the verdict, and what it adds to the outcome. */
  finish: (rows: ReceiverRow[]) => Promise<Record<string, unknown>>;
  always: Step[];
  /**
   * Aborted when nothing more can come of the session (every box told its server it failed, a
   * refused session reaching no repair server): the stream and the wait for reports end there.
   */
  giveUp?: AbortSignal;
}

export interface ReceiverRow {
  address: string;
  name: string;
  multicast: 'complete' | 'dropped';
  result: 'verified' | 'failed' | 'refused' | 'no report';
  seconds: number | null;
  repairedChunks: number;
  bytesFetched: number;
  /** Why a box refused or failed, as it reported. */
  message?: string;
}

export interface SendOutcome {
  imageId: string;
  session: string;
  rows: ReceiverRow[];
  streamBytes: number;
  [more: string]: unknown;
}

/**
 * `clone send` as a plan: every chunk of the image, the signing key and the interface are checked
 * first (also by a dry run), so a damaged image touches no box; then the session is signed, and the signed header and the image go out through udp-sender
 * (`cat header image | udp-sender`: the data never passes through node); the repair server answers
 * failed receivers until each receiver that joined has reported, or the repair window ends; then a
 * table. Success is at least one receiver and every receiver that joined verified.
 */
export async function runSend(ctx: Context, opts: SendOptions): Promise<SendOutcome | null> {
  const cfg = ctx.config.clone;
  const settings = senderSettings(cfg, opts);
  const signed = await loadManifest(opts.image, cfg.trustedKeys);
  const ext = opts.extend?.({
    session: opts.session ?? cfg.session ?? imageIdOf(signed.payload),
    portbase: settings.portbase,
    interface: settings.interface,
  });
  if (ext) settings.minReceivers = ext.minReceivers;
  const m = signed.payload;
  const st = await stat(opts.image).catch(() => null);
  if (!st) throw new NotFoundError(`${opts.image} does not exist`);
  if (st.size !== m.compressedSize) {
    throw new VerifyError(`${opts.image}: ${st.size} bytes, its manifest says ${m.compressedSize}`);
  }
  const keyFile = opts.keyFile ?? cfg.signingKey;
  if (!keyFile)
    throw new ConfigError([
      { where: 'clone.signingKey', message: 'no signing key to sign the session with' },
    ]);
  const name = opts.session ?? cfg.session ?? imageIdOf(m);
  const window = (opts.repairWindowSeconds ?? cfg.send.repairWindowSeconds) * 1000;
  const udp = senderCommand(settings, undefined);
  // Filled by the checks and steps, in the order they run (the plan shown is the plan run).
  const io: SendIo = {};
  const inZshield = (apply: () => Promise<void>) => ({ edit: { files: [], apply } });
  const plan: Plan = {
    title: `Clone session "${name}": send ${imageIdOf(m)} (${formatBytes(m.size)} raw, ${formatBytes(m.compressedSize)} compressed, ${m.chunks.length} chunks) on ${settings.interface}`,
    notes: describeSession(settings, udp.args, opts.image, cfg.repairPort),
    checks: [
      ...sendChecks(opts.image, cfg.trustedKeys, keyFile, settings.interface, io),
      ...(ext?.checks ?? []),
    ],
    steps: [
      startSessionStep(ctx, { name, signed, image: opts.image, imageSize: st.size }, io),
      ...(ext?.before ?? []),
      {
        title: `stream the signed header and the image (udp-sender), repair, wait up to ${window / 1000} s for every receiver's report`,
        ...inZshield(async () => {
          const header = path.join(io.dir!, 'header');
          const joined = await multicast(ctx, settings, header, opts.image, st.size, ext?.giveUp);
          await awaitReports(ctx, io.server!, [...joined.addresses.keys()], window, ext?.giveUp);
          const rows = tableRows(joined.addresses, joined.dropped, io.server!);
          if (rows.length > 0) ctx.out.print(formatTable(rows));
          const more = ext ? await ext.finish(rows) : refuseUnlessAllVerified(rows, settings);
          io.outcome = { imageId: imageIdOf(m), session: name, rows, streamBytes: joined.bytes, ...more };
        }),
      },
    ],
    always: [
      ...(ext?.always ?? []),
      {
        title: 'stop the repair server, remove the signed header',
        ...inZshield(async () => {
          await io.server?.close();
          if (io.dir) await rm(io.dir, { recursive: true, force: true });
        }),
      },
    ],
  };
  const run = await runPlan(ctx, plan, { confirm: 'none' });
  return run.applied ? io.outcome! : null;
}

/** What `clone send` runs with: the config's clone.send, overridden by the command line. */
function senderSettings(cfg: Context['config']['clone'], opts: SendOptions): SenderSettings {
  return {
    interface: opts.interface ?? cfg.interface,
    portbase: cfg.portbase,
    minReceivers: opts.minReceivers ?? cfg.send.minReceivers,
    maxWaitSeconds: opts.maxWaitSeconds ?? cfg.send.maxWaitSeconds,
    startTimeoutSeconds: cfg.send.startTimeoutSeconds,
    maxBitrate: opts.maxBitrate ?? cfg.send.maxBitrate,
    retriesUntilDrop: opts.retriesUntilDrop ?? cfg.send.retriesUntilDrop,
  };
}

/** What the send's checks and steps find and make, in the order they run. */
interface SendIo {
  key?: SigningKey;
  address?: string;
  dir?: string;
  server?: RepairServer;
  session?: SessionInfo;
  outcome?: SendOutcome;
}

/** The session signed (its repair URL on the interface's address) and the repair server started. */
function startSessionStep(
  ctx: Context,
  o: { name: string; signed: Awaited<ReturnType<typeof loadManifest>>; image: string; imageSize: number },
  io: SendIo,
): Step {
  const port = ctx.config.clone.repairPort;
  const m = o.signed.payload;
  return {
    title: `sign the session and start the repair server (port ${port})`,
    edit: {
      files: [],
      apply: async () => {
        io.session = {
          session: o.name,
          imageId: imageIdOf(m),
          version: m.version,
          size: m.size,
          rootHash: m.rootHash,
          repairUrl: `http://${io.address}:${port}`,
          startedAt: ctx.clock.now().toISOString(),
        };
        io.dir = await mkdtemp(path.join(tmpdir(), 'zshield-clone-'));
        await writeFile(
          path.join(io.dir, 'header'),
          encodeHeader({ manifest: o.signed, session: signDocument(io.session, io.key!) }),
          { mode: 0o600 },
        );
        io.server = await startRepairServer({
          address: io.address!,
          port,
          image: o.image,
          imageSize: o.imageSize,
        });
      },
    },
  };
}

/** Before anything is sent (also in a dry run): the image whole, the signing key, the interface's address. */
function sendChecks(
  image: string,
  trustedKeys: Context['config']['clone']['trustedKeys'],
  keyFile: string,
  iface: string,
  io: SendIo,
): Check[] {
  return [
    {
      title: 'every chunk of the image matches its signed manifest',
      run: async () => {
        const r = await verifyGoldenImage(image, trustedKeys);
        if (r.badChunks.length > 0) {
          throw new VerifyError(
            `${image}: chunk(s) ${r.badChunks.join(', ')} do not match the signed manifest: nothing sent, no box touched`,
            { hint: `zshield golden image verify ${image}` },
          );
        }
      },
    },
    {
      title: `the signing key ${keyFile} loads`,
      run: async () => {
        io.key = await loadSigningKey(keyFile);
      },
    },
    {
      title: `interface ${iface} has an IPv4 address (the repair server listens there)`,
      run: () => {
        io.address = interfaceAddress(iface);
      },
    },
  ];
}

/**
 * At least one receiver, and every one that joined verified: a box that refused the session (its
 * disk too small, another session expected) or never reported failed as much as one whose chunks
 * did not check out.
 */
function refuseUnlessAllVerified(rows: readonly ReceiverRow[], s: SenderSettings): Record<string, never> {
  if (rows.length === 0) {
    throw new NoPeerError(
      `no receiver joined within ${s.startTimeoutSeconds} s (clone.send.startTimeoutSeconds): nothing was sent`,
      { hint: 'start clone receive on the boxes first, on the same LAN, interface and clone.portbase' },
    );
  }
  const bad = rows.filter((r) => r.result !== 'verified');
  if (bad.length > 0) {
    const each = bad.map((r) => `${r.name} (${r.address}) ${r.result}${r.message ? `: ${r.message}` : ''}`);
    throw new VerifyError(`${bad.length} of ${rows.length} receiver(s) not verified: ${each.join('; ')}`);
  }
  return {};
}

/** The interface's IPv4 address: the repair server listens there and nowhere else. */
export function interfaceAddress(name: string): string {
  const addr = (networkInterfaces()[name] ?? []).find((a) => a.family === 'IPv4' && !a.internal);
  if (!addr)
    throw new NotFoundError(`network interface ${name} has no IPv4 address`, {
      hint: 'name the interface with --interface or clone.interface',
    });
  return addr.address;
}

function describeSession(
  settings: SenderSettings,
  udpArgs: readonly string[],
  image: string,
  repairPort: number,
): string[] {
  return [
    `send: cat <signed header> ${image} | udp-sender ${udpArgs.join(' ')}`,
    `start: at ${settings.minReceivers} receiver(s), or ${settings.maxWaitSeconds} s after the first joined; none within ${settings.startTimeoutSeconds} s: nothing is sent`,
    `cap: ${settings.maxBitrate ?? 'none'}; a receiver is dropped after ${settings.retriesUntilDrop} unanswered retransmission requests`,
    `repair: http://<${settings.interface} address>:${repairPort}`,
  ];
}

function tableRows(
  addresses: Map<string, number>,
  dropped: Set<string>,
  server: RepairServer,
): ReceiverRow[] {
  const all = new Set([...addresses.keys(), ...server.reports.keys()]);
  return [...all].sort().map((address) => {
    const r = server.reports.get(address);
    return {
      address,
      name: r?.name ?? '?',
      multicast: dropped.has(address) ? 'dropped' : 'complete',
      result: r?.result ?? 'no report',
      seconds: r?.seconds ?? null,
      repairedChunks: r?.repairedChunks.length ?? 0,
      bytesFetched: server.served.get(address) ?? 0,
      ...(r?.message ? { message: r.message } : {}),
    };
  });
}

export function formatTable(rows: readonly ReceiverRow[]): string {
  const head = ['receiver', 'name', 'multicast', 'result', 'time', 'chunks repaired', 'fetched'];
  const body = rows.map((r) => [
    r.address,
    r.name,
    r.multicast,
    r.result,
    r.seconds === null ? '-' : `${r.seconds} s`,
    String(r.repairedChunks),
    formatBytes(r.bytesFetched),
  ]);
  return formatColumns(head, body);
}
