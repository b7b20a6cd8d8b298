import { describe, expect, it } from 'vitest';
import type { Context } from '../../src/context.js';
import { Lanes } from '../../src/ssh/lanes.js';
import type { RemoteSession } from '../../src/ssh/session.js';

/**
 * The history store's SFTP lanes: each file in flight gets its own channel of the connection (so
 * its stat, fsync and rename do not queue behind another file's writes), channels are kept for the
 * next file, a lost one is not lent again, and a server that opens no further channel gets the
 * files on the connection's own.
 */

interface FakeSession {
  name: string;
  lost: boolean;
  closed: boolean;
  connection: FakeSession;
  lane(): Promise<FakeSession>;
  close(): void;
  where: string;
}

function fakeConnection(opts: { refuse?: boolean } = {}) {
  const opened: FakeSession[] = [];
  const conn = {
    name: 'conn',
    lost: false,
    closed: false,
    where: 'u@h',
    close() {
      this.closed = true;
    },
    async lane(): Promise<FakeSession> {
      if (opts.refuse) throw new Error('open failed (administratively prohibited)');
      const lane: FakeSession = {
        name: `lane${opened.length}`,
        lost: false,
        closed: false,
        connection: conn as FakeSession,
        where: 'u@h',
        lane: () => conn.lane(),
        close() {
          this.closed = true;
        },
      };
      opened.push(lane);
      return lane;
    },
  } as FakeSession;
  conn.connection = conn;
  return { conn, opened, s: conn as unknown as RemoteSession };
}

const ctx = { log: { debug: () => {} } } as unknown as Context;
const tick = () => new Promise((r) => setTimeout(r, 1));

describe('Lanes', () => {
  it('gives each use in flight its own channel and lends them again afterwards', async () => {
    const { s, opened } = fakeConnection();
    const lanes = new Lanes(ctx);
    const seen: string[] = [];
    const use = () =>
      lanes.use(s, async (l) => {
        seen.push((l as unknown as FakeSession).name);
        await tick();
      });
    await Promise.all([use(), use(), use()]);
    expect(new Set(seen).size).toBe(3);
    expect(opened).toHaveLength(3);
    await Promise.all([use(), use()]);
    expect(opened).toHaveLength(3);
    expect(seen.slice(3).every((n) => n !== 'conn')).toBe(true);
    lanes.close();
    expect(opened.every((l) => l.closed)).toBe(true);
  });

  it('does not lend a lane that was lost, nor one of an earlier connection', async () => {
    const a = fakeConnection();
    const lanes = new Lanes(ctx);
    await lanes.use(a.s, async (l) => {
      (l as unknown as FakeSession).lost = true;
    });
    await lanes.use(a.s, async () => {});
    expect(a.opened).toHaveLength(2);
    const b = fakeConnection();
    let got: FakeSession | null = null;
    await lanes.use(b.s, async (l) => {
      got = l as unknown as FakeSession;
    });
    expect(got!.connection).toBe(b.conn);
    expect(a.opened[1]!.closed).toBe(true);
  });

  it('a server that opens no further channel: the connection’s own channel, asked once', async () => {
    const { s, conn } = fakeConnection({ refuse: true });
    let asked = 0;
    const lane = conn.lane.bind(conn);
    conn.lane = () => {
      asked++;
      return lane();
    };
    const lanes = new Lanes(ctx);
    const used: unknown[] = [];
    await Promise.all([lanes.use(s, async (l) => used.push(l)), tick()]);
    await lanes.use(s, async (l) => used.push(l));
    expect(used).toEqual([s, s]);
    expect(asked).toBe(1);
  });

  it('a lost connection is an error, not a fallback', async () => {
    const { s, conn } = fakeConnection({ refuse: true });
    conn.lost = true;
    await expect(new Lanes(ctx).use(s, async () => 1)).rejects.toThrow(/prohibited/);
  });
});
