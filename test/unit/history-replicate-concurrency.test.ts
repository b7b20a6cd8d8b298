import { describe, expect, it } from 'vitest';
import type { TargetConfig } from '../../src/config/history.js';
import { putCatalogFiles, TargetRuns } from '../../src/history/replicate.js';
import type { TargetReport } from '../../src/history/replicate-report.js';
import { planReplication } from '../../src/history/replication-plan.js';
import { inKindOrder } from '../../src/history/kind-order.js';
import type { RepoFile, Store } from '../../src/history/repo-store.js';

/**
 * Replication with several files in flight (inKindOrder): bytes of a later kind may go up while
 * the kind before is in flight, but no file takes its name (`ready()`) before every file of the
 * kinds before it is done; a failure stops new files and leaves the later kinds unnamed.
 */

const hex = (c: string) => c.repeat(64);
const files: RepoFile[] = [
  { name: 'config', size: 1 },
  { name: `keys/${hex('a')}`, size: 1 },
  ...['1', '2', '3', '4', '5', '6'].map((c) => ({ name: `data/${c}${c}/${hex(c)}`, size: 10 })),
  { name: `index/${hex('b')}`, size: 1 },
  { name: `index/${hex('c')}`, size: 1 },
  { name: `snapshots/${hex('d')}`, size: 1 },
];
const kindOfName = (n: string) => (n === 'config' ? 'config' : n.split('/')[0]!);
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fake upload: bytes for `ms`, then `ready()`, then the name (recorded in order). */
function fakePut(named: string[], delays: Record<string, number>, fail: Set<string> = new Set()) {
  let inFlight = 0;
  let most = 0;
  const started: string[] = [];
  const fn = async (f: RepoFile, ready: () => Promise<void>) => {
    started.push(f.name);
    inFlight++;
    most = Math.max(most, inFlight);
    try {
      await tick(delays[kindOfName(f.name)] ?? 1);
      if (fail.has(f.name)) throw new Error(`cut: ${f.name}`);
      await ready();
      named.push(f.name);
    } finally {
      inFlight--;
    }
  };
  return { fn, started, most: () => most };
}

describe('inKindOrder', () => {
  it('keeps several files in flight, and names data before index before snapshots', async () => {
    const plan = planReplication(files, []);
    const named: string[] = [];
    // The index and the snapshot go up fast, the data slowly: they wait for their turn to be named.
    const put = fakePut(named, { data: 30, index: 1, snapshots: 1 });
    await inKindOrder(plan.uploads, 4, put.fn);
    expect(put.most()).toBe(4);
    expect([...named].sort()).toEqual(files.map((f) => f.name).sort());
    const at = (k: string) => named.map(kindOfName).lastIndexOf(k);
    const first = (k: string) => named.map(kindOfName).indexOf(k);
    expect(at('config')).toBeLessThan(first('keys'));
    expect(at('keys')).toBeLessThan(first('data'));
    expect(at('data')).toBeLessThan(first('index'));
    expect(at('index')).toBeLessThan(first('snapshots'));
  });

  it('on a failure starts no further file and names nothing of the kinds after it', async () => {
    const plan = planReplication(files, []);
    const named: string[] = [];
    const failing = `data/33/${hex('3')}`;
    const put = fakePut(named, { data: 20, index: 1, snapshots: 1 }, new Set([failing]));
    await expect(inKindOrder(plan.uploads, 4, put.fn)).rejects.toThrow(`cut: ${failing}`);
    expect(named).not.toContain(failing);
    expect(named.some((n) => n.startsWith('index/') || n.startsWith('snapshots/'))).toBe(false);
    // The other data files in flight were allowed to finish (a resumed run skips them).
    expect(named.filter((n) => n.startsWith('data/')).length).toBeGreaterThan(0);
    // Nothing started after the failure was seen.
    expect(put.started.length).toBeLessThan(plan.uploads.length);
  });

  it('a resumed run after a failure sends what is missing and keeps the order', async () => {
    const plan = planReplication(files, []);
    const named: string[] = [];
    const failing = `data/22/${hex('2')}`;
    await expect(
      inKindOrder(plan.uploads, 4, fakePut(named, { data: 5 }, new Set([failing])).fn),
    ).rejects.toThrow();
    const there = files.filter((f) => named.includes(f.name));
    const again = planReplication(files, there);
    expect(again.uploads.map((f) => f.name)).toContain(failing);
    const named2: string[] = [];
    await inKindOrder(again.uploads, 4, fakePut(named2, { data: 5 }).fn);
    expect([...named, ...named2].sort()).toEqual(files.map((f) => f.name).sort());
    const k = named2.map(kindOfName);
    expect(k.lastIndexOf('data')).toBeLessThan(k.indexOf('index'));
  });

  it('deletes go snapshots, index, data (the plan order), several at a time', async () => {
    const plan = planReplication([], files);
    const order: string[] = [];
    await inKindOrder(plan.deletes, 4, async (f, ready) => {
      await tick(kindOfName(f.name) === 'snapshots' ? 20 : 1);
      await ready();
      order.push(kindOfName(f.name));
    });
    expect(order.lastIndexOf('snapshots')).toBeLessThan(order.indexOf('index'));
    expect(order.lastIndexOf('index')).toBeLessThan(order.indexOf('data'));
  });

  it('stops starting files once the signal is aborted', async () => {
    const ac = new AbortController();
    const seen: string[] = [];
    await inKindOrder(
      files,
      2,
      async (f) => {
        seen.push(f.name);
        if (seen.length === 3) ac.abort();
        await tick(1);
      },
      ac.signal,
    );
    expect(seen.length).toBeLessThan(files.length);
  });
});

describe('putCatalogFiles', () => {
  it('sends both side by side, names the lines before the head, and never the head after a failure', async () => {
    const log: string[] = [];
    let failLines = false;
    const store = {
      putCatalog: async (_local: string, name: string, ready?: () => Promise<void>) => {
        log.push(`send ${name}`);
        await tick(name === 'catalog.jsonl' ? 20 : 1);
        if (failLines && name === 'catalog.jsonl') throw new Error('cut');
        await ready?.();
        log.push(`name ${name}`);
      },
    } as unknown as Store;
    await putCatalogFiles(store, '/nowhere');
    expect(log).toEqual([
      'send catalog.jsonl',
      'send catalog.head.json',
      'name catalog.jsonl',
      'name catalog.head.json',
    ]);
    log.length = 0;
    failLines = true;
    await expect(putCatalogFiles(store, '/nowhere')).rejects.toThrow('cut');
    await tick(30);
    expect(log).not.toContain('name catalog.head.json');
  });
});

describe('targets side by side (TargetRuns)', () => {
  const target = (name: string) => ({ name }) as unknown as TargetConfig;
  const report = (name: string) => ({ target: name, ok: true }) as unknown as TargetReport;
  const storeOf = (closed: string[], name: string) =>
    ({ close: () => closed.push(name) }) as unknown as Store;

  it("sends every target's files at once, and does the catalog parts one at a time, in order", async () => {
    const targets = ['a', 'b', 'c'].map(target);
    const sending = new Set<string>();
    let allSending!: () => void;
    const together = new Promise<void>((r) => (allSending = r));
    const log: string[] = [];
    let finishing = 0;
    const runs = new TargetRuns(targets, {
      send: async (t) => {
        sending.add(t.name);
        if (sending.size === targets.length) allSending();
        // Each target's files end only once every target's have started: one after the other,
        // this would never end (the project's timeout bounds that hang).
        await together;
        // The last target's files end first.
        await tick(t.name === 'a' ? 30 : t.name === 'b' ? 15 : 1);
        log.push(`sent ${t.name}`);
        return { t, store: null, report: report(t.name) };
      },
      finish: async (o) => {
        finishing++;
        expect(finishing).toBe(1);
        log.push(`catalog ${o.t.name}`);
        await tick(5);
        finishing--;
        return o.report!;
      },
    });
    const reports = [];
    for (let i = 0; i < targets.length; i++) reports.push(await runs.finish(i));
    expect(reports.map((r) => r.target)).toEqual(['a', 'b', 'c']);
    expect(log.filter((l) => l.startsWith('catalog'))).toEqual(['catalog a', 'catalog b', 'catalog c']);
    // c's files were done before a's: they went side by side.
    expect(log.indexOf('sent c')).toBeLessThan(log.indexOf('sent a'));
  });

  it('a run stopped after the first target still waits for the others in flight and closes their stores', async () => {
    const closed: string[] = [];
    const targets = ['a', 'b'].map(target);
    const runs = new TargetRuns(targets, {
      send: async (t) => {
        await tick(t.name === 'b' ? 20 : 1);
        return { t, store: storeOf(closed, t.name), report: report(t.name) };
      },
      finish: async (o) => {
        o.store?.close();
        o.store = null;
        throw new Error('interrupted');
      },
    });
    await expect(runs.finish(0)).rejects.toThrow('interrupted');
    await runs.close();
    expect(closed.sort()).toEqual(['a', 'b']);
  });
});
