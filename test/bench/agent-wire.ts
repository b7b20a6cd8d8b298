// The bench agent's wire protocol, host side (the guest side: test/bench/guest/agent). One boot
// runs many guest commands over one unix socket:
//   host -> guest  "<id> RUN <scriptlen> <stdinlen>\n" <script> <stdin>
//   guest -> host  "<id> OUT <n>\n" <n bytes> "<id> ERR <n>\n" <n bytes> "<id> RC <code>\n"

import type net from 'node:net';
import type { RawResult } from './guest-job.js';

interface Pending {
  resolve: (r: RawResult) => void;
  reject: (e: Error) => void;
  out: Buffer[];
  err: Buffer[];
}

interface BodyState {
  id: string;
  stream: 'OUT' | 'ERR';
  remaining: number;
}

/** The requests in flight and the parsing of the replies, byte by byte as they come. */
export class AgentWire {
  private readonly pending = new Map<string, Pending>();
  private nextId = 1;
  private headerBuf: Buffer = Buffer.alloc(0);
  private body: BodyState | undefined;

  /** `failure` makes an error that says where (the appliance's console tail). */
  constructor(private readonly failure: (message: string) => Error) {}

  /** A new request id (`r1`, `r2`, ...): also the name of the job's folder in the guest. */
  newId(): string {
    return `r${this.nextId++}`;
  }

  /** Sends a request; its reply settles `pending`. */
  send(
    sock: net.Socket,
    id: string,
    script: string,
    stdin: Buffer,
    pending: Omit<Pending, 'out' | 'err'>,
  ): void {
    this.pending.set(id, { ...pending, out: [], err: [] });
    const body = Buffer.from(script, 'utf8');
    sock.write(`${id} RUN ${body.length} ${stdin.length}\n`);
    sock.write(body);
    if (stdin.length > 0) sock.write(stdin);
  }

  /** Forgets a request (its timeout fired); false when it had already ended. */
  forget(id: string): boolean {
    return this.pending.delete(id);
  }

  /** Every request in flight fails with `err` (qemu stopped, the protocol broke). */
  failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  onData(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.body) {
        const take = Math.min(this.body.remaining, chunk.length - off);
        const part = chunk.subarray(off, off + take);
        off += take;
        this.body.remaining -= take;
        const p = this.pending.get(this.body.id);
        if (p) (this.body.stream === 'OUT' ? p.out : p.err).push(Buffer.from(part));
        if (this.body.remaining === 0) this.body = undefined;
        continue;
      }
      const nl = chunk.indexOf(10, off);
      if (nl < 0) {
        this.headerBuf = Buffer.concat([this.headerBuf, chunk.subarray(off)]);
        if (this.headerBuf.length > 4096) {
          this.headerBuf = Buffer.alloc(0);
          this.protocolError('reply header too long');
        }
        return;
      }
      const line = Buffer.concat([this.headerBuf, chunk.subarray(off, nl)]).toString('latin1');
      this.headerBuf = Buffer.alloc(0);
      off = nl + 1;
      this.onHeader(line);
    }
  }

  private onHeader(line: string): void {
    const m = /^(\S+) (OUT|ERR|RC) (\d+)$/.exec(line);
    if (!m) {
      this.protocolError(`bad reply header ${JSON.stringify(line)}`);
      return;
    }
    const [, id, kind, num] = m as unknown as [string, string, 'OUT' | 'ERR' | 'RC', string];
    const n = Number(num);
    if (kind === 'RC') {
      const p = this.pending.get(id);
      if (p) {
        this.pending.delete(id);
        p.resolve({ code: n, stdout: Buffer.concat(p.out), stderr: Buffer.concat(p.err) });
      }
      return;
    }
    if (n > 0) this.body = { id, stream: kind, remaining: n };
  }

  private protocolError(msg: string): void {
    this.failAll(this.failure(`agent protocol error: ${msg}`));
  }
}
