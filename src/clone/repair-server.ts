import { createReadStream } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';

/**
 * The sender's repair server: plain HTTP/1.1 (node:http) on the sender's own address. A receiver
 * whose check found bad or missing chunks fetches exactly those chunks' zstd frames with range
 * requests of the image file (RFC 9110 byte ranges: the frames' offsets are in the signed
 * manifest, and each fetched chunk is checked against its hash, so the channel needs no trust).
 * Receivers also post their final report here, which the sender's table is made of.
 */

export interface ReceiverReport {
  /** The box's name (its host name unless given). */
  name: string;
  /** refused: the box expects another session (the header was signed by a trusted key, so the sender is told). */
  result: 'verified' | 'failed' | 'refused';
  chunks: number;
  /** Chunks fetched by unicast (bad or missing after the stream). */
  repairedChunks: number[];
  /** Chunks still bad at the end (a failed result). */
  badChunks: number[];
  bytesFetched: number;
  seconds: number;
  message?: string;
}

export interface RepairServer {
  url: string;
  /** Report per receiver address. */
  reports: Map<string, ReceiverReport>;
  /** Image bytes served per receiver address. */
  served: Map<string, number>;
  /** Resolves at the next report. */
  nextReport(): Promise<void>;
  close(): Promise<void>;
}

export async function startRepairServer(opts: {
  address: string;
  port: number;
  image: string;
  imageSize: number;
}): Promise<RepairServer> {
  const reports = new Map<string, ReceiverReport>();
  const served = new Map<string, number>();
  let waiters: (() => void)[] = [];
  const server = createServer((req, res) => {
    const peer = (req.socket.remoteAddress ?? '?').replace(/^::ffff:/, '');
    if (req.method === 'GET' && req.url === '/image') {
      serveImage(req, res, opts, (n) => served.set(peer, (served.get(peer) ?? 0) + n));
    } else if (req.method === 'POST' && req.url === '/report') {
      readReport(req, res, (r) => {
        reports.set(peer, r);
        for (const w of waiters) w();
        waiters = [];
      });
    } else {
      res.writeHead(404).end();
    }
  });
  await listen(server, opts.port, opts.address);
  return {
    url: `http://${opts.address}:${opts.port}`,
    reports,
    served,
    nextReport: () => new Promise((resolve) => waiters.push(resolve)),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function listen(server: Server, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** One byte range per request (what the repair client asks for); anything else is answered 416. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  const m = /^bytes=(\d+)-(\d+)$/.exec(header ?? '');
  if (!m) return null;
  const start = Number(m[1]);
  const end = Number(m[2]);
  return start <= end && end < size ? { start, end } : null;
}

function serveImage(
  req: IncomingMessage,
  res: ServerResponse,
  opts: { image: string; imageSize: number },
  count: (n: number) => void,
): void {
  const range = parseRange(req.headers.range, opts.imageSize);
  if (!range) {
    res.writeHead(416, { 'Content-Range': `bytes */${opts.imageSize}` }).end();
    return;
  }
  const length = range.end - range.start + 1;
  res.writeHead(206, {
    'Content-Type': 'application/zstd',
    'Content-Length': length,
    'Content-Range': `bytes ${range.start}-${range.end}/${opts.imageSize}`,
    'Accept-Ranges': 'bytes',
  });
  const stream = createReadStream(opts.image, { start: range.start, end: range.end });
  stream.on('data', (b) => count(b.length));
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

function readReport(req: IncomingMessage, res: ServerResponse, store: (r: ReceiverReport) => void): void {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d: string) => {
    body += d;
    if (body.length > 1024 * 1024) req.destroy();
  });
  req.on('end', () => {
    try {
      const r = JSON.parse(body) as ReceiverReport;
      if (typeof r.name !== 'string' || !['verified', 'failed', 'refused'].includes(r.result))
        throw new Error();
      store(r);
      res.writeHead(204).end();
    } catch {
      res.writeHead(400).end();
    }
  });
}
