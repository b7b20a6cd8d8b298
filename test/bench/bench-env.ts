// Where the QEMU bench lives and how it is built (test/bench/setup.sh), for appliance.ts and the tests.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (test/bench/../..). */
export const REPO_ROOT = path.resolve(HERE, '../..');
/** Where setup.sh puts the kernel, the golden root tree and the initramfs. */
export const BENCH_DIR = process.env['BENCH_DIR'] ?? path.join(REPO_ROOT, '.bench');
export const SETUP_SCRIPT = path.join(HERE, 'setup.sh');

// ------------------------------------------------------------------------------------------------
// Building the bench
// ------------------------------------------------------------------------------------------------

interface BenchEnv {
  KERNEL_VERSION: string;
  VMLINUZ: string;
  INITRD: string;
  ROOTFS: string;
  ZSHIELD_BIN: string;
}

function readBenchEnv(): BenchEnv | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(BENCH_DIR, 'bench.env'), 'utf8');
  } catch {
    return undefined;
  }
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1');
  }
  if (!env['VMLINUZ'] || !env['INITRD']) return undefined;
  return env as unknown as BenchEnv;
}

/** Are the kernel and the initramfs built? (Not whether they are up to date: see ensureBench.) */
export function benchReady(): boolean {
  const env = readBenchEnv();
  return env !== undefined && fs.existsSync(env.VMLINUZ) && fs.existsSync(env.INITRD);
}

/** Kernel version, kernel, initramfs and golden root of the built bench. */
export function benchInfo(): {
  kernelVersion: string;
  vmlinuz: string;
  initrd: string;
  rootfs: string;
  zshieldBin: string;
  /** The boot initramfs of disk-booted roots (/boot/initrd.img-<kver> of the golden root). */
  bootInitrd: string;
} {
  const env = readBenchEnv();
  if (!env) throw new Error(`the bench is not built (run ${SETUP_SCRIPT} or ensureBench())`);
  return {
    kernelVersion: env.KERNEL_VERSION,
    vmlinuz: env.VMLINUZ,
    initrd: env.INITRD,
    bootInitrd: path.join(env.ROOTFS, 'boot', `initrd.img-${env.KERNEL_VERSION}`),
    rootfs: env.ROOTFS,
    zshieldBin: env.ZSHIELD_BIN,
  };
}

/** The systemd flavour (test/bench/setup-systemd.sh), once `ensureBench('systemd')` has built it. */
export function systemdBenchInfo(): {
  /** Kernel and initramfs-tools initrd of the Debian tree (for a kernel boot of proto.img). */
  vmlinuz: string;
  initrd: string;
  /** The prototype system's disk image (DOS label, partition 1 = the Debian tree): copy it. */
  protoImage: string;
  /** File system UUID of proto.img's root (`root=UUID=...` on the kernel command line). */
  protoUuid: string;
  rootfs: string;
} {
  let text: string;
  try {
    text = fs.readFileSync(path.join(BENCH_DIR, 'systemd', 'systemd.env'), 'utf8');
  } catch {
    throw new Error(
      `the systemd flavour is not built (run ${SETUP_SCRIPT} systemd or ensureBench('systemd'))`,
    );
  }
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!;
  }
  return {
    vmlinuz: env['SD_VMLINUZ']!,
    initrd: env['SD_INITRD']!,
    protoImage: env['SD_PROTO']!,
    protoUuid: env['SD_PROTO_UUID']!,
    rootfs: env['SD_ROOTFS']!,
  };
}

const ensuring = new Map<string, Promise<void>>();

/**
 * Build or refresh the bench (host packages, kernel, golden root, initramfs) by running setup.sh,
 * which is quick when everything is up to date and holds a lock, so parallel callers build once.
 * Honours ZSHIELD_BIN (default build/out/zshield) and BENCH_DIR.
 */
export function ensureBench(flavour: 'busybox' | 'systemd' = 'busybox'): Promise<void> {
  const running = ensuring.get(flavour);
  if (running) return running;
  const p = (async () => {
    const r = await execa('bash', [SETUP_SCRIPT, ...(flavour === 'systemd' ? ['systemd'] : [])], {
      reject: false,
      all: true,
      timeout: 20 * 60_000,
      env: { BENCH_DIR },
    });
    if (r.exitCode !== 0 || r.timedOut) {
      throw new Error(`bench setup failed (${SETUP_SCRIPT}, exit ${r.exitCode}):\n${tail(r.all ?? '', 60)}`);
    }
  })();
  ensuring.set(flavour, p);
  p.catch(() => {
    if (ensuring.get(flavour) === p) ensuring.delete(flavour);
  });
  return p;
}

/** The last `lines` lines of a text (a console log, a command's output). */
export function tail(text: string, lines: number): string {
  const all = text.split('\n');
  return all.slice(Math.max(0, all.length - lines)).join('\n');
}
