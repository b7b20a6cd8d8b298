import { formatColumns } from '../output.js';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import {
  CommandError,
  ConfigError,
  InterruptedError,
  NoPeerError,
  NotFoundError,
  VerifyError,
} from '../errors.js';
import type { Check, Plan, Step } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { type SigningKey, loadSigningKey, signDocument } from '../system/signing.js';
import { imageIdOf, loadManifest, verifyGoldenImage } from '../golden/index.js';
import { type SessionInfo, encodeHeader } from './header.js';
import { type RepairServer, startRepairServer } from './repair-server.js';
import { type SenderSettings, parseSenderLine, senderCommand } from './udpcast.js';

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
  const settings: SenderSettings = {
    interface: opts.interface ?? cfg.interface,
    portbase: cfg.portbase,
    minReceivers: opts.minReceivers ?? cfg.send.minReceivers,
    maxWaitSeconds: opts.maxWaitSeconds ?? cfg.send.maxWaitSeconds,
    startTimeoutSeconds: cfg.send.startTimeoutSeconds,
    maxBitrate: opts.maxBitrate ?? cfg.send.maxBitrate,
    retriesUntilDrop: opts.retriesUntilDrop ?? cfg.send.retriesUntilDrop,
  };
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
  const io: {
    key?: SigningKey;
    address?: string;
    dir?: string;
    server?: RepairServer;
    session?: SessionInfo;
    outcome?: SendOutcome;
  } = {};
  const inZshield = (apply: () => Promise<void>) => ({ edit: { files: [], apply } });
  const plan: Plan = {
    title: `Clone session "${name}": send ${imageIdOf(m)} (${formatBytes(m.size)} raw, ${formatBytes(m.compressedSize)} compressed, ${m.chunks.length} chunks) on ${settings.interface}`,
    notes: describeSession(settings, udp.args, opts.image, cfg.repairPort),
    checks: [
      {
        title: 'every chunk of the image matches its signed manifest',
        run: async () => {
          const r = await verifyGoldenImage(opts.image, cfg.trustedKeys);
          if (r.badChunks.length > 0) {
            throw new VerifyError(
              `${opts.image}: chunk(s) ${r.badChunks.join(', ')} do not match the signed manifest: nothing sent, no box touched`,
              { hint: `zshield golden image verify ${opts.image}` },
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
        title: `interface ${settings.interface} has an IPv4 address (the repair server listens there)`,
        run: () => {
          io.address = interfaceAddress(settings.interface);
        },
      },
      ...(ext?.checks ?? []),
    ],
    steps: [
      {
        title: `sign the session and start the repair server (port ${cfg.repairPort})`,
        ...inZshield(async () => {
          io.session = {
            session: name,
            imageId: imageIdOf(m),
            version: m.version,
            size: m.size,
            rootHash: m.rootHash,
            repairUrl: `http://${io.address}:${cfg.repairPort}`,
            startedAt: ctx.clock.now().toISOString(),
          };
          io.dir = await mkdtemp(path.join(tmpdir(), 'zshield-clone-'));
          await writeFile(
            path.join(io.dir, 'header'),
            encodeHeader({ manifest: signed, session: signDocument(io.session, io.key!) }),
            { mode: 0o600 },
          );
          io.server = await startRepairServer({
            address: io.address!,
            port: cfg.repairPort,
            image: opts.image,
            imageSize: st.size,
          });
        }),
      },
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

async function multicast(
  ctx: Context,
  settings: SenderSettings,
  headerFile: string,
  image: string,
  total: number,
  giveUp: AbortSignal | undefined,
): Promise<{ addresses: Map<string, number>; dropped: Set<string>; bytes: number }> {
  const addresses = new Map<string, number>();
  const dropped = new Set<string>();
  let bytes = 0;
  let shown = 0;
  const onLine = (line: string) => {
    const e = parseSenderLine(line);
    if (!e) return;
    if (e.kind === 'joined') {
      addresses.set(e.address, e.slot);
      ctx.out.print(`receiver ${e.address} joined (#${e.slot})`);
    } else if (e.kind === 'dropped') {
      const addr = [...addresses].find(([, slot]) => slot === e.slot)?.[0] ?? `#${e.slot}`;
      dropped.add(addr);
      ctx.out.print(`receiver ${addr} dropped (too slow or gone): it will be repaired by unicast`);
    } else if (e.kind === 'started') {
      ctx.out.print(`sending to ${addresses.size} receiver(s)`);
    } else if (e.kind === 'progress') {
      bytes = e.bytes;
      const tenth = Math.min(10, Math.floor((e.bytes / total) * 10));
      if (tenth > shown) {
        shown = tenth;
        ctx.out.print(`sent ${tenth * 10}% (${formatBytes(e.bytes)}, ${e.retransmits} retransmissions)`);
      }
    }
  };
  try {
    await ctx.runner.pipeline({
      stages: [{ file: 'cat', args: [headerFile, image], mutates: false }, senderCommand(settings, onLine)],
      // The boxes that join write the image: never in a dry run (the runner refuses it).
      mutates: true,
      ...(giveUp ? { signal: giveUp } : {}),
    });
  } catch (err) {
    if (giveUp?.aborted && !ctx.signal.aborted && err instanceof InterruptedError) {
      ctx.out.print('every box failed before the end of the stream: udp-sender stopped');
    } else if (!udpSenderEndedFirst(err)) throw err;
    else
      ctx.log.info('udp-sender ended the session before the end of the image (every receiver was dropped)');
  }
  return { addresses, dropped, bytes };
}

/**
 * udp-sender ends the session by itself when every receiver has been dropped, and cat then dies
 * writing to it (SIGPIPE, or a write error). The pipeline reports the last stage that failed, so
 * an error of cat means udp-sender itself succeeded: not the sender's failure, the receivers'
 * checks and reports decide.
 */
function udpSenderEndedFirst(err: unknown): boolean {
  return (
    err instanceof CommandError &&
    path.basename(err.argv[0] ?? '') === 'cat' &&
    (err.signal === 'SIGPIPE' || /write error/.test(err.stderr))
  );
}

/** Until every receiver that joined has reported, the window ends, or the operator stops it. */
async function awaitReports(
  ctx: Context,
  server: RepairServer,
  expected: string[],
  windowMs: number,
  giveUp: AbortSignal | undefined,
): Promise<void> {
  const missing = () => expected.filter((a) => !server.reports.has(a));
  if (missing().length > 0) {
    ctx.out.print(
      `stream sent; waiting up to ${Math.round(windowMs / 1000)} s for ${missing().length} receiver report(s)`,
    );
  }
  // One timer and one abort listener for the whole wait; each report wakes the loop to recount.
  let wake: () => void = () => {};
  const onAbort = () => wake();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  giveUp?.addEventListener('abort', onAbort, { once: true });
  let windowOver = false;
  const timer = setTimeout(() => {
    windowOver = true;
    wake();
  }, windowMs);
  try {
    while (missing().length > 0 && !windowOver && !ctx.signal.aborted && !giveUp?.aborted) {
      await Promise.race([server.nextReport(), new Promise<void>((resolve) => (wake = resolve))]);
    }
  } finally {
    clearTimeout(timer);
    ctx.signal.removeEventListener('abort', onAbort);
    giveUp?.removeEventListener('abort', onAbort);
  }
  if (ctx.signal.aborted) throw new InterruptedError('interrupted while waiting for receiver reports');
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
