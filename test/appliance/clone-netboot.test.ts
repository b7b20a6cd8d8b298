// The unattended fleet flash (issue 24): two QEMU boxes behind ipmi_sim BMCs, blank disks, boot
// order network first then disk, on a LAN in a hub namespace (test/bench/netboot.ts). `zshield
// clone rescue make` builds the rescue from the bench's kernel; `zshield clone send --netboot`
// powers the boxes through ipmitool, they PXE-boot the rescue, receive the golden image over
// multicast, verify, are power-cycled and boot the released image through its own GRUB from their
// disks (the bench system's BENCH-READY on their serial consoles).
import { describe, expect, it } from 'vitest';
import { benchInfo } from '../bench/bench-env.js';
import { benchChainInput, runChain } from '../bench/netboot.js';
import { packagedGolden } from './golden-fixture.js';
import { emptyAllButLogs, freshWorkDir } from './lib.js';

describe('clone send --netboot', () => {
  it('powers two boxes through their BMCs, PXE-boots the rescue, writes both disks identical to the image, cycles them, and both boot the image from disk', {
    timeout: 1_800_000,
  }, async () => {
    const workDir = freshWorkDir('clone-netboot');
    try {
      const golden = await packagedGolden(workDir);
      const info = benchInfo();
      const r = await runChain({ ...benchChainInput(workDir, golden, info), count: 2 });
      console.log(
        `${r.senderOut}\nclone-netboot: ${JSON.stringify({ rescueBytes: r.rescueBytes, seconds: r.seconds })}`,
      );
      expect(r.senderCode, r.senderOut).toBe(0);
      for (const name of ['box1', 'box2']) {
        expect(r.senderOut).toMatch(
          new RegExp(`^${name}\\s+\\S+\\s+yes\\s+yes\\s+(complete|dropped)\\s+\\d+\\s+yes\\s+yes$`, 'm'),
        );
      }
      for (const d of r.disks) {
        expect(d.sha256, d.name).toBe(golden.manifest.sha256);
        expect(d.bootedSystem, `${d.name}:\n${d.console.slice(-3000)}`).toBe(true);
        // Network first: the rescue, then (after the cycle) the firmware's next device, the disk.
        expect(d.console).toMatch(/zshield-rescue: zshield fetched and checked/);
        expect(d.console).toMatch(/zshield: booting from the local disk[\s\S]*Booting from Hard Disk/);
      }
    } finally {
      emptyAllButLogs(workDir);
    }
  });
});
