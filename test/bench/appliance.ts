// Host side of the QEMU "virtual appliance bench".
//
// A guest boots the Debian cloud kernel with the bench initramfs (.bench/initramfs.cpio, built by
// test/bench/setup.sh from the golden root .bench/rootfs/). Its busybox init starts a command
// agent on a virtio-serial port; this module talks to it over a unix socket, so one boot can run
// many guest commands. Disks are sparse raw files in the caller's work folder and persist across
// boots. Every wait has a timeout, and every failure message carries the tail of the console log.
//
// Wire protocol (see test/bench/guest/agent):
//   host -> guest  "<id> RUN <scriptlen> <stdinlen>\n" <script> <stdin>
//   guest -> host  "<id> OUT <n>\n" <n bytes> "<id> ERR <n>\n" <n bytes> "<id> RC <code>\n"

import { type ChildProcess, spawn as spawnProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { benchInfo, benchReady, ensureBench, tail } from './bench-env.js';
import { imageUsers } from './disk-images.js';

const MiB = 1024 * 1024;
const CONSOLE_TAIL_LINES = 80;

export interface DiskSpec {
  /** File name stem: the disk is `<workDir>/<name>.img` (sparse, created if missing, kept). */
  name: string;
  sizeMiB: number;
  /** virtio-blk serial, visible in the guest as /sys/block/vdX/serial (max 20 characters). */
  serial: string;
  /**
   * Caps the disk's reads and writes together (QEMU's throttling.bps-total), so that a long kernel
   * operation (a snapshot merge) lasts long enough for a shim to act in its middle on any host.
   */
  throttleBytesPerSec?: number;
}

/**
 * What the guest boots.
 * - `{ from: 'kernel' }` (the default): the bench kernel with the bench initramfs, which IS the
 *   golden root (qemu -kernel/-initrd/-append; the prototype system). `initrd` replaces the
 *   initramfs: e.g. `benchInfo().bootInitrd` (the disks' boot initramfs) with
 *   `appendCmdline: 'root=/dev/vgroup/lv-root'` boots a root on a disk without GRUB. `kernel`
 *   replaces the kernel (e.g. the systemd flavour's, systemdBenchInfo()).
 * - `{ from: 'disk', disk }`: the firmware (SeaBIOS) boots the MBR of the disk named `disk` (a
 *   DiskSpec name): its GRUB, its grub.cfg, its kernel and initramfs (/boot/initrd.img-<kver>,
 *   which activates LVM and mounts the root), its root's busybox init and rcS (which runs
 *   /etc/rc.local on the console, e.g. the `zshield boot` hook). The kernel command line comes
 *   from GRUB (appendCmdline is refused; pick a menu entry with setNextBootEntry()). That disk gets
 *   bootindex 0 and the other disks the following ones in order, as a BIOS boot order would (a
 *   disk without a boot loader falls through to the next); `only: true` makes that disk the only
 *   boot device (`-boot strict=on`).
 */
export type BootSource =
  | { from: 'kernel'; initrd?: string; kernel?: string }
  | { from: 'disk'; disk: string; only?: boolean };

export interface BootOptions {
  /** Folder for the disk images and the console log (created if missing). */
  workDir: string;
  /** Disks in order: the first is vda, the second vdb, ... */
  disks: DiskSpec[];
  /** Default: the bench kernel + initramfs. See BootSource. */
  boot?: BootSource;
  /**
   * Boot until the agent answers; default 90 s with the kernel, 150 s from a disk (TCG boots take
   * ~8 s / ~15 s when the host is idle). For bootUntilExit(): until qemu exits, default 600 s.
   */
  timeoutMs?: number;
  /** `-fw_cfg name=opt/<key>,string=<value>`; read in the guest from
   * /sys/firmware/qemu_fw_cfg/by_name/opt/<key>/raw. A key without the `opt/` prefix gets it. */
  fwCfg?: Record<string, string>;
  /** Appended to the kernel command line (e.g. `zshield_recovery=latest`). Kernel boots only. */
  appendCmdline?: string;
  /** Guest memory, default 1024 (384 and below cannot unpack the initramfs). */
  memoryMiB?: number;
  /**
   * The serial console both ways: a QEMU socket chardev (qemu still logs to console.log) that
   * typeOnConsole() types into. Off by default: with the socket backend the log showed a
   * duplicated byte every few KB (QEMU 7.2, not seen with the file backend), so scenarios that
   * match console text keep the file; a typing scenario reads zshield's lines from the journal.
   */
  consoleInput?: boolean;
  /** More qemu arguments, appended last (e.g. `['-machine', 'q35']`). */
  extraQemuArgs?: string[];
  /** A NIC for the guest (none by default); see GuestNetwork. */
  network?: GuestNetwork;
}

/**
 * The guest's one NIC (virtio-net, eth0 in the guest, configured by rcS from fw_cfg opt/bench.net).
 * - `user`: QEMU user networking with `restrict=on`: the guest reaches nothing but the forwards,
 *   each a `guestfwd` from USER_NET.server:guestPort to 127.0.0.1:hostPort on the host (through
 *   `nc`, a new one per connection; a `tcp:` chardev would serve one connection only).
 * - `tap`: a tap device made by the test (`ip tuntap add NAME mode tap`) in the network namespace
 *   `netns`, with qemu started inside that namespace; `address` is the guest's "ADDRESS/PREFIX".
 *   Traffic stays in the test's namespaces (multicast cloning: user networking carries none).
 */
export type GuestNetwork =
  | { kind: 'user'; forwards: { guestPort: number; hostPort: number }[] }
  | { kind: 'tap'; netns: string; tap: string; address: string; mac?: string };

/** Addresses of QEMU user networking as the bench uses it. */
export const USER_NET = { guest: '10.0.2.15/24', gateway: '10.0.2.2', server: '10.0.2.100' } as const;

/** The qemu arguments, the fw_cfg entry and the command prefix for a GuestNetwork. */
export function networkArgs(net: GuestNetwork): {
  args: string[];
  fwCfg: Record<string, string>;
  prefix: string[];
} {
  if (net.kind === 'user') {
    const fwd = net.forwards.map((f) => {
      if (!Number.isInteger(f.guestPort) || !Number.isInteger(f.hostPort))
        throw new Error('bad forward port');
      return `,guestfwd=tcp:${USER_NET.server}:${f.guestPort}-cmd:nc 127.0.0.1 ${f.hostPort}`;
    });
    return {
      args: ['-netdev', `user,id=net0,restrict=on${fwd.join('')}`, '-device', 'virtio-net-pci,netdev=net0'],
      fwCfg: { 'opt/bench.net': USER_NET.guest },
      prefix: [],
    };
  }
  for (const word of [net.netns, net.tap]) {
    if (!/^[A-Za-z0-9_-]{1,15}$/.test(word)) throw new Error(`bad network name: ${word}`);
  }
  const mac = net.mac ? `,mac=${net.mac}` : '';
  return {
    args: [
      '-netdev',
      `tap,id=net0,ifname=${net.tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=net0${mac}`,
    ],
    fwCfg: { 'opt/bench.net': net.address },
    prefix: ['ip', 'netns', 'exec', net.netns],
  };
}

export interface ShOptions {
  /** Default 120 s. On timeout the call throws (with the console tail) and the job is killed. */
  timeoutMs?: number;
  /** Bytes fed to the script's stdin (default: empty). */
  stdin?: string | Buffer;
}

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RawResult {
  code: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** Quote one word for a POSIX shell. */
export function shQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

// ------------------------------------------------------------------------------------------------
// Appliance
// ------------------------------------------------------------------------------------------------

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

const live = new Set<Appliance>();
imageUsers.push((file) => [...live].some((a) => a.usesImage(file)));
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort against orphans (qemu also gets SIGKILL from setpriv --pdeathsig).
  process.on('exit', () => {
    for (const a of live) a.killNow();
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class Appliance {
  /** Milliseconds from starting qemu to the agent's first answer. */
  bootMs = 0;
  readonly consolePath: string;
  readonly workDir: string;

  private readonly proc: ChildProcess;
  private readonly sockDir: string;
  private sock: net.Socket | undefined;
  /** The serial console's socket (qemu logs what the guest writes to consolePath itself). */
  private consoleSock: net.Socket | undefined;
  private readonly pending = new Map<string, Pending>();
  private nextId = 1;
  private headerBuf: Buffer = Buffer.alloc(0);
  private body: BodyState | undefined;
  private qemuStderr = '';
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exited: Promise<void>;
  private readonly diskPaths = new Map<string, string>();
  /** SeaBIOS's debug log of a disk boot. */
  private firmwareLog: string | undefined;

  private constructor(proc: ChildProcess, workDir: string, consolePath: string, sockDir: string) {
    this.proc = proc;
    this.workDir = workDir;
    this.consolePath = consolePath;
    this.sockDir = sockDir;
    proc.stderr?.on('data', (d: Buffer) => {
      this.qemuStderr = tail(this.qemuStderr + d.toString('utf8'), 40);
    });
    proc.stdout?.on('data', () => {});
    this.exited = new Promise<void>((resolve) => {
      const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exitInfo) return;
        this.exitInfo = { code, signal };
        live.delete(this);
        this.sock?.destroy();
        this.consoleSock?.destroy();
        fs.rmSync(this.sockDir, { recursive: true, force: true });
        const err = this.failure(`the appliance stopped (qemu ${this.describeExit()})`);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        resolve();
      };
      proc.on('exit', onExit);
      proc.on('error', (e) => {
        this.qemuStderr += `\nspawn failed: ${e.message}`;
        onExit(null, null);
      });
    });
    live.add(this);
    installExitHook();
  }

  /** Boot a guest and wait until its command agent answers. */
  static async boot(opts: BootOptions): Promise<Appliance> {
    const { app, sockPath, started, timeoutMs } = await Appliance.launch(opts, false);
    const gaveUp = app.watchFirmware();
    try {
      const answered = (async () => {
        await app.connect(sockPath, started + timeoutMs);
        const left = started + timeoutMs - Date.now();
        const ping = await app.exec('echo ready', { timeoutMs: Math.max(left, 1) }, 'boot');
        if (ping.code !== 0 || ping.stdout.toString() !== 'ready\n') {
          throw app.failure(`the agent answered the first request wrongly: ${JSON.stringify(ping)}`);
        }
      })();
      await Promise.race([answered, gaveUp.failed]);
    } catch (e) {
      await app.kill();
      throw e instanceof Error && e.message.includes('--- console') ? e : app.failure(`boot failed: ${e}`);
    } finally {
      gaveUp.stop();
    }
    app.bootMs = Date.now() - started;
    return app;
  }

  /**
   * Boot a guest and wait for qemu to exit by itself (the guest powers off, reboots — qemu runs
   * with -no-reboot — or panics), without talking to the agent: e.g. a recovery boot that ends
   * with a reboot. Returns the whole console log (Appliance.lastExit has the duration and qemu's
   * exit status). A guest still running after `timeoutMs` (default 600 s) is killed and the call
   * throws with the console tail.
   */
  static async bootUntilExit(opts: BootOptions): Promise<string> {
    const { app, started, timeoutMs } = await Appliance.launch(opts, true);
    await app.waitForExit(timeoutMs - (Date.now() - started));
    Appliance.lastExit = {
      ms: Date.now() - started,
      code: app.exitInfo?.code ?? null,
      signal: app.exitInfo?.signal ?? null,
    };
    return app.consoleLog();
  }

  /**
   * Start a guest and return at once, without waiting for anything: for watching a boot's console
   * (e.g. the GRUB menu of a disk boot, with waitForConsole()) and ending it there with kill().
   * The agent is not connected: sh() and friends do not work on this handle.
   */
  static async start(opts: BootOptions): Promise<Appliance> {
    return (await Appliance.launch(opts, false)).app;
  }

  /** Duration and exit status of the last bootUntilExit() that returned. */
  static lastExit: { ms: number; code: number | null; signal: NodeJS.Signals | null } | undefined;

  /** Start qemu for a boot (see BootOptions); does not wait for anything. */
  private static async launch(
    opts: BootOptions,
    untilExit: boolean,
  ): Promise<{ app: Appliance; sockPath: string; started: number; timeoutMs: number }> {
    if (!benchReady()) await ensureBench();
    const info = benchInfo();
    const source: BootSource = opts.boot ?? { from: 'kernel' };
    const timeoutMs = opts.timeoutMs ?? (untilExit ? 600_000 : source.from === 'disk' ? 150_000 : 90_000);
    const workDir = path.resolve(opts.workDir);
    fs.mkdirSync(workDir, { recursive: true });

    for (const d of opts.disks) {
      if (!/^[A-Za-z0-9_.-]+$/.test(d.name)) throw new Error(`bad disk name: ${d.name}`);
      if (!/^[A-Za-z0-9_.-]{1,20}$/.test(d.serial)) throw new Error(`bad disk serial: ${d.serial}`);
    }
    let bootDisk = -1;
    if (source.from === 'disk') {
      bootDisk = opts.disks.findIndex((d) => d.name === source.disk);
      if (bootDisk < 0) throw new Error(`boot from disk ${source.disk}: no DiskSpec of that name`);
      if (opts.appendCmdline) {
        throw new Error('appendCmdline needs a kernel boot: from a disk, GRUB makes the command line');
      }
    }

    const consolePath = path.join(workDir, 'console.log');
    if (fs.existsSync(consolePath)) fs.renameSync(consolePath, path.join(workDir, 'console.prev.log'));
    // Unix socket paths are limited to 108 bytes: keep the socket in a short temporary folder.
    const sockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'zsb-'));
    const sockPath = path.join(sockDir, 'agent.sock');
    const consoleSock = path.join(sockDir, 'console.sock');

    const q = (s: string) => s.replace(/,/g, ',,'); // qemu option value escaping
    const args: string[] = [
      ['-accel', 'tcg', '-cpu', 'max', '-smp', '1', '-m', String(opts.memoryMiB ?? 1024)],
      ['-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-nic', 'none'],
      ['-no-reboot'],
      // The console both ways: qemu logs the guest's output to consolePath; the host types into
      // the socket (typeOnConsole). wait=on: the guest starts once the host is connected, and the
      // host stays connected (a socket without a client drops the guest's output, log included).
      opts.consoleInput
        ? [
            '-chardev',
            `socket,id=con,path=${q(consoleSock)},server=on,wait=on,logfile=${q(consolePath)}`,
            '-serial',
            'chardev:con',
          ]
        : ['-chardev', `file,id=con,path=${q(consolePath)}`, '-serial', 'chardev:con'],
      ['-device', 'virtio-serial-pci'],
      ['-chardev', `socket,id=agent,path=${q(sockPath)},server=on,wait=off`],
      ['-device', 'virtserialport,chardev=agent,name=bench'],
    ].flat();
    let fwLog: string | undefined;
    if (source.from === 'kernel') {
      // no_timer_check: see guest/default-grub (a busy host's TCG guest fails the timer check).
      const cmdline = ['console=ttyS0', 'panic=-1', 'no_timer_check', opts.appendCmdline ?? '']
        .join(' ')
        .trim();
      args.push(
        '-kernel',
        source.kernel ?? info.vmlinuz,
        '-initrd',
        source.initrd ?? info.initrd,
        '-append',
        cmdline,
      );
    } else {
      // SeaBIOS writes what it boots (or "No bootable device") to the debug port, not the serial
      // console: keep it, for failure messages.
      fwLog = path.join(workDir, 'firmware.log');
      fs.rmSync(fwLog, { force: true });
      args.push('-chardev', `file,id=fw,path=${q(fwLog)}`, '-device', 'isa-debugcon,iobase=0x402,chardev=fw');
      if (source.only) args.push('-boot', 'strict=on');
    }
    const diskPaths = new Map<string, string>();
    opts.disks.forEach((d, i) => {
      const file = path.join(workDir, `${d.name}.img`);
      if (!fs.existsSync(file)) {
        const fd = fs.openSync(file, 'w');
        fs.ftruncateSync(fd, d.sizeMiB * MiB);
        fs.closeSync(fd);
      }
      diskPaths.set(d.name, file);
      let bootIndex = '';
      if (bootDisk >= 0 && source.from === 'disk') {
        // The boot disk first, then the others in order (unless it is the only boot device).
        const order = i === bootDisk ? 0 : i < bootDisk ? i + 1 : i;
        if (i === bootDisk || !source.only) bootIndex = `,bootindex=${order}`;
      }
      const throttle = d.throttleBytesPerSec
        ? `,throttling.bps-total=${Math.floor(d.throttleBytesPerSec)}`
        : '';
      // discard + detect-zeroes: what the guest discards (mkfs does) or writes as zeroes becomes a
      // hole in the image, so the bench takes only the host disk its data needs. write-zeroes=off:
      // the guest's BLKZEROOUT (blkdiscard --zeroout) asks to keep the zeroed blocks allocated,
      // which qemu does (3 GiB of host disk for image restore's zeroed lv-root); without the
      // command, the guest writes zero pages, and those become holes. werror/rerror report: when
      // the host disk is full, the guest gets I/O errors and its commands fail (the default stops
      // the guest, which then hangs until each test's timeout).
      const drive = `format=raw,if=none,id=disk${i},cache=unsafe,discard=unmap,detect-zeroes=unmap`;
      args.push('-drive', `file=${q(file)},${drive},werror=report,rerror=report${throttle}`);
      args.push('-device', `virtio-blk-pci,drive=disk${i},serial=${d.serial},write-zeroes=off${bootIndex}`);
    });
    const net = opts.network ? networkArgs(opts.network) : undefined;
    if (net) args.push(...net.args);
    for (const [key, value] of Object.entries({ ...opts.fwCfg, ...net?.fwCfg })) {
      const name = key.startsWith('opt/') ? key : `opt/${key}`;
      args.push('-fw_cfg', `name=${q(name)},string=${q(value)}`);
    }

    // ZSHIELD_BENCH_RTC=2031-06-01 starts every guest on that date (its clock runs on from there):
    // the bench's cases must not depend on the host's date (they move a guest's clock relative
    // to the guest's own time), and this is how that is proven.
    const rtc = process.env['ZSHIELD_BENCH_RTC'];
    if (rtc) args.push('-rtc', `base=${q(rtc)}`);
    args.push(...(opts.extraQemuArgs ?? []));

    const started = Date.now();
    // setpriv --pdeathsig: qemu dies with the process that started it (no orphans).
    // (`ip netns exec` execs setpriv, which execs qemu: one process, inside the namespace.)
    const command = [
      ...(net?.prefix ?? []),
      'setpriv',
      '--pdeathsig',
      'KILL',
      '--',
      'qemu-system-x86_64',
      ...args,
    ];
    const proc = spawnProcess(command[0]!, command.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const app = new Appliance(proc, workDir, consolePath, sockDir);
    for (const [k, v] of diskPaths) app.diskPaths.set(k, v);
    app.firmwareLog = fwLog;
    if (opts.consoleInput) {
      try {
        await app.connectConsole(consoleSock, started + 60_000);
      } catch (e) {
        await app.kill();
        throw e;
      }
    }
    return { app, sockPath, started, timeoutMs };
  }

  /** Connect to the serial console's socket (qemu waits for it before starting the guest). */
  private async connectConsole(sockPath: string, deadline: number): Promise<void> {
    for (;;) {
      if (this.exitInfo)
        throw this.failure(`qemu exited before its console was connected (${this.describeExit()})`);
      if (Date.now() > deadline) throw this.failure('qemu did not open its console socket');
      if (fs.existsSync(sockPath)) {
        const sock = await new Promise<net.Socket | undefined>((resolve) => {
          const s = net.createConnection(sockPath);
          s.once('connect', () => resolve(s));
          s.once('error', () => {
            s.destroy();
            resolve(undefined);
          });
        });
        if (sock) {
          this.consoleSock = sock;
          // Drained (the log has it), so the guest never waits on a full socket.
          sock.on('data', () => {});
          sock.on('error', () => {});
          return;
        }
      }
      await sleep(25);
    }
  }

  /**
   * Type on the serial console, as an operator at the box would (e.g. `c\n` at a countdown). The
   * bytes go to whatever reads the console: a getty, or a service with StandardInput=tty.
   */
  async typeOnConsole(text: string): Promise<void> {
    const sock = this.consoleSock;
    if (!sock || this.exitInfo) {
      throw this.failure('typeOnConsole: the console is not connected (boot with consoleInput: true)');
    }
    await new Promise<void>((resolve, reject) => sock.write(text, (e) => (e ? reject(e) : resolve())));
  }

  /**
   * A disk boot: rejects as soon as SeaBIOS logs "No bootable device." (it tried every boot disk;
   * it only retries after a pause, with the same disks), so such a boot fails on that fact rather
   * than on its timeout. Never rejects for a kernel boot.
   */
  private watchFirmware(): { failed: Promise<never>; stop: () => void } {
    let timer: NodeJS.Timeout | undefined;
    const fwLog = this.firmwareLog;
    const failed = new Promise<never>((_, reject) => {
      if (!fwLog) return;
      timer = setInterval(() => {
        let text = '';
        try {
          text = fs.readFileSync(fwLog, 'latin1');
        } catch {}
        if (/No bootable device/.test(text)) {
          clearInterval(timer);
          reject(this.failure('boot failed: the firmware found no bootable disk'));
        }
      }, 200);
    });
    failed.catch(() => {});
    return { failed, stop: () => clearInterval(timer) };
  }

  private async connect(sockPath: string, deadline: number): Promise<void> {
    for (;;) {
      if (this.exitInfo) throw this.failure(`qemu exited during boot (${this.describeExit()})`);
      if (Date.now() > deadline) throw this.failure('boot timed out waiting for the agent socket');
      if (fs.existsSync(sockPath)) {
        const sock = await new Promise<net.Socket | undefined>((resolve) => {
          const s = net.createConnection(sockPath);
          s.once('connect', () => resolve(s));
          s.once('error', () => {
            s.destroy();
            resolve(undefined);
          });
        });
        if (sock) {
          this.sock = sock;
          sock.on('data', (d: Buffer) => this.onData(d));
          sock.on('error', () => {});
          sock.on('close', () => {
            if (this.sock === sock) this.sock = undefined;
          });
          return;
        }
      }
      await sleep(25);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Reply parsing

  private onData(chunk: Buffer): void {
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
    const err = this.failure(`agent protocol error: ${msg}`);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  // ---------------------------------------------------------------------------------------------
  // Commands

  /** Run a shell script (busybox sh) in the guest; binary output as Buffers. */
  exec(script: string, opts: ShOptions = {}, label?: string): Promise<RawResult> {
    return this.start(script, opts, label).result;
  }

  private start(
    script: string,
    opts: ShOptions & { noTimeout?: boolean },
    label?: string,
  ): { id: string; result: Promise<RawResult> } {
    const id = `r${this.nextId++}`;
    const result = new Promise<RawResult>((resolve, reject) => {
      if (this.exitInfo) {
        reject(this.failure(`the appliance is not running (qemu ${this.describeExit()})`));
        return;
      }
      const sock = this.sock;
      if (!sock) {
        reject(this.failure('not connected to the guest agent'));
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer) clearTimeout(timer);
      };
      this.pending.set(id, {
        resolve: (r) => {
          done();
          resolve(r);
        },
        reject: (e) => {
          done();
          reject(e);
        },
        out: [],
        err: [],
      });
      if (!opts.noTimeout) {
        const timeoutMs = opts.timeoutMs ?? 120_000;
        timer = setTimeout(() => {
          if (!this.pending.delete(id)) return;
          const what =
            label ??
            `guest command ${JSON.stringify(script.length > 300 ? `${script.slice(0, 300)}...` : script)}`;
          reject(this.failure(`${what} timed out after ${timeoutMs} ms`));
          if (label !== 'boot') this.killJob(id, 'KILL').catch(() => {});
        }, timeoutMs);
      }
      const body = Buffer.from(script, 'utf8');
      const stdin = opts.stdin === undefined ? Buffer.alloc(0) : Buffer.from(opts.stdin);
      sock.write(`${id} RUN ${body.length} ${stdin.length}\n`);
      sock.write(body);
      if (stdin.length > 0) sock.write(stdin);
    });
    return { id, result };
  }

  /** Run a shell script in the guest (cwd /, stdin empty unless given, PATH set). */
  async sh(script: string, opts: ShOptions = {}): Promise<ShResult> {
    const r = await this.exec(script, opts);
    return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
  }

  /** Like sh(), but a non-zero exit throws (with stdout, stderr and the console tail). Returns stdout. */
  async shOk(script: string, opts: ShOptions = {}): Promise<string> {
    const r = await this.sh(script, opts);
    if (r.code !== 0) {
      throw this.failure(
        `guest command failed with exit ${r.code}: ${script}\n--- stdout ---\n${tail(r.stdout, 40)}\n--- stderr ---\n${tail(r.stderr, 40)}`,
      );
    }
    return r.stdout;
  }

  /** Run one command given as an argument array (quoted safely; no shell interpretation). */
  run(argv: string[], opts: ShOptions = {}): Promise<ShResult> {
    if (argv.length === 0) throw new Error('run: empty argv');
    return this.sh(`exec ${argv.map(shQuote).join(' ')}`, opts);
  }

  /** Write a file in the guest (parent folders created). */
  async writeFile(guestPath: string, data: string | Buffer, mode = 0o644): Promise<void> {
    const p = shQuote(guestPath);
    const r = await this.exec(
      `set -e; mkdir -p "$(dirname ${p})"; cat > ${p}; chmod ${mode.toString(8)} ${p}`,
      { stdin: data, timeoutMs: 300_000 },
    );
    if (r.code !== 0) throw this.failure(`writeFile ${guestPath} failed: ${r.stderr.toString()}`);
  }

  /** Read a file from the guest. */
  async readFile(guestPath: string): Promise<Buffer> {
    const r = await this.exec(`exec cat -- ${shQuote(guestPath)}`, { timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(`readFile ${guestPath} failed: ${r.stderr.toString().trim()}`);
    return r.stdout;
  }

  /**
   * Start a guest script in the background and return a handle to wait on or kill it. The script
   * runs in its own session; kill() signals the whole process group.
   */
  spawn(script: string, opts: { stdin?: string | Buffer } = {}): GuestJob {
    const { id, result } = this.start(script, { ...opts, noTimeout: true });
    return new GuestJob(this, id, result);
  }

  /** @internal Signal the process group of a running job (no-op once it has ended). */
  async killJob(id: string, signal: string): Promise<void> {
    if (!/^[A-Z0-9]+$/.test(signal)) throw new Error(`bad signal ${signal}`);
    const d = `/run/bench/agent/${id}`;
    // The agent writes the pid right after it starts the job: wait for it (or for the job's end)
    // however long that takes; the timeout only bounds a hung guest, and then throws.
    await this.exec(
      `while [ -d ${d} ] && [ ! -s ${d}/pid ]; do sleep 0.05; done
       [ -s ${d}/pid ] && kill -s ${signal} -- -$(cat ${d}/pid) 2>/dev/null; exit 0`,
      { timeoutMs: 120_000 },
    );
  }

  /** @internal The pid of a job's script (its process group id), once it has started. */
  async jobPid(id: string): Promise<number | undefined> {
    const d = `/run/bench/agent/${id}`;
    const r = await this.sh(
      `while [ -d ${d} ] && [ ! -s ${d}/pid ]; do sleep 0.05; done; cat ${d}/pid 2>/dev/null`,
      { timeoutMs: 120_000 },
    );
    const pid = Number.parseInt(r.stdout, 10);
    return Number.isNaN(pid) ? undefined : pid;
  }

  /** @internal Output of a running job so far. */
  async jobOutput(id: string): Promise<{ stdout: string; stderr: string }> {
    const d = `/run/bench/agent/${id}`;
    const [o, e] = await Promise.all([
      this.exec(`cat ${d}/out 2>/dev/null; exit 0`, { timeoutMs: 30_000 }),
      this.exec(`cat ${d}/err 2>/dev/null; exit 0`, { timeoutMs: 30_000 }),
    ]);
    return { stdout: o.stdout.toString('utf8'), stderr: e.stdout.toString('utf8') };
  }

  /** Wait until the console log matches `pattern`; returns the match. */
  async waitForConsole(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.consoleLog().match(pattern);
      if (m) return m;
      if (this.exitInfo) throw this.failure(`qemu exited before the console showed ${pattern}`);
      if (Date.now() > deadline) throw this.failure(`console did not show ${pattern} within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** Clean shutdown: busybox init stops every process, unmounts, syncs and powers off. */
  async poweroff(timeoutMs = 60_000): Promise<void> {
    if (this.exitInfo) return;
    this.exec('sync; exec poweroff', { timeoutMs }).catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!stopped) {
      const err = this.failure(`poweroff did not finish within ${timeoutMs} ms`);
      await this.kill();
      throw err;
    }
  }

  /** Power cut: SIGKILL qemu. Guest writes not yet handed to the virtual disk are lost. */
  async kill(): Promise<void> {
    if (!this.exitInfo) this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** @internal Synchronous kill for process exit hooks. */
  killNow(): void {
    if (!this.exitInfo) {
      try {
        this.proc.kill('SIGKILL');
      } catch {}
    }
  }

  /** Is qemu still running? */
  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /**
   * Resolves when qemu has exited (e.g. after `zshield boot` rebooted the guest: -no-reboot makes
   * qemu exit). With a timeout, a guest still running then is killed and the call throws with the
   * console tail.
   */
  async waitForExit(timeoutMs?: number): Promise<void> {
    if (timeoutMs === undefined) return this.exited;
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), Math.max(timeoutMs, 0));
      }),
    ]);
    clearTimeout(timer);
    if (!stopped) {
      const err = this.failure(`qemu did not exit within ${timeoutMs} ms`);
      await this.kill();
      throw err;
    }
  }

  /** qemu's exit code and signal, once it has exited. */
  get exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exitInfo;
  }

  /** @internal Is this (running) appliance using the disk image `file`? */
  usesImage(file: string): boolean {
    return !this.exitInfo && [...this.diskPaths.values()].some((p) => path.resolve(p) === path.resolve(file));
  }

  /** Host path of a disk image by its DiskSpec name. */
  diskPath(name: string): string {
    const p = this.diskPaths.get(name);
    if (!p) throw new Error(`no disk named ${name}`);
    return p;
  }

  /** The serial console log of this boot (kernel messages, init, BENCH-READY, ...). */
  consoleLog(): string {
    try {
      return fs.readFileSync(this.consolePath, 'utf8');
    } catch {
      return '';
    }
  }

  private describeExit(): string {
    if (!this.exitInfo) return 'running';
    const { code, signal } = this.exitInfo;
    return signal ? `killed by ${signal}` : `exit code ${code}`;
  }

  /** An Error whose message ends with the console tail (and qemu's stderr, if any). */
  failure(message: string): Error {
    let text = `${message}\n--- console tail (${this.consolePath}) ---\n${tail(this.consoleLog(), CONSOLE_TAIL_LINES)}`;
    if (this.qemuStderr.trim()) text += `\n--- qemu stderr ---\n${this.qemuStderr}`;
    const low = hostDiskLow(this.workDir);
    if (low) text += `\n--- host disk ---\n${low}`;
    const fwLog = this.firmwareLog;
    if (fwLog && fs.existsSync(fwLog) && !/Linux version/.test(this.consoleLog())) {
      // A disk boot where the kernel never started: what the firmware did.
      const fw = fs.readFileSync(fwLog, 'latin1').replace(/\r/g, '');
      text += `\n--- firmware (SeaBIOS) log tail (${fwLog}) ---\n${tail(fw, 15)}`;
    }
    return new Error(text);
  }
}

/** Below this much free host disk, a failure says so: the likely cause of guest I/O errors. */
const HOST_DISK_LOW_BYTES = 1024 * MiB;

/** A line naming the free space left where `dir` lives, when it is low; else undefined. */
export function hostDiskLow(dir: string): string | undefined {
  try {
    const st = fs.statfsSync(dir);
    const free = st.bavail * st.bsize;
    if (free >= HOST_DISK_LOW_BYTES) return undefined;
    return `only ${Math.floor(free / MiB)} MiB free on the host file system of ${dir}: the guest's disk writes fail (I/O errors) when it is full`;
  } catch {
    return undefined;
  }
}

/** A guest command started with Appliance.spawn(). */
export class GuestJob {
  private result: Promise<RawResult>;
  private settled = false;

  constructor(
    private readonly app: Appliance,
    readonly id: string,
    result: Promise<RawResult>,
  ) {
    this.result = result;
    const mark = () => {
      this.settled = true;
    };
    result.then(mark, mark); // also keeps a rejection from being unhandled
  }

  /** Has the job ended (or the appliance stopped)? */
  get finished(): boolean {
    return this.settled;
  }

  /** Wait for the job to end. A timeout throws (with the console tail) but leaves the job running. */
  async wait(opts: { timeoutMs?: number } = {}): Promise<ShResult> {
    const timeoutMs = opts.timeoutMs ?? 600_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(this.app.failure(`guest job ${this.id} did not end within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      const r = await Promise.race([this.result, timeout]);
      return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Guest pid of the job's script (= its process group); undefined once it has ended. */
  pid(): Promise<number | undefined> {
    return this.app.jobPid(this.id);
  }

  /** Send a signal (default KILL) to the job's whole process group. */
  kill(signal = 'KILL'): Promise<void> {
    return this.app.killJob(this.id, signal);
  }

  /** What the job has written so far. */
  output(): Promise<{ stdout: string; stderr: string }> {
    return this.app.jobOutput(this.id);
  }
}
