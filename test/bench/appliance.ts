// Host side of the QEMU "virtual appliance bench".
//
// A guest boots the Debian cloud kernel with the bench initramfs (.bench/initramfs.cpio, built by
// test/bench/setup.sh from the golden root .bench/rootfs/). Its busybox init starts a command
// agent on a virtio-serial port; this module talks to it over a unix socket, so one boot can run
// many guest commands. Disks are sparse raw files in the caller's work folder and persist across
// boots. Every wait has a timeout, and every failure message carries the tail of the console log.
//
// The qemu command line: qemu-command.ts; the agent's wire protocol: agent-wire.ts; a background
// guest command: guest-job.ts.

import { type ChildProcess, spawn as spawnProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { AgentWire } from './agent-wire.js';
import { benchInfo, benchReady, ensureBench, tail } from './bench-env.js';
import { imageUsers } from './disk-images.js';
import { GuestJob, type RawResult, type ShOptions, type ShResult, shQuote } from './guest-job.js';
import {
  type BootFiles,
  type BootOptions,
  checkBootOptions,
  KERNEL_BOOT,
  makeDisks,
  qemuCommand,
} from './qemu-command.js';

const MiB = 1024 * 1024;
const CONSOLE_TAIL_LINES = 80;

// ------------------------------------------------------------------------------------------------
// Appliance
// ------------------------------------------------------------------------------------------------

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
  private readonly wire = new AgentWire((message) => this.failure(message));
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
        this.wire.failAll(this.failure(`the appliance stopped (qemu ${this.describeExit()})`));
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
    checkBootOptions(opts);
    const source = opts.boot ?? KERNEL_BOOT;
    const timeoutMs = opts.timeoutMs ?? (untilExit ? 600_000 : source.from === 'disk' ? 150_000 : 90_000);
    const workDir = path.resolve(opts.workDir);
    fs.mkdirSync(workDir, { recursive: true });
    const consolePath = path.join(workDir, 'console.log');
    if (fs.existsSync(consolePath)) fs.renameSync(consolePath, path.join(workDir, 'console.prev.log'));
    // Unix socket paths are limited to 108 bytes: keep the socket in a short temporary folder.
    const sockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'zsb-'));
    const files: BootFiles = {
      consolePath,
      sockPath: path.join(sockDir, 'agent.sock'),
      consoleSock: path.join(sockDir, 'console.sock'),
      ...(source.from === 'disk' ? { fwLog: path.join(workDir, 'firmware.log') } : {}),
    };
    if (files.fwLog) fs.rmSync(files.fwLog, { force: true });
    const diskPaths = makeDisks(workDir, opts.disks);
    const command = qemuCommand(opts, benchInfo(), files, diskPaths);

    const started = Date.now();
    const proc = spawnProcess(command[0]!, command.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const app = new Appliance(proc, workDir, consolePath, sockDir);
    for (const [k, v] of diskPaths) app.diskPaths.set(k, v);
    app.firmwareLog = files.fwLog;
    if (opts.consoleInput) {
      try {
        await app.connectConsole(files.consoleSock, started + 60_000);
      } catch (e) {
        await app.kill();
        throw e;
      }
    }
    return { app, sockPath: files.sockPath, started, timeoutMs };
  }

  /** Connect to the serial console's socket (qemu waits for it before starting the guest). */
  private async connectConsole(sockPath: string, deadline: number): Promise<void> {
    const sock = await this.connectSocket(sockPath, deadline, {
      exited: 'qemu exited before its console was connected',
      late: 'qemu did not open its console socket',
    });
    this.consoleSock = sock;
    // Drained (the log has it), so the guest never waits on a full socket.
    sock.on('data', () => {});
    sock.on('error', () => {});
  }

  /** A connection to one of qemu's unix sockets, once qemu has made it (or qemu's end). */
  private async connectSocket(
    sockPath: string,
    deadline: number,
    says: { exited: string; late: string },
  ): Promise<net.Socket> {
    for (;;) {
      if (this.exitInfo) throw this.failure(`${says.exited} (${this.describeExit()})`);
      if (Date.now() > deadline) throw this.failure(says.late);
      if (fs.existsSync(sockPath)) {
        const sock = await new Promise<net.Socket | undefined>((resolve) => {
          const s = net.createConnection(sockPath);
          s.once('connect', () => resolve(s));
          s.once('error', () => {
            s.destroy();
            resolve(undefined);
          });
        });
        if (sock) return sock;
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
    const sock = await this.connectSocket(sockPath, deadline, {
      exited: 'qemu exited during boot',
      late: 'boot timed out waiting for the agent socket',
    });
    this.sock = sock;
    sock.on('data', (d: Buffer) => this.wire.onData(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      if (this.sock === sock) this.sock = undefined;
    });
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
    const id = this.wire.newId();
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
      const stdin = opts.stdin === undefined ? Buffer.alloc(0) : Buffer.from(opts.stdin);
      this.wire.send(sock, id, script, stdin, {
        resolve: (r) => {
          done();
          resolve(r);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      if (!opts.noTimeout) {
        const timeoutMs = opts.timeoutMs ?? 120_000;
        timer = setTimeout(() => {
          if (!this.wire.forget(id)) return;
          const what =
            label ??
            `guest command ${JSON.stringify(script.length > 300 ? `${script.slice(0, 300)}...` : script)}`;
          reject(this.failure(`${what} timed out after ${timeoutMs} ms`));
          if (label !== 'boot') this.killJob(id, 'KILL').catch(() => {});
        }, timeoutMs);
      }
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
