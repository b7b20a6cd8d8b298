import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { copyFile, mkdir, readFile, realpath, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { asset, singleExecutable } from '../../assets.js';
import type { Context } from '../../context.js';
import { formatBytes } from '../../config/size.js';
import { MissingToolError, NotFoundError, RefusedError, UsageError } from '../../errors.js';
import type { Plan } from '../../plan/plan.js';
import { runPlan } from '../../plan/run.js';
import { type CpioEntry, cpioArchive } from '../../system/cpio.js';
import { sharedLibraries } from '../../system/ldd.js';
import { parsePublicKey } from '../../system/signing.js';
import { DISK_MODULES, type ModulePlan, NIC_MODULES, hasNetworkDriver, planModules } from './modules.js';
import { RESCUE_FILES, type RescueManifest } from './names.js';

export interface RescueMakeOptions {
  out: string;
  /** Trusted public keys (ed25519:...) or files holding one. */
  keys: string[];
  /** A kernel version installed here (/boot/vmlinuz-V, /lib/modules/V), or a folder holding boot/ and lib/modules/ (an unpacked kernel package). */
  kernel: string;
  /** The zshield binary the rescue fetches (default: this one, when it is the single executable). */
  zshield?: string;
  /** More modules to load (a NIC or disk controller driver not in the default lists). */
  modules?: string[];
}

/** The programs `clone receive` runs in the rescue, beside busybox's applets. */
const TOOLS = ['udp-receiver', 'lsblk', 'blockdev'] as const;

interface Gathered {
  keys: string[];
  vmlinuz: string;
  kernelVersion: string;
  modulesDir: string;
  modules: ModulePlan;
  busybox: string;
  tools: Map<string, string>;
  /** Every shared library the tools and zshield load, by the path the programs ask for it. */
  libraries: string[];
  zshield: string;
  zshieldSha256: string;
  zshieldSize: number;
}

/**
 * `clone rescue make OUT`: a kernel and an initramfs a box network-boots to be written. The
 * initramfs holds busybox, the drivers, udp-receiver, lsblk and blockdev with their libraries, the
 * libraries of zshield, the trusted keys and the SHA-256 of the zshield binary; the binary itself
 * (~110 MB) is fetched by the rescue over HTTP and checked against that hash, so the initramfs
 * stays a few MB. OUT holds vmlinuz, initramfs.img, zshield and rescue.json (what `clone send
 * --netboot --rescue OUT` serves).
 */
export async function runRescueMake(ctx: Context, opts: RescueMakeOptions): Promise<RescueManifest | null> {
  const out = path.resolve(opts.out);
  const zshield = opts.zshield ?? singleExecutable();
  if (!zshield) {
    throw new UsageError(
      '--zshield BINARY: run from source, there is no single executable to put in the rescue',
    );
  }
  if (opts.keys.length === 0)
    throw new UsageError('--key PUB: the rescue accepts sessions signed by these keys only');
  const g: Partial<Gathered> = {};
  let manifest: RescueManifest | null = null;
  const files = Object.values(RESCUE_FILES).map((f) => path.join(out, f));
  const plan: Plan = {
    title: `Make a network rescue in ${out} (kernel ${opts.kernel})`,
    notes: [
      'the initramfs holds busybox, the network and disk drivers, udp-receiver, lsblk, blockdev and their libraries, the libraries of zshield, the trusted keys and the SHA-256 of the zshield binary',
      'the rescue fetches the zshield binary from the server after boot and runs it only when its SHA-256 matches',
    ],
    checks: [
      {
        title: 'the trusted keys parse (ed25519:...)',
        run: async () => {
          g.keys = await readKeys(opts.keys);
        },
      },
      {
        title: `the kernel ${opts.kernel}: vmlinuz, lib/modules with modules.dep, a network driver`,
        run: async () => Object.assign(g, await findKernel(opts.kernel, opts.modules ?? [])),
      },
      {
        title: `busybox, ${TOOLS.join(', ')} and ldd are here; the libraries of each and of ${zshield}`,
        run: async () => Object.assign(g, await findPrograms(ctx, zshield)),
      },
      {
        title: `${out} is a new or empty folder, or a rescue made before`,
        run: () => refuseForeignFolder(out),
      },
    ],
    steps: [
      {
        title: `write ${RESCUE_FILES.kernel}, ${RESCUE_FILES.initramfs}, ${RESCUE_FILES.zshield} and ${RESCUE_FILES.manifest} into ${out}`,
        edit: {
          files,
          apply: async () => {
            manifest = await writeRescue(ctx, out, g as Gathered);
          },
        },
      },
    ],
  };
  const run = await runPlan(ctx, plan, { confirm: 'none' });
  return run.applied ? manifest : null;
}

async function readKeys(given: readonly string[]): Promise<string[]> {
  const keys: string[] = [];
  for (const k of given) {
    const text = k.startsWith('ed25519:') ? k : (await readFile(k, 'utf8').catch(() => '')).trim();
    if (!text)
      throw new NotFoundError(`--key ${k}: neither a public key (ed25519:...) nor a file holding one`);
    parsePublicKey(text, `--key ${k}`);
    keys.push(text);
  }
  return keys;
}

async function findKernel(kernel: string, extra: readonly string[]) {
  const isDir = existsSync(kernel) && statSync(kernel).isDirectory();
  const bootDir = isDir ? path.join(kernel, 'boot') : '/boot';
  const version = isDir
    ? (readdirSync(bootDir)
        .find((f) => f.startsWith('vmlinuz-'))
        ?.slice('vmlinuz-'.length) ?? '')
    : kernel.replace(/^linux-image-/, '');
  const vmlinuz = path.join(bootDir, `vmlinuz-${version}`);
  const modulesDir = path.join(isDir ? kernel : '/', 'lib/modules', version);
  if (!version || !existsSync(vmlinuz)) throw new NotFoundError(`no kernel ${vmlinuz}`);
  const depText = await readFile(path.join(modulesDir, 'modules.dep'), 'utf8').catch(() => null);
  if (depText === null) throw new NotFoundError(`no ${modulesDir}/modules.dep (the kernel's modules)`);
  const builtinText = await readFile(path.join(modulesDir, 'modules.builtin'), 'utf8').catch(() => '');
  const modules = planModules([...NIC_MODULES, ...DISK_MODULES, ...extra], depText, builtinText);
  if (!hasNetworkDriver(modules)) {
    throw new RefusedError(`kernel ${version} has none of the network drivers ${NIC_MODULES.join(', ')}`, {
      hint: 'name the driver of the boxes’ NIC with --module',
    });
  }
  const compressed = modules.load.find((f) => !f.endsWith('.ko'));
  if (compressed)
    throw new RefusedError(`${compressed}: compressed modules are not supported (busybox insmod)`);
  return { vmlinuz, kernelVersion: version, modulesDir, modules };
}

async function findPrograms(ctx: Context, zshield: string) {
  const need = async (tool: string) => {
    const p = await ctx.runner.which(tool);
    if (!p) throw new MissingToolError(tool);
    return p;
  };
  const busybox = await need('busybox');
  await need('ldd');
  const tools = new Map<string, string>();
  for (const t of TOOLS) tools.set(t, await need(t));
  if (!existsSync(zshield)) throw new NotFoundError(`zshield binary ${zshield} does not exist`);
  const libraries: string[] = [];
  for (const prog of [busybox, ...tools.values(), zshield]) {
    for (const lib of await sharedLibraries(ctx.runner, prog))
      if (!libraries.includes(lib)) libraries.push(lib);
  }
  const data = await readFile(zshield);
  return {
    busybox,
    tools,
    libraries,
    zshield,
    zshieldSha256: createHash('sha256').update(data).digest('hex'),
    zshieldSize: data.length,
  };
}

function refuseForeignFolder(out: string): void {
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) throw new RefusedError(`${out} exists and is not a folder`);
  const ours = new Set<string>(Object.values(RESCUE_FILES));
  const foreign = readdirSync(out).filter((f) => !ours.has(f) && !f.endsWith('.tmp'));
  if (foreign.length > 0) {
    throw new RefusedError(
      `${out} holds other files (${foreign.slice(0, 3).join(', ')}): give a new or empty folder`,
    );
  }
}

/** Parent folders of a path inside the archive, each once, before the path. */
function withParents(entries: CpioEntry[], seen: Set<string>, p: string): void {
  const parts = p.replace(/^\/+/, '').split('/').slice(0, -1);
  for (let i = 1; i <= parts.length; i++) {
    const dir = parts.slice(0, i).join('/');
    if (!seen.has(dir)) {
      seen.add(dir);
      entries.push({ kind: 'dir', path: dir });
    }
  }
}

async function initramfsEntries(g: Gathered): Promise<CpioEntry[]> {
  const entries: CpioEntry[] = [];
  const seen = new Set<string>();
  const file = async (at: string, from: string | Buffer, mode = 0o644) => {
    withParents(entries, seen, at);
    entries.push({
      kind: 'file',
      path: at,
      data: typeof from === 'string' ? await readFile(from) : from,
      mode,
    });
  };
  for (const d of ['dev', 'proc', 'sys', 'run', 'tmp', 'bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc/zshield']) {
    withParents(entries, seen, `${d}/x`);
  }
  // The kernel opens /dev/console for init's stdio before any devtmpfs is mounted.
  entries.push({ kind: 'chardev', path: 'dev/console', major: 5, minor: 1 });
  await file('init', Buffer.from(asset('rescueInit')), 0o755);
  await file('bin/busybox', g.busybox, 0o755);
  for (const [name, from] of g.tools) await file(`usr/bin/${name}`, from, 0o755);
  // Libraries where the programs look for them (the loader's path is written into each program).
  for (const lib of g.libraries) await file(lib, await realpath(lib), 0o755);
  for (const m of g.modules.load) await file(`lib/modules/${m}`, path.join(g.modulesDir, m));
  await file('etc/zshield-rescue/modules', Buffer.from(`${g.modules.load.join('\n')}\n`));
  await file('etc/zshield-rescue/zshield.sha256', Buffer.from(`${g.zshieldSha256}\n`));
  await file('etc/zshield-rescue/udhcpc', Buffer.from(asset('rescueUdhcpc')), 0o755);
  // The receive's config: the trusted keys; the log on the console only (there is no disk to keep it).
  const conf = { log: { file: null }, clone: { trustedKeys: g.keys } };
  await file('etc/zshield/zshield.conf', Buffer.from(`${JSON.stringify(conf, null, 2)}\n`), 0o600);
  return entries;
}

async function writeRescue(ctx: Context, out: string, g: Gathered): Promise<RescueManifest> {
  await mkdir(out, { recursive: true });
  const initramfs = gzipSync(cpioArchive(await initramfsEntries(g)), { level: 6 });
  const put = async (name: string, write: (tmp: string) => Promise<void>) => {
    const tmp = path.join(out, `${name}.tmp`);
    await write(tmp);
    await rename(tmp, path.join(out, name));
  };
  await put(RESCUE_FILES.kernel, (t) => copyFile(g.vmlinuz, t));
  await put(RESCUE_FILES.initramfs, (t) => writeFile(t, initramfs));
  await put(RESCUE_FILES.zshield, (t) => copyFile(g.zshield, t));
  const sha = async (f: string) =>
    createHash('sha256')
      .update(await readFile(path.join(out, f)))
      .digest('hex');
  const manifest: RescueManifest = {
    kernelVersion: g.kernelVersion,
    kernelSha256: await sha(RESCUE_FILES.kernel),
    initramfsSha256: createHash('sha256').update(initramfs).digest('hex'),
    initramfsBytes: initramfs.length,
    zshieldSha256: g.zshieldSha256,
    zshieldBytes: g.zshieldSize,
    trustedKeys: g.keys,
    modules: g.modules.load,
    absentModules: g.modules.absent,
  };
  await put(RESCUE_FILES.manifest, (t) => writeFile(t, `${JSON.stringify(manifest, null, 2)}\n`));
  ctx.out.print(
    `rescue in ${out}: kernel ${g.kernelVersion}, initramfs ${formatBytes(initramfs.length)} (${g.modules.load.length} modules), zshield ${formatBytes(g.zshieldSize)} fetched after boot`,
  );
  return manifest;
}
