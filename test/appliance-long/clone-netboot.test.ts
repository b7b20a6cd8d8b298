// The netboot session's failure cases (issue 24; the two-box case is test/appliance/
// clone-netboot.test.ts, in the gate), each a chain of test/bench/netboot.ts under TCG (4-8 min):
// `vitest run --project appliance-long test/appliance-long/clone-netboot.test.ts`.
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { benchInfo } from '../bench/bench-env.js';
import { benchChainInput, type ChainInput, runChain } from '../bench/netboot.js';
import { packagedGolden } from '../appliance/golden-fixture.js';
import { emptyAllButLogs, freshWorkDir } from '../appliance/lib.js';
import { writeNewSigningKey } from '../../src/system/signing.js';
import { REAL_WRITES } from '../../src/system/writes.js';

async function chain(name: string, extra: Partial<ChainInput> & { count: number }) {
  const workDir = freshWorkDir(name);
  const golden = await packagedGolden(workDir);
  const info = benchInfo();
  const input: ChainInput = { ...benchChainInput(workDir, golden, info), ...extra };
  try {
    const r = await runChain(input);
    console.log(`${r.senderOut}\n${name}: ${JSON.stringify(r.seconds)}`);
    return { r, golden, workDir };
  } finally {
    emptyAllButLogs(workDir);
  }
}

describe('clone send --netboot, failure cases', () => {
  it('a box on the same LAN whose MAC is not listed gets no DHCP answer, boots its own disk, and its disk is unchanged', {
    timeout: 1_800_000,
  }, async () => {
    const { r, golden } = await chain('clone-netboot-unlisted', { count: 1, unlisted: true });
    expect(r.senderCode, r.senderOut).toBe(0);
    expect(r.disks[0]!.sha256).toBe(golden.manifest.sha256);
    const u = r.unlisted!;
    expect(u.sha256).toBe(u.sha256Before);
    expect(u.bootedSystem, u.console.slice(-3000)).toBe(true);
    expect(u.console).not.toMatch(/zshield-rescue/);
    expect(r.senderOut).not.toMatch(/52:54:00:18:00:99/);
  });

  it('a box whose receiver loses the stream (its network cut for 40 s) is repaired by unicast and ends identical', {
    timeout: 1_800_000,
  }, async () => {
    const { r, golden } = await chain('clone-netboot-cut', {
      count: 2,
      cutNetworkOf: 'box2',
      retriesUntilDrop: 30,
    });
    expect(r.senderCode, r.senderOut).toBe(0);
    for (const d of r.disks) expect(d.sha256, d.name).toBe(golden.manifest.sha256);
    const row = /^box2\s+\S+\s+yes\s+yes\s+dropped\s+([1-9]\d*)\s+yes\s+yes$/m;
    expect(r.senderOut).toMatch(row);
  });

  it('a rescue that trusts another key refuses the session and writes nothing; the sender exits non-zero naming the box', {
    timeout: 1_800_000,
  }, async () => {
    const other = await writeNewSigningKey(
      REAL_WRITES,
      path.join(tmpdir(), `zshield-other-${process.pid}.key`),
    );
    const { r, golden } = await chain('clone-netboot-wrong-key', {
      count: 1,
      rescueKey: other.publicText,
      senderArgs: ['--repair-window', '90'],
    });
    expect(r.senderCode).not.toBe(0);
    const zeros = spawnSync('sh', ['-c', `head -c ${golden.manifest.size} /dev/zero | sha256sum`], {
      encoding: 'utf8',
    }).stdout.slice(0, 64);
    expect(r.disks[0]!.sha256).toBe(zeros);
    expect(r.disks[0]!.console).toMatch(
      /clone header: image manifest: signed by key \S+, which is not a trusted key/,
    );
    expect(r.senderOut).toMatch(/box1 \(/);
    rmSync(path.join(tmpdir(), `zshield-other-${process.pid}.key`), { force: true });
  });
});
