import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/**
 * A small LAN made by the test and removed after it (see shared note multicast-netns.md): a hub
 * namespace holding a bridge, one namespace per host joined to it by a veth pair, addresses in
 * 198.18.0.0/24 (RFC 2544's benchmarking range; this machine's own network may use the
 * documentation ranges) that exist only inside these namespaces.
 */
export interface Lan {
  /** The namespace holding the bridge. */
  hub: string;
  ns(host: string): string;
  address(host: string): string;
  /**
   * A tap device in the hub, on the bridge and up, for a QEMU guest on this LAN (qemu runs in the
   * hub namespace); `destroy` removes it. Returns its name.
   */
  addTap(): string;
  destroy(): void;
}

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

export function makeLan(hosts: string[]): Lan {
  const tag = `zsc${process.pid % 100000}`;
  const hub = `${tag}-hub`;
  const made: string[] = [];
  const taps: string[] = [];
  const ns = (h: string) => `${tag}-${h}`;
  const address = (h: string) => `198.18.0.${hosts.indexOf(h) + 1}`;
  const destroy = () => {
    // A tap made with `ip tuntap add` is persistent: remove it by name, not by trusting the
    // namespace's end to take it along.
    for (const t of taps.splice(0)) spawnSync('ip', ['-n', hub, 'tuntap', 'del', t, 'mode', 'tap']);
    for (const n of made.splice(0).reverse()) spawnSync('ip', ['netns', 'del', n]);
  };
  const addTap = () => {
    const t = `${tag}t${taps.length}`;
    ip(['-n', hub, 'tuntap', 'add', t, 'mode', 'tap']);
    taps.push(t);
    ip(['-n', hub, 'link', 'set', t, 'master', 'br0', 'up']);
    return t;
  };
  try {
    ip(['netns', 'add', hub]);
    made.push(hub);
    ip(['-n', hub, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
    ip(['-n', hub, 'link', 'set', 'br0', 'up']);
    hosts.forEach((h, i) => {
      ip(['netns', 'add', ns(h)]);
      made.push(ns(h));
      ip(['-n', hub, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(h)]);
      ip(['-n', hub, 'link', 'set', `v${i}`, 'master', 'br0', 'up']);
      ip(['-n', ns(h), 'link', 'set', 'lo', 'up']);
      // `brd +`: without a broadcast address udp-receiver says hello to 0.0.0.0 and no sender hears it.
      ip(['-n', ns(h), 'addr', 'add', `${address(h)}/24`, 'brd', '+', 'dev', 'eth0']);
      ip(['-n', ns(h), 'link', 'set', 'eth0', 'up']);
      ip(['-n', ns(h), 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
    });
  } catch (err) {
    destroy();
    throw err;
  }
  return { hub, ns, address, addTap, destroy };
}

export interface Proc {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

/** Runs argv inside a namespace; `ip netns exec` execs it, so the pid is the program's own. */
export function runIn(namespace: string, argv: string[], env: Record<string, string>): Proc {
  // A process group of its own: a test that fails half-way kills the group, and with it the
  // udp-sender or udp-receiver that zshield started (killing zshield alone would orphan them).
  const child = spawn('ip', ['netns', 'exec', namespace, ...argv], {
    detached: true,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, out: () => out, exited };
}

/** The child of `parent` running `comm` (udp-sender, udp-receiver), or null. */
export function childNamed(parent: number, comm: string): number | null {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent && name === comm) return Number(d);
    } catch {
      // The process ended while we looked.
    }
  }
  return null;
}

/** Polls until `cond` holds; the timeout only bounds a hang. */
export async function until(cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
