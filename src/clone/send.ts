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
import { loadSigningKey, signDocument } from '../system/signing.js';
import { type GoldenManifest, imageIdOf, loadManifest } from './golden-image.js';
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
}

export interface ReceiverRow {
  address: string;
  name: string;
  multicast: 'complete' | 'dropped';
  result: 'verified' | 'failed' | 'refused' | 'no report';
  seconds: number | null;
  repairedChunks: number;
  bytesFetched: number;
}

export interface SendOutcome {
  imageId: string;
  session: string;
  rows: ReceiverRow[];
  streamBytes: number;
}

/**
 * `clone send`: the signed header and the image go out through udp-sender (`cat header image |
 * udp-sender`: the data never passes through node); the repair server answers failed receivers
 * until each receiver that joined has reported, or the repair window ends; then a table.
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
  const m = signed.payload;
  const st = await stat(opts.image);
  if (st.size !== m.compressedSize) {
    throw new VerifyError(`${opts.image}: ${st.size} bytes, its manifest says ${m.compressedSize}`);
  }
  const keyFile = opts.keyFile ?? cfg.signingKey;
  if (!keyFile)
    throw new ConfigError([
      { where: 'clone.signingKey', message: 'no signing key to sign the session with' },
    ]);
  const key = await loadSigningKey(keyFile);
  const address = interfaceAddress(settings.interface);
  const session: SessionInfo = {
    session: opts.session ?? cfg.session ?? imageIdOf(m),
    imageId: imageIdOf(m),
    version: m.version,
    size: m.size,
    rootHash: m.rootHash,
    repairUrl: `http://${address}:${cfg.repairPort}`,
    startedAt: ctx.clock.now().toISOString(),
  };
  const udp = senderCommand(settings, undefined);
  ctx.out.print(describeSession(m, session, settings, udp.args, opts.image));
  if (ctx.dryRun) return null;

  const dir = await mkdtemp(path.join(tmpdir(), 'zshield-clone-'));
  const headerFile = path.join(dir, 'header');
  await writeFile(headerFile, encodeHeader({ manifest: signed, session: signDocument(session, key) }));
  const server = await startRepairServer({
    address,
    port: cfg.repairPort,
    image: opts.image,
    imageSize: st.size,
  });
  try {
    const joined = await multicast(ctx, settings, headerFile, opts.image, st.size);
    if (joined.addresses.size === 0) {
      throw new NoPeerError(`no receiver joined within ${settings.startTimeoutSeconds} s: nothing was sent`, {
        hint: 'start zshield clone receive on the boxes (same interface and LAN), then send again',
      });
    }
    const window = (opts.repairWindowSeconds ?? cfg.send.repairWindowSeconds) * 1000;
    await awaitReports(ctx, server, [...joined.addresses.keys()], window);
    const rows = tableRows(joined.addresses, joined.dropped, server);
    ctx.out.print(formatTable(rows));
    // A box that expects another session is shown, not counted: it was never this session's.
    const bad = rows.filter((r) => r.result === 'failed' || r.result === 'no report');
    if (bad.length > 0) {
      throw new VerifyError(
        `${bad.length} of ${rows.length} receiver(s) not verified: ${bad.map((r) => r.name).join(', ')}`,
      );
    }
    return { imageId: session.imageId, session: session.session, rows, streamBytes: joined.bytes };
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
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
  m: GoldenManifest,
  s: SessionInfo,
  settings: SenderSettings,
  udpArgs: readonly string[],
  image: string,
): string {
  return [
    `clone session "${s.session}": ${s.imageId} (${formatBytes(m.size)} raw, ${formatBytes(m.compressedSize)} compressed, ${m.chunks.length} chunks)`,
    `  image:   ${image}`,
    `  send:    cat <signed header> ${image} | udp-sender ${udpArgs.join(' ')}`,
    `  start:   at ${settings.minReceivers} receiver(s), or ${settings.maxWaitSeconds} s after the first joined`,
    `  cap:     ${settings.maxBitrate ?? 'none'}; a receiver is dropped after ${settings.retriesUntilDrop} unanswered retransmission requests`,
    `  repair:  ${s.repairUrl}`,
  ].join('\n');
}

async function multicast(
  ctx: Context,
  settings: SenderSettings,
  headerFile: string,
  image: string,
  total: number,
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
    });
  } catch (err) {
    if (!udpSenderEndedFirst(err)) throw err;
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
  let windowOver = false;
  const timer = setTimeout(() => {
    windowOver = true;
    wake();
  }, windowMs);
  try {
    while (missing().length > 0 && !windowOver && !ctx.signal.aborted) {
      await Promise.race([server.nextReport(), new Promise<void>((resolve) => (wake = resolve))]);
    }
  } finally {
    clearTimeout(timer);
    ctx.signal.removeEventListener('abort', onAbort);
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
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(head), ...body.map(line)].join('\n');
}
