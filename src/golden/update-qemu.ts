import { existsSync } from 'node:fs';
import type { Runner } from '../system/runner.js';
import { HANDOFF_SERIAL } from '../names/golden-update.js';

/** QEMU command lines of `golden update`: argument arrays, one builder per boot. */

export type Accel = 'kvm' | 'tcg';

export interface VmDisks {
  /** The working copy of the raw golden image: the guest's first disk (its GRUB says vda1). */
  image: string;
  handoff: string;
}

export interface DirectKernel {
  kernel: string;
  initrd?: string;
  append: string;
}

export const QEMU = 'qemu-system-x86_64';

/** TCG: -cpu max and one CPU (two were not faster under emulation and hung once in ~40 boots). */
export function machineArgs(accel: Accel, memMiB = 1024): string[] {
  return [
    '-accel',
    accel,
    '-cpu',
    accel === 'kvm' ? 'host' : 'max',
    '-smp',
    '1',
    '-m',
    String(memMiB),
    '-display',
    'none',
    '-monitor',
    'none',
    '-nic',
    'none',
    '-no-reboot',
  ];
}

function diskArgs(d: VmDisks): string[] {
  return [
    '-drive',
    `file=${d.image},format=raw,if=none,id=golden,cache=writeback`,
    '-device',
    'virtio-blk-pci,drive=golden',
    '-drive',
    `file=${d.handoff},format=raw,if=none,id=handoff,cache=writeback`,
    '-device',
    `virtio-blk-pci,drive=handoff,serial=${HANDOFF_SERIAL}`,
  ];
}

/** The update boot: the image's own kernel and initrd, its own arguments plus the update key. */
export function updateBootArgs(accel: Accel, d: VmDisks, k: DirectKernel, consoleLog: string): string[] {
  return [
    ...machineArgs(accel),
    '-serial',
    `file:${consoleLog}`,
    '-kernel',
    k.kernel,
    ...(k.initrd ? ['-initrd', k.initrd] : []),
    '-append',
    k.append,
    ...diskArgs(d),
  ];
}

/**
 * The proof boot: firmware, then the image's own GRUB from its MBR. -snapshot: the guest's writes
 * (GRUB's recordfail in grubenv, for one) go to a throw-away overlay, so the bytes packaged are the
 * bytes that booted.
 */
export function proofBootArgs(accel: Accel, d: VmDisks, consoleLog: string): string[] {
  return [...machineArgs(accel), '-serial', `file:${consoleLog}`, '-boot', 'c', '-snapshot', ...diskArgs(d)];
}

/** A kernel with no root: it panics at once and panic=-1 makes QEMU (-no-reboot) exit. */
export function trialBootArgs(kernel: string, consoleLog: string): string[] {
  return [
    ...machineArgs('kvm', 256),
    '-serial',
    `file:${consoleLog}`,
    '-kernel',
    kernel,
    '-append',
    'console=ttyS0 panic=-1',
  ];
}

export const qemuCommand = (args: string[], timeoutSeconds: number) => ({
  file: QEMU,
  args,
  mutates: true,
  timeoutMs: timeoutSeconds * 1000,
});

/**
 * KVM only when a trial boot with it ends by itself: on some hosts /dev/kvm exists but a guest hangs
 * on it. The trial is bounded; anything but a clean exit means software emulation.
 */
export async function detectAccel(
  runner: Runner,
  kernel: string,
  consoleLog: string,
  opts: { devKvm?: string; trialSeconds?: number } = {},
): Promise<{ accel: Accel; why: string }> {
  if (!existsSync(opts.devKvm ?? '/dev/kvm')) return { accel: 'tcg', why: 'no /dev/kvm' };
  const trial = qemuCommand(trialBootArgs(kernel, consoleLog), opts.trialSeconds ?? 30);
  const r = await runner.run(trial).catch((err: Error) => ({ exitCode: -1, stderr: err.message }));
  if (r.exitCode === 0) return { accel: 'kvm', why: 'a trial boot with KVM ended by itself' };
  return {
    accel: 'tcg',
    why: `a trial boot with KVM failed or hung (${r.stderr.trim().split('\n').at(-1) ?? ''})`,
  };
}
