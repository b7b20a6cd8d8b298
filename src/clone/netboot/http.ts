import { createReadStream, statSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import path from 'node:path';
import type { Machine } from '../../config/clone.js';
import { NETBOOT_PATHS, RESCUE_CMDLINE, RESCUE_FILES, type RescueInstructions } from '../rescue/names.js';

/**
 * The netboot session's HTTP server, on the operator's interface: per listed MAC the iPXE answer
 * (the rescue while the box still has to receive, "boot from the local disk" once it verified),
 * the receive's instructions and what to do after, and the rescue's files. An unlisted MAC gets
 * 404 (dnsmasq does not answer it anyway).
 */

export interface BoxState {
  machine: Machine;
  /** What its next network boot gets. */
  answer: 'rescue' | 'disk';
  /** It fetched the rescue's initramfs (it network-booted the rescue). */
  netbooted: boolean;
  /** It asked for its iPXE script after being switched to its disk (it is booting from it). */
  sentToDisk: boolean;
  /** Its rescue failed before zshield ran (the reason it posted). */
  failed: string | null;
}

export interface NetbootServer {
  url: string;
  boxes: Map<string, BoxState>;
  /** Resolves at the next request that changed a box's state. */
  nextChange(): Promise<void>;
  close(): Promise<void>;
}

export interface NetbootServerOptions {
  address: string;
  port: number;
  rescueDir: string;
  machines: readonly Machine[];
  session: string;
  portbase: number;
  /** Kernel arguments of the rescue before zshield's own (the console, say). */
  kernelArgs: string;
  after: 'poweroff' | 'reboot';
}

/** The iPXE script a box gets: the rescue with its MAC and the server on the kernel command line, or its disk. */
export function ipxeScript(box: BoxState, url: string, kernelArgs: string): string {
  if (box.answer === 'disk') {
    // Back to the firmware, which boots the next device of its boot order: the disk just written.
    return '#!ipxe\necho zshield: booting from the local disk\nexit\n';
  }
  const args =
    `${kernelArgs} ${RESCUE_CMDLINE.server}=${url} ${RESCUE_CMDLINE.mac}=${box.machine.mac}`.trim();
  return [
    '#!ipxe',
    `kernel ${url}${NETBOOT_PATHS.rescue}/${RESCUE_FILES.kernel} ${args}`,
    `initrd ${url}${NETBOOT_PATHS.rescue}/${RESCUE_FILES.initramfs}?mac=${box.machine.mac}`,
    'boot',
    '',
  ].join('\n');
}

export async function startNetbootServer(o: NetbootServerOptions): Promise<NetbootServer> {
  // Set once listening (port 0: the port the system chose).
  let url = `http://${o.address}:${o.port}`;
  const boxes = new Map<string, BoxState>(
    o.machines.map((m) => [
      m.mac,
      { machine: m, answer: 'rescue', netbooted: false, sentToDisk: false, failed: null },
    ]),
  );
  let waiters: (() => void)[] = [];
  const changed = () => {
    for (const w of waiters) w();
    waiters = [];
  };
  const served = new Set<string>(Object.values(RESCUE_FILES).filter((f) => f !== RESCUE_FILES.manifest));
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', url);
    const [, top, what, arg] = u.pathname.split('/');
    const route = `/${top}/${what}`;
    if (`/${top}` === NETBOOT_PATHS.rescue && what && served.has(what) && req.method === 'GET') {
      const file = path.join(o.rescueDir, what);
      const size = sizeOf(file);
      if (size === null) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Length': size, 'Content-Type': 'application/octet-stream' });
      const s = createReadStream(file);
      s.on('error', () => res.destroy());
      // The initramfs sent whole to a listed box (the iPXE script names it with ?mac=): it netbooted.
      const box = boxes.get((u.searchParams.get('mac') ?? '').toLowerCase());
      if (box && what === RESCUE_FILES.initramfs) {
        res.on('finish', () => {
          box.netbooted = true;
          changed();
        });
      }
      s.pipe(res);
      return;
    }
    // iPXE writes ${net0/mac} into the URL percent-encoded (52%3A54%3A...).
    const box = boxes.get(decoded(arg ?? '').toLowerCase());
    if (!box) {
      res.writeHead(404).end();
      return;
    }
    answerBox(box, route, req, res, { ...o, url: () => url }, changed);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  if (bound && typeof bound === 'object') url = `http://${o.address}:${bound.port}`;
  return {
    url,
    boxes,
    nextChange: () => new Promise((resolve) => waiters.push(resolve)),
    close: () => closeServer(server),
  };
}

/** A listed box's requests: its iPXE script, its instructions, what to do after, its failure. */
function answerBox(
  box: BoxState,
  route: string,
  req: IncomingMessage,
  res: ServerResponse,
  o: NetbootServerOptions & { url: () => string },
  changed: () => void,
): void {
  if (route === NETBOOT_PATHS.ipxe && req.method === 'GET') {
    if (box.answer === 'disk') box.sentToDisk = true;
    res.writeHead(200, { 'Content-Type': 'text/plain' }).end(ipxeScript(box, o.url(), o.kernelArgs));
    changed();
  } else if (route === NETBOOT_PATHS.instructions && req.method === 'GET') {
    const i: RescueInstructions = {
      name: box.machine.name,
      mac: box.machine.mac,
      disk: box.machine.disk,
      session: o.session,
      portbase: o.portbase,
    };
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(i));
  } else if (route === NETBOOT_PATHS.after && req.method === 'GET') {
    res.writeHead(200, { 'Content-Type': 'text/plain' }).end(o.after);
  } else if (route === NETBOOT_PATHS.failed && req.method === 'POST') {
    readText(req, (t) => {
      box.failed = t.slice(0, 500) || 'failed';
      res.writeHead(204).end();
      changed();
    });
  } else res.writeHead(404).end();
}

/** A request's bad escape (a URIError) is an unknown box, not a crash of the session. */
function decoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return '';
  }
}

function sizeOf(file: string): number | null {
  try {
    return statSync(file).size;
  } catch {
    return null;
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

function readText(req: IncomingMessage, done: (t: string) => void): void {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d: string) => {
    body += d;
    if (body.length > 64 * 1024) req.destroy();
  });
  req.on('end', () => done(body));
}
