import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance, type DiskSpec, setNextBootEntry } from '../bench/appliance.js';
import { GOLDEN_SERIAL, SYSTEM_SERIAL, freshWorkDir, lv, writeConfig, tag } from '../appliance/lib.js';

// WORK IN PROGRESS, not in the gate (no vitest project includes test/wip/): the power-cut
// scenarios of boot-time recovery. They ran once and timed out (600 s test limit) before the
// per-test timeouts below; make them pass, then move them into test/appliance/recovery.test.ts.
//
// Boot-time recovery through real GRUB: a golden medium made by `zshield golden prepare`, its
// "Recover to factory default" and "Recover to latest backup" entries picked as an operator would
// (grubenv next_entry, what grub-reboot does), the system disk booting on its own. The power-cut
// scenarios are in test/wip/power-cut.test.ts until they pass (not part of the gate yet).

const GOLDEN: DiskSpec = { name: 'golden', sizeMiB: 2048, serial: GOLDEN_SERIAL };
const SYSTEM: DiskSpec = { name: 'system', sizeMiB: 4096, serial: SYSTEM_SERIAL };
const disks = [GOLDEN, SYSTEM];
const fromGolden = { from: 'disk', disk: 'golden' } as const;
const fromSystem = { from: 'disk', disk: 'system', only: true } as const;

/** What a system disk must look like after it booted on its own. */
async function expectBootedFromLvm(vm: Appliance): Promise<void> {
  expect((await vm.shOk("grep ' / ' /proc/mounts")).split(' ')[0]).toBe('/dev/mapper/vgroup-lv--root');
  // The kernel that booted matches the modules in the root it booted.
  expect((await vm.sh('test -d "/lib/modules/$(uname -r)"')).code).toBe(0);
}

describe('power cuts during recovery', () => {
  let workDir: string;
  let vm: Appliance | undefined;

  beforeAll(async () => {
    workDir = freshWorkDir('power-cut');
    const proto = await Appliance.boot({ workDir, disks });
    await writeConfig(proto, {
      disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } },
      recovery: { countdownSeconds: 2 },
    });
    const r = await proto.run(['zshield', 'golden', 'prepare', '--target', GOLDEN_SERIAL, '--yes'], {
      timeoutMs: 900_000,
    });
    expect(r.code, r.stderr).toBe(0);
    await proto.poweroff();
  });
  afterAll(async () => {
    await vm?.kill();
  });

  it("a power cut during the factory reset's copy: the next boot runs it again and the disk boots", {
    timeout: 1_800_000,
  }, async () => {
    setNextBootEntry(workDir, 'golden', 'zshield-factory');
    const cut = await Appliance.boot({ workDir, disks, boot: fromGolden, timeoutMs: 300_000 });
    await cut.waitForConsole(/copy the golden root into the new root/, 600_000);
    await cut.kill();
    // An ordinary boot of the golden medium (next_entry was used up) finds the mark and finishes.
    const log = await Appliance.bootUntilExit({ workDir, disks, boot: fromGolden, timeoutMs: 900_000 });
    expect(log).toContain('a factory reset was interrupted (power cut?): running it again');
    expect(log).toMatch(/factory reset done in \d+ s/);
    vm = await Appliance.boot({ workDir, disks, boot: fromSystem });
    await expectBootedFromLvm(vm);
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('factory');
    expect((await vm.sh('test -e /data/user-file')).code).not.toBe(0);
  });

  it("a power cut during the merge: the system disk's next boot finishes the restore", {
    timeout: 1_800_000,
  }, async () => {
    const sys = vm!;
    // Enough changed blocks that the merge takes a while.
    await sys.shOk('dd if=/dev/urandom of=/opt/big bs=1M count=120 2>/dev/null; sync', {
      timeoutMs: 300_000,
    });
    await sys.poweroff();
    setNextBootEntry(workDir, 'golden', 'zshield-latest');
    const cut = await Appliance.boot({ workDir, disks, boot: fromGolden, timeoutMs: 300_000 });
    await cut.waitForConsole(/merge snap0 into lv-root/, 600_000);
    await cut.kill();
    // The system disk boots (the merge continues on activation); its boot hook finishes the job and reboots.
    const log = await Appliance.bootUntilExit({ workDir, disks, boot: fromSystem, timeoutMs: 900_000 });
    expect(log).toMatch(/a restore was interrupted or deferred: finishing it/);
    expect(log).toMatch(/restore done/);
    vm = await Appliance.boot({ workDir, disks, boot: fromSystem });
    await expectBootedFromLvm(vm);
    expect((await vm.sh('test -e /opt/big')).code).not.toBe(0);
    expect(tag(await lv(vm, 'snap0'), 'reason')).toBe('post-restore');
    const status = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(status.recoveryPending).toBeNull();
    await vm.poweroff();
  });
});
