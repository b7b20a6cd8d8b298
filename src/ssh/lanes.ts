import type { Context } from '../context.js';
import type { RemoteSession } from './session.js';

/**
 * SFTP channels of one connection, lent one per file in flight and kept for the next. OpenSSH's
 * sftp-server answers a channel's requests in order, so on one channel a file's stat, fsync and
 * rename wait behind every other file's queued writes; on its own channel they do not, and the
 * server writes the files in parallel. A server that refuses another channel (MaxSessions) gets
 * the files on the connection's own channel, as before.
 */
export class Lanes {
  private free: RemoteSession[] = [];
  private refused = false;

  constructor(private readonly ctx: Context) {}

  async use<T>(conn: RemoteSession, fn: (s: RemoteSession) => Promise<T>): Promise<T> {
    const lane = await this.take(conn);
    try {
      return await fn(lane);
    } finally {
      if (lane !== conn && !lane.lost) this.free.push(lane);
    }
  }

  private async take(conn: RemoteSession): Promise<RemoteSession> {
    while (this.free.length) {
      const lane = this.free.pop()!;
      if (!lane.lost && lane.connection === conn) return lane;
      lane.close();
    }
    if (this.refused) return conn;
    try {
      return await conn.lane();
    } catch (err) {
      if (conn.lost) throw err;
      this.refused = true;
      this.ctx.log.debug(
        `remote: ${conn.where} opens no further SFTP channel (${(err as Error).message}): one channel`,
      );
      return conn;
    }
  }

  close(): void {
    for (const lane of this.free) lane.close();
    this.free = [];
  }
}
