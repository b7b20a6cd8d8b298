// The main job of zshield on a virtual appliance, told as it goes. Run by build/demo.sh.
//
//  1. A prototype system (the bench's root) becomes a golden medium: `zshield golden prepare`.
//  2. The OEM boots the golden medium and picks "Recover to factory default" in its GRUB menu:
//     the blank system disk is partitioned, LVM made, the golden root copied, GRUB installed,
//     the first restore point taken; the appliance reboots.
//  3. The system disk boots on its own, through its own GRUB, into root on LVM.
//  4. A backup (what the daily daemon and zshield_backup do), then a "bad upgrade" changes the root.
//  5. The operator picks "Recover to latest backup": lv-root is merged back, /boot put back, a new
//     restore point taken; user data (lv-data) untouched.
//  6. The system disk boots again: the change is gone, the user's file is still there.
import path from 'node:path';
import { Appliance } from '../test/bench/appliance.js';
import { BENCH_DIR } from '../test/bench/bench-env.js';
import { setNextBootEntry } from '../test/bench/disk-images.js';

const GOLDEN = { name: 'golden', sizeMiB: 2048, serial: 'ZS-GOLDEN-CF' };
const SYSTEM = { name: 'system', sizeMiB: 4096, serial: 'ZS-SYSTEM-HDD' };
const workDir = path.join(BENCH_DIR, 'work', 'demo');

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const say = (s: string) => console.log(`\n${bold(`== ${s}`)}`);
const show = (label: string, text: string) => {
  console.log(`${label}`);
  for (const l of text.trimEnd().split('\n')) console.log(`   ${l}`);
};

async function run(vm: Appliance, script: string, timeoutMs = 600_000): Promise<string> {
  console.log(`   $ ${script}`);
  const r = await vm.sh(`${script} 2>&1`, { timeoutMs });
  for (const l of r.stdout.trimEnd().split('\n')) if (l) console.log(`     ${l}`);
  if (r.code !== 0) throw vm.failure(`"${script}" exited ${r.code}`);
  return r.stdout;
}

/** The lines zshield printed on the console during an unattended boot. */
function zshieldLines(consoleLog: string): string {
  return consoleLog
    .split('\n')
    .filter((l) => !/^\[\s*\d+\.\d+\]/.test(l) && l.trim() && !/BENCH|agent/.test(l))
    .slice(-60)
    .join('\n');
}

/**
 * The boot hook (rc.local) starts the daemon in the background as the system disk comes up, so a
 * `zshield status` run right after boot would race it: wait until status itself reports the daemon
 * running. The bound only stops a daemon that never starts from hanging the demo.
 */
async function waitForDaemon(vm: Appliance, timeoutMs = 180_000): Promise<void> {
  console.log('   (waiting until the boot hook has started the daemon)');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await vm.run(['zshield', 'status', '--json'], { timeoutMs });
    if (r.code === 0 && (JSON.parse(r.stdout) as { daemon: { running: boolean } }).daemon.running) return;
    if (Date.now() > deadline)
      throw vm.failure(`the daemon was not running ${timeoutMs / 1000} s after boot`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

const disks = [GOLDEN, SYSTEM];

/** Pick an entry of the golden medium's GRUB menu for one boot (what grub-reboot does) and boot it to the end. */
async function bootGoldenEntry(entry: 'zshield-factory' | 'zshield-latest'): Promise<void> {
  setNextBootEntry(workDir, 'golden', entry);
  const log = await Appliance.bootUntilExit({
    workDir,
    disks,
    boot: { from: 'disk', disk: 'golden' },
    timeoutMs: 900_000,
  });
  show('   console of that boot (zshield lines):', zshieldLines(log));
}

async function main(): Promise<void> {
  const { rmSync, mkdirSync } = await import('node:fs');
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  const t0 = Date.now();

  say('1. The prototype system becomes a golden medium');
  let vm = await Appliance.boot({ workDir, disks });
  console.log(`   (the prototype booted in ${(vm.bootMs / 1000).toFixed(1)} s under QEMU)`);
  await vm.writeFile(
    '/etc/zshield/zshield.conf',
    JSON.stringify(
      {
        disks: { golden: { serial: GOLDEN.serial }, system: { serial: SYSTEM.serial } },
        recovery: { countdownSeconds: 3 },
      },
      null,
      2,
    ),
  );
  await run(vm, 'zshield golden prepare --target ZS-GOLDEN-CF --yes');
  await vm.poweroff();

  say('2. The OEM boots the golden medium and picks "Recover to factory default"');
  await bootGoldenEntry('zshield-factory');

  say('3. The system disk boots on its own, through its own GRUB, into root on LVM');
  vm = await Appliance.boot({ workDir, disks, boot: { from: 'disk', disk: 'system' } });
  await run(vm, "grep ' / ' /proc/mounts");
  await waitForDaemon(vm);
  await run(vm, 'zshield status');

  say('4. A backup before an upgrade, then the upgrade goes wrong');
  await run(vm, 'echo "user data written before the upgrade" > /data/user-file');
  await run(vm, 'zshield_backup');
  await run(
    vm,
    'echo "BROKEN by a bad upgrade" > /etc/motd; mkdir -p /opt/junk; echo junk > /opt/junk/file; sync',
  );
  await run(vm, 'cat /etc/motd');
  await vm.poweroff();

  say('5. The operator picks "Recover to latest backup" in the golden medium\'s menu');
  await bootGoldenEntry('zshield-latest');

  say('6. The system disk boots again: the bad upgrade is gone, the user data is not');
  vm = await Appliance.boot({ workDir, disks, boot: { from: 'disk', disk: 'system' } });
  await run(vm, 'cat /etc/motd 2>/dev/null || echo "(no /etc/motd: as before the upgrade)"');
  await run(vm, 'ls /opt/junk 2>/dev/null || echo "(no /opt/junk)"');
  await run(vm, 'cat /data/user-file');
  await waitForDaemon(vm);
  await run(vm, 'zshield status');
  await vm.poweroff();
  say(`Done in ${Math.round((Date.now() - t0) / 1000)} s.`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
