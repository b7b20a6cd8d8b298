import { hostname } from 'node:os';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { ConfigError, InternalError, InterruptedError, NoPeerError, VerifyError } from '../errors.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import type { GoldenManifest } from '../golden/index.js';
import { type SessionInfo, SessionRefusedError, readHeader, verifyHeader } from './header.js';
import { fetchChunks, postReport } from './repair-client.js';
import type { ReceiverReport } from './repair-server.js';
import { type CloneTarget, type TargetRequest, resolveCloneTarget, targetFlush } from '../golden/index.js';
import { TargetWriter } from '../golden/index.js';
import { receiverCommand } from './udpcast.js';

export interface ReceiveOptions {
  target: TargetRequest;
  /** Accept only this session (else clone.session; null: any session of a trusted signer). */
  session?: string;
  /** The name this box reports under (default: its host name). */
  name?: string;
  interface?: string;
  /** udpcast's port base (else clone.portbase; the netboot server names it). */
  portbase?: number;
  /** --yes: the target may be erased (without it, runPlan refuses after the checks). */
  yes?: boolean;
}

export interface ReceiveOutcome {
  report: ReceiverReport;
  imageId: string;
  session: string;
  target: string;
  streamedBytes: number;
  reported: boolean;
}

/**
 * `clone receive`: join a udpcast session, check its signed header before opening the target,
 * write the stream (head held back), verify every chunk by reading it back, fetch the bad or
 * missing ones from the sender, and write the head only when all of it verified.
 */
export async function runReceive(ctx: Context, opts: ReceiveOptions): Promise<ReceiveOutcome | null> {
  const cfg = ctx.config.clone;
  if (cfg.trustedKeys.length === 0) {
    throw new ConfigError([
      { where: 'clone.trustedKeys', message: 'no vendor public key: no stream can be accepted' },
    ]);
  }
  const target = await resolveCloneTarget(ctx, opts.target);
  const iface = opts.interface ?? cfg.interface;
  // The session is joined by the first step: what the stream holds is known only then, so the
  // later steps read it from `st`. The plan shown (also on a dry run) is the plan run.
  const st: ReceiveState = {};
  const plan = receivePlan(ctx, opts, target, iface, st);
  const run = await runPlan(ctx, plan, { confirm: opts.yes ? 'yes' : 'ask', what: 'The receive' });
  return run.applied ? st.outcome! : null;
}

/** What the receive's steps pass on to each other (the session is joined by the first one). */
type ReceiveState = Partial<Awaited<ReturnType<typeof joinSession>>> & {
  writer?: TargetWriter;
  streamed?: Streamed;
  outcome?: ReceiveOutcome;
  started?: number;
};

/**
 * The receive as a plan: join and check, wipe the head, write the stream, verify and repair, the
 * head last: the steps of a receive, read in the order they run.
 */
function receivePlan(
  ctx: Context,
  opts: ReceiveOptions,
  target: CloneTarget,
  iface: string,
  st: ReceiveState,
): Plan {
  const cfg = ctx.config.clone;
  const write = (apply: () => Promise<void>) => ({ edit: { files: [target.path], apply } });
  return {
    title: `Receive a clone stream on ${iface} (port base ${opts.portbase ?? cfg.portbase}) onto ${target.describe}`,
    notes: ['the target does not look good (no partition table, no boot code) until every chunk is verified'],
    steps: [
      {
        title:
          'join the session and check its signed header against clone.trustedKeys (nothing is written before)',
        edit: {
          files: [],
          apply: async () => {
            ctx.out.print(
              `waiting for a clone session on ${iface} (port base ${opts.portbase ?? cfg.portbase}); target ${target.describe}`,
            );
            Object.assign(st, await joinSession(ctx, opts, iface, target));
            st.started = Date.now();
            const { manifest: m, session } = st.accepted!;
            ctx.out.print(
              `session "${session.session}": ${session.imageId} (${formatBytes(m.size)}, ${m.chunks.length} chunks), signed by a trusted key`,
            );
          },
        },
      },
      {
        title: 'wipe the first MiB of the target (partition table, boot code)',
        ...write(() => openAndWipe(ctx, target, st)),
      },
      {
        title: 'write the stream after it, each chunk as it arrives',
        ...write(async () => {
          const m = st.accepted!.manifest;
          st.streamed = await streamInto(st.writer!, st.accepted!.rest, st.it!, m, ctx);
          if (st.streamed.fatal) await endAtOnce(ctx, st, opts, st.streamed.error ?? 'the write failed');
          const udpError = await st.udpDone;
          if (ctx.signal.aborted)
            throw new InterruptedError('interrupted: the target was left without its head');
          ctx.log.info(
            `stream ended after ${formatBytes(st.streamed.bytes)} of ${formatBytes(m.size)}${udpError ? ` (${udpError.message})` : ''}${st.streamed.error ? ` (${st.streamed.error})` : ''}`,
          );
        }),
      },
      {
        title:
          'read every chunk back, fetch the bad or missing ones from the sender, then write the first MiB',
        ...write(() => verifyRepairReport(ctx, opts, target, st)),
      },
    ],
    always: [{ title: 'close the target', ...write(async () => st.writer?.close()) }],
  };
}

/** The target opened (flushed through blockdev when it is a block device) and its head wiped. */
async function openAndWipe(ctx: Context, target: CloneTarget, st: ReceiveState): Promise<void> {
  const flush = targetFlush(ctx, target);
  st.writer = await TargetWriter.open(
    ctx.writes,
    target.path,
    st.accepted!.manifest.size,
    flush ? { flush } : {},
  );
  await st.writer.wipeHead();
}

/**
 * Every chunk read back, the bad or missing ones fetched from the sender, the report sent to it;
 * anything still bad leaves the target without its head.
 */
async function verifyRepairReport(
  ctx: Context,
  opts: ReceiveOptions,
  target: CloneTarget,
  st: ReceiveState,
): Promise<void> {
  const { manifest: m, session } = st.accepted!;
  const report = await verifyAndRepair(ctx, st.writer!, m, session, opts.name ?? hostname(), st.started!);
  const reported = await postReport(session.repairUrl, report);
  if (!reported) ctx.log.warn(`could not send the report to ${session.repairUrl}`);
  if (report.result !== 'verified') {
    throw new VerifyError(
      `${report.badChunks.length} chunk(s) still bad after repair (${report.badChunks.join(', ')}): the target was left without its head`,
    );
  }
  st.outcome = {
    report,
    imageId: session.imageId,
    session: session.session,
    target: target.describe,
    streamedBytes: st.streamed!.bytes,
    reported,
  };
}

/**
 * Starts udp-receiver and reads the stream's header. On any refusal udp-receiver is killed before
 * a byte reaches the target (the target is not even open yet).
 */
async function joinSession(ctx: Context, opts: ReceiveOptions, iface: string, target: CloneTarget) {
  const cfg = ctx.config.clone;
  if (!ctx.runner.start) throw new InternalError('this runner cannot stream a command');
  const udp = await ctx.runner.start(
    receiverCommand({
      interface: iface,
      portbase: opts.portbase ?? cfg.portbase,
      startTimeoutSeconds: cfg.receive.startTimeoutSeconds,
      receiveTimeoutSeconds: cfg.receive.receiveTimeoutSeconds,
    }),
  );
  const udpDone = udp.done.then(
    () => null,
    (e: unknown) => e as Error,
  );
  const it = udp.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const stop = async () => {
    udp.kill('SIGKILL');
    // Close our end of the pipe (the iterator destroys the stream): execa settles only when the
    // child's stdout has ended, and unread data would keep it from ever ending.
    await it.return?.();
    await udpDone;
  };
  try {
    const accepted = await acceptHeader(it, ctx, opts.session ?? cfg.session, target);
    return { accepted, it, udpDone, stop };
  } catch (err) {
    await stop();
    if (err instanceof SessionRefusedError) {
      await postReport(err.session.repairUrl, refusedReport(opts.name ?? hostname(), err.message));
    }
    throw err;
  }
}

/**
 * A write or a decompression that failed while the stream was still coming: nothing later can
 * succeed (the same stream, the same full disk), so udp-receiver is killed at once (else it waits,
 * unread, for ever), the sender is told, and the receive ends with the head still unwritten.
 */
async function endAtOnce(ctx: Context, st: ReceiveState, opts: ReceiveOptions, why: string): Promise<never> {
  await st.stop!();
  const { session, manifest: m } = st.accepted!;
  const message = `${why}: the receive stopped; the target was left without its first MiB`;
  ctx.out.print(`FAILED: ${message}`);
  const reported = await postReport(session.repairUrl, {
    name: opts.name ?? hostname(),
    result: 'failed',
    chunks: m.chunks.length,
    repairedChunks: [],
    badChunks: [],
    bytesFetched: 0,
    seconds: Math.round((Date.now() - st.started!) / 100) / 10,
    message,
  });
  if (!reported) ctx.log.warn(`could not send the failure to ${session.repairUrl}`);
  throw new VerifyError(message);
}

function refusedReport(name: string, message: string): ReceiverReport {
  return {
    name,
    result: 'refused',
    chunks: 0,
    repairedChunks: [],
    badChunks: [],
    bytesFetched: 0,
    seconds: 0,
    message,
  };
}

async function acceptHeader(
  it: AsyncIterator<Buffer>,
  ctx: Context,
  expectSession: string | null,
  target: CloneTarget,
): Promise<{ manifest: GoldenManifest; session: SessionInfo; rest: Buffer }> {
  const got = await readHeader(it);
  if (!got) {
    throw new NoPeerError(
      'the stream ended before a clone header arrived (no sender, or it gave up): nothing written',
      { hint: 'start zshield clone send IMAGE on the sender (same LAN), then receive again' },
    );
  }
  const { manifest, session } = verifyHeader(got.header, ctx.config.clone.trustedKeys, {
    expectSession,
    maxAgeHours: ctx.config.clone.maxSessionAgeHours,
    now: ctx.clock.now(),
  });
  if (target.sizeBytes !== null && target.sizeBytes < manifest.size) {
    throw new SessionRefusedError(
      session,
      `${target.describe} is smaller than the image (${formatBytes(manifest.size)}): nothing written`,
    );
  }
  return { manifest, session, rest: got.rest };
}

interface Streamed {
  bytes: number;
  error: string | null;
  /** The write failed, or the data did not decompress while the stream was still coming. */
  fatal: boolean;
}

/**
 * Decompresses the rest of the stream onto the target. A cut stream (udp-receiver ended mid-frame:
 * this box was dropped, or the sender died) is not an error here: the check finds what is missing
 * and the repair fetches it. A failing write, or data that does not decompress while the stream is
 * still coming, is fatal.
 */
async function streamInto(
  writer: TargetWriter,
  first: Buffer,
  it: AsyncIterator<Buffer>,
  m: GoldenManifest,
  ctx: Context,
): Promise<Streamed> {
  let ended = false;
  // On a failure the source must let go at once: a pending read of udp-receiver's stdout would
  // keep the pipeline from settling for as long as udp-receiver sends nothing (for ever).
  let cut = false;
  let stopInput: () => void = () => {};
  const stopped = new Promise<IteratorResult<Buffer>>((resolve) => {
    stopInput = () => {
      cut = true;
      resolve({ done: true, value: undefined });
    };
  });
  async function* input(): AsyncGenerator<Buffer> {
    if (first.length > 0) yield first;
    for (;;) {
      const next = it.next();
      next.catch(() => {});
      const n = await Promise.race([next, stopped]);
      if (n.done) {
        ended = !cut;
        return;
      }
      yield n.value;
    }
  }
  const unzip = zlib.createZstdDecompress();
  unzip.once('error', () => stopInput());
  let offset = 0;
  let shown = 0;
  let writeError: string | null = null;
  try {
    await pipeline(Readable.from(input()), unzip, async (source: AsyncIterable<Buffer>) => {
      for await (const piece of source) {
        const p = piece.subarray(0, Math.max(0, m.size - offset));
        if (p.length === 0) continue;
        try {
          await writer.write(offset, p);
        } catch (err) {
          writeError = `writing ${writer.path} at byte ${offset} failed (${(err as Error).message})`;
          stopInput();
          throw err;
        }
        offset += p.length;
        const tenth = Math.floor((offset / m.size) * 10);
        if (tenth > shown) {
          shown = tenth;
          ctx.out.print(`received ${tenth * 10}% (${formatBytes(offset)})`);
        }
      }
    });
    return { bytes: offset, error: null, fatal: false };
  } catch (err) {
    if (writeError) return { bytes: offset, error: writeError, fatal: true };
    const why = `the stream did not decompress after ${formatBytes(offset)} (${(err as Error).message})`;
    return { bytes: offset, error: ended ? (err as Error).message : why, fatal: !ended };
  }
}

async function verifyAndRepair(
  ctx: Context,
  writer: TargetWriter,
  m: GoldenManifest,
  session: SessionInfo,
  name: string,
  started: number,
): Promise<ReceiverReport> {
  const firstBad = await writer.verify(m);
  let bytesFetched = 0;
  let bad = firstBad;
  let message: string | undefined;
  if (firstBad.length > 0) {
    ctx.out.print(`${firstBad.length} chunk(s) bad or missing; fetching them from ${session.repairUrl}`);
    try {
      bytesFetched = await fetchChunks(session.repairUrl, m, firstBad, writer, ctx.signal);
      bad = await writer.verify(m, firstBad);
    } catch (err) {
      message = (err as Error).message;
      ctx.log.error(`repair failed: ${message}`);
    }
  }
  if (bad.length === 0) {
    await writer.commitHead();
    bad = await writer.verify(m, [0]);
  }
  const report: ReceiverReport = {
    name,
    result: bad.length === 0 ? 'verified' : 'failed',
    chunks: m.chunks.length,
    repairedChunks: firstBad,
    badChunks: bad,
    bytesFetched,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    ...(message ? { message } : {}),
  };
  ctx.out.print(
    report.result === 'verified'
      ? `verified: all ${m.chunks.length} chunks match the signed manifest${firstBad.length ? ` (${firstBad.length} repaired, ${formatBytes(bytesFetched)} fetched)` : ''}`
      : `FAILED: chunk(s) ${bad.join(', ')} do not match`,
  );
  return report;
}
