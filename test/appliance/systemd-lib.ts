import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import type { GuestJob } from '../bench/guest-job.js';
import type { DiskSpec } from '../bench/qemu-command.js';
import { systemdBenchInfo } from '../bench/bench-env.js';
import { GOLDEN_SERIAL, SYSTEM_SERIAL, writeConfig } from './lib.js';

// Shared by the systemd flavour's scenarios (test/appliance/systemd.test.ts in the gate, the
// daemon's longer ones in test/appliance-long/): the disks, the prepared golden medium, and waits
// on systemd's and the journal's state.

export const PROTO: DiskSpec = { name: 'proto', sizeMiB: 2048, serial: 'ZS-PROTO' };
export const GOLDEN: DiskSpec = { name: 'golden', sizeMiB: 2048, serial: GOLDEN_SERIAL };
export const SYSTEM: DiskSpec = { name: 'system', sizeMiB: 4096, serial: SYSTEM_SERIAL };
export const DISKS = [GOLDEN, SYSTEM];
export const FROM_GOLDEN = { from: 'disk', disk: 'golden' } as const;
export const FROM_SYSTEM = { from: 'disk', disk: 'system', only: true } as const;
/** The golden medium's config: a countdown long enough for the test to type c at it. */
export const CONFIG = {
  disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } },
  recovery: { countdownSeconds: 10 },
};
/** systemd's "Starting zshield-boot.service" status line (colour codes and the cut name allowed). */
export const STARTING_BOOT_UNIT = /Starting (\x1b\[[\d;]*m)?zshield-boot\.serv/;

/** Copy a disk image into a case's work folder (sparse: the holes stay holes). */
export function copyImage(from: string, workDir: string, disk: DiskSpec): void {
  execFileSync('cp', ['--sparse=always', from, path.join(workDir, `${disk.name}.img`)]);
}

/** A disk image of a work folder, checked to exist (a failed earlier case leaves none). */
export function imageOf(workDir: string, disk: DiskSpec): string {
  const p = path.join(workDir, `${disk.name}.img`);
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: the case that makes it failed`);
  return p;
}

/**
 * The prototype (proto.img, booted by kernel with Debian's initramfs-tools initrd) with the units
 * installed the documented way, turned into a golden medium by `zshield golden prepare` onto a
 * blank disk in `workDir` (golden.img there).
 */
export async function prepareGolden(workDir: string): Promise<void> {
  const sd = systemdBenchInfo();
  execFileSync('cp', ['--sparse=always', sd.protoImage, path.join(workDir, 'proto.img')]);
  const vm = await Appliance.boot({
    workDir,
    disks: [PROTO, ...DISKS],
    boot: { from: 'kernel', kernel: sd.vmlinuz, initrd: sd.initrd },
    appendCmdline: `root=UUID=${sd.protoUuid} rw`,
    timeoutMs: 300_000,
  });
  try {
    await expectSystemd(vm);
    // Installed from the package (setup-systemd.sh: dpkg -i): both enabled; nothing to recover, so
    // zshield-boot finished.
    expect(await vm.shOk('systemctl is-enabled zshield-boot.service zshield.service')).toBe(
      'enabled\nenabled\n',
    );
    expect(await systemState(vm)).toMatch(/^(running|degraded)$/);
    expect(await vm.shOk('journalctl -b -u zshield-boot -o cat')).toContain(
      'zshield boot: no recovery requested',
    );
    await writeConfig(vm, CONFIG);
    const r = await vm.run(['zshield', 'golden', 'prepare', '--target', GOLDEN_SERIAL, '--yes'], {
      timeoutMs: 900_000,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('enable zshield-boot.service and zshield.service');
    await vm.poweroff();
  } finally {
    await vm.kill();
  }
}

/** Wait until systemd has finished booting (running or degraded), and say which. */
export async function systemState(vm: Appliance): Promise<string> {
  const r = await vm.sh('systemctl is-system-running --wait', { timeoutMs: 300_000 });
  return r.stdout.trim();
}

/** PID 1 is systemd, with udevd and journald running. */
export async function expectSystemd(vm: Appliance): Promise<void> {
  expect(await vm.shOk('readlink /proc/1/exe')).toMatch(/\/systemd\n$/);
  expect(await vm.shOk('systemctl is-active systemd-udevd systemd-journald')).toBe('active\nactive\n');
}

/** Wait until `journalctl -u <unit>` of this boot matches. */
export async function waitJournal(
  vm: Appliance,
  unit: string,
  pattern: RegExp,
  timeoutMs = 300_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await vm.shOk(`journalctl -b -u ${unit} -o cat`);
    if (pattern.test(text)) return;
    if (Date.now() > deadline) throw vm.failure(`journalctl -u ${unit} did not show ${pattern}:\n${text}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Wait until a guest job's output matches. */
export async function waitOutput(job: GuestJob, pattern: RegExp, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const o = await job.output();
    if (pattern.test(o.stdout + o.stderr)) return;
    if (job.finished || Date.now() > deadline) {
      throw new Error(`guest job did not print ${pattern}:\n${o.stdout}${o.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
