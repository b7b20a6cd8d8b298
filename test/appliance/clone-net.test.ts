// Multicast cloning onto a box: the golden medium made by `zshield golden prepare`, packaged as a
// signed golden image, is sent by `zshield clone send` (the single executable, on the host, in a
// network namespace of a LAN the test makes) and received by `zshield clone receive` in a QEMU
// guest on a tap device on that LAN's bridge (QEMU user networking carries no multicast) onto a
// blank disk. The written disk then boots on its own, through its own GRUB, as a golden medium.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import { benchInfo } from '../bench/bench-env.js';
import { type Lan, type Proc, makeLan, runIn } from '../host/netns.js';
import { GOLDEN_MEDIUM_MiB, packagedGolden } from './golden-fixture.js';
import { freshWorkDir } from './lib.js';

const workDir = freshWorkDir('clone-net');
const BLANK_SERIAL = 'ZS-CLONE-BLANK';
/** The guest's address on the test's LAN (the sender namespace is 198.18.0.1). */
const GUEST = '198.18.0.200';
const disks = [{ name: 'blank', sizeMiB: GOLDEN_MEDIUM_MiB, serial: BLANK_SERIAL }];
const ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C',
};

/** SHA-256 of the first `size` bytes of a file, read in pieces (the disk is GiBs). */
async function sha256Head(file: string, size: number): Promise<string> {
  const h = createHash('sha256');
  for await (const piece of fs.createReadStream(file, { start: 0, end: size - 1 })) h.update(piece);
  return h.digest('hex');
}

describe('clone over multicast to a box booted from a rescue system', () => {
  let lan: Lan | undefined;
  let sender: Proc | undefined;
  let vm: Appliance | undefined;

  afterAll(async () => {
    await vm?.kill();
    const s = sender?.child;
    if (s && s.exitCode === null && s.signalCode === null) {
      process.kill(-s.pid!, 'SIGKILL');
      await sender!.exited;
    }
    lan?.destroy();
    fs.rmSync(path.join(workDir, 'blank.img'), { force: true });
  });

  it('the golden medium made by golden prepare is received onto a blank disk over udpcast, verified, identical to the image, and boots through its own GRUB as a golden medium', {
    timeout: 900_000,
  }, async () => {
    const golden = await packagedGolden(workDir);
    const m = golden.manifest;
    const started = Date.now();
    lan = makeLan(['s']);
    const tap = lan.addTap();
    const config = path.join(workDir, 'sender.conf');
    fs.writeFileSync(
      config,
      JSON.stringify({
        log: { file: null },
        clone: {
          trustedKeys: [golden.key.publicText],
          signingKey: golden.keyFile,
          send: { maxWaitSeconds: 600, repairWindowSeconds: 600 },
        },
      }),
    );

    vm = await Appliance.boot({
      workDir,
      disks,
      network: { kind: 'tap', netns: lan.hub, tap, address: `${GUEST}/24` },
    });
    await vm.writeFile(
      '/etc/zshield/zshield.conf',
      JSON.stringify({ clone: { trustedKeys: [golden.key.publicText] } }),
    );
    sender = runIn(
      lan.ns('s'),
      // The guest writes under emulation and its udp-receiver stops answering for many seconds at
      // a time; 30 unanswered requests (the default) drop it and leave the rest to repair. A patient
      // sender keeps the whole image on the multicast path, which is what this scenario shows. The
      // cap: uncapped, the sender outran the guest (43,000 retransmissions, each costing the
      // emulated CPU, receive 88-100 s); at 40 Mbit/s 192 and 64 s.
      [
        benchInfo().zshieldBin,
        '-c',
        config,
        'clone',
        'send',
        golden.image,
        '--min-receivers',
        '1',
        '--retries-until-drop',
        '1000',
        '--max-bitrate',
        '40m',
      ],
      ENV,
    );
    const rx = await vm.run(
      ['zshield', 'clone', 'receive', '--target', BLANK_SERIAL, '--yes', '--name', 'box-1'],
      {
        timeoutMs: 600_000,
      },
    );
    console.log(`--- receiver ---\n${rx.stdout}${rx.stderr}\n--- sender ---\n${sender.out()}`);
    expect(rx.code, `${rx.stdout}\n${rx.stderr}\n--- sender ---\n${sender.out()}`).toBe(0);
    const line = rx.stdout.split('\n').find((l) => l.startsWith('REPORT '));
    const report = JSON.parse(line!.slice('REPORT '.length));
    expect(report).toMatchObject({
      name: 'box-1',
      result: 'verified',
      badChunks: [],
      chunks: m.chunks.length,
    });
    expect(rx.stdout).toMatch(/^clone verified: box@1\.0 on \/dev\/vda /m);
    expect(await sender.exited, sender.out()).toBe(0);
    expect(sender.out()).toMatch(
      new RegExp(`^${GUEST.replaceAll('.', '\\.')}\\s+box-1\\s+complete\\s+verified\\s`, 'm'),
    );
    await vm.poweroff();
    const received = Date.now();

    expect(await sha256Head(vm.diskPath('blank'), m.size)).toBe(m.sha256);

    vm = await Appliance.boot({ workDir, disks, boot: { from: 'disk', disk: 'blank', only: true } });
    const root = (await vm.shOk("grep ' / ' /proc/mounts")).split(' ');
    expect(root[0]).toBe('/dev/vda1');
    expect(root[3]).toMatch(/^ro\b/);
    const menu = await vm.shOk('cat /boot/grub/grub.cfg');
    expect(menu).toMatch(/menuentry 'Recover to factory default' --class recovery --id zshield-factory/);
    expect(menu).toMatch(/menuentry 'Recover to latest backup'.* --class recovery --id zshield-latest/);
    expect(vm.consoleLog()).toMatch(/Recover to factory default/);
    const version = await vm.run(['zshield', '--version']);
    expect(version.code, version.stderr).toBe(0);
    await vm.poweroff();
    console.log(
      `clone-net: package (or copy) done; receive ${((received - started) / 1000).toFixed(1)} s, check and GRUB boot ${((Date.now() - received) / 1000).toFixed(1)} s; ${report.repairedChunks.length} chunk(s) repaired`,
    );
  });
});
