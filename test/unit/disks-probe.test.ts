import { describe, expect, it } from 'vitest';
import { probeDisks } from '../../src/system/disks.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';

describe('the disk probe', () => {
  it("shows systeminformation's lsblk in the transcript (read-only), though the library runs it", async () => {
    const runner = new RecordingRunner();
    await probeDisks(runner).catch(() => null); // a machine without disks still records the probe
    expect(runner.transcript()[0]).toMatch(/^\$ lsblk -bPo NAME,TYPE,SIZE/);
    expect(runner.calls[0]).toMatchObject({ mutates: false, via: 'systeminformation.blockDevices' });
  });
});
