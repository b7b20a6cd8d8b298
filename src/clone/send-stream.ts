import path from 'node:path';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { CommandError, InterruptedError } from '../errors.js';
import type { RepairServer } from './repair-server.js';
import { type SenderSettings, parseSenderLine, senderCommand } from './udpcast.js';

/** `clone send`'s stream (udp-sender fed by cat) and its wait for every receiver's report (send.ts). */

export async function multicast(
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
export async function awaitReports(
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
