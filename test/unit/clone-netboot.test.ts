import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  IPXE_BOOT_FILE,
  bootFileScript,
  checkRange,
  dnsmasqCommand,
  parseDhcpRange,
} from '../../src/clone/netboot/dnsmasq.js';
import { ipxeScript, startNetbootServer } from '../../src/clone/netboot/http.js';
import { boxRows, formatBoxTable } from '../../src/clone/netboot/table.js';
import { checkInstructions } from '../../src/clone/rescue/instructions.js';
import { hasNetworkDriver, planModules } from '../../src/clone/rescue/modules.js';
import { NETBOOT_PATHS, RESCUE_CMDLINE, RESCUE_FILES } from '../../src/clone/rescue/names.js';
import { netbootExtension } from '../../src/clone/netboot/session.js';
import { runSend } from '../../src/clone/send.js';
import { parseConfigText } from '../../src/config/load.js';
import { makeGoldenImage } from '../../src/golden/golden-image.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { writeNewSigningKey } from '../../src/system/signing.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import { FakeClock, testContext } from './helpers/context.js';
import { cpioArchive } from '../../src/system/cpio.js';
import { parseLdd } from '../../src/system/ldd.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'zshield-netboot-'));
  dirs.push(d);
  return d;
};

const machine = (name: string, mac: string) => ({
  name,
  mac,
  disk: `SER-${name}`,
  power: { status: ['bmc', name, 'status'], on: ['bmc', name, 'on'], cycle: ['bmc', name, 'cycle'] },
});
const machines = parseConfigText(
  JSON.stringify({
    clone: { machines: [machine('box1', '52:54:00:18:00:11'), machine('box2', '52:54:00:18:00:12')] },
  }),
  'test',
).config.clone.machines;

// Lines of the bench kernel's (6.1 cloud) modules.dep and modules.builtin.
const DEP = [
  'kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko',
  'kernel/drivers/virtio/virtio_ring.ko:',
  'kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko',
  'kernel/drivers/virtio/virtio_pci_legacy_dev.ko:',
  'kernel/drivers/virtio/virtio_pci_modern_dev.ko:',
  'kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko',
  'kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko',
  'kernel/net/core/failover.ko:',
  'kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko',
].join('\n');

describe('the rescue: modules, libraries, archive', () => {
  it('loads each wanted module after what it depends on, once; builtin and absent ones are named', () => {
    const p = planModules(
      ['virtio_pci', 'virtio_net', 'virtio_blk', 'nvme', 'e1000'],
      DEP,
      'kernel/drivers/nvme/host/nvme.ko\n',
    );
    const at = (m: string) => p.load.findIndex((f) => f.endsWith(`/${m}.ko`));
    expect(new Set(p.load).size).toBe(p.load.length);
    expect(at('virtio_ring')).toBeLessThan(at('virtio'));
    expect(at('virtio')).toBeLessThan(at('virtio_pci'));
    expect(at('failover')).toBeLessThan(at('net_failover'));
    expect(at('net_failover')).toBeLessThan(at('virtio_net'));
    expect(p.load.at(-1)).toBe('kernel/drivers/block/virtio_blk.ko');
    expect(p.builtin).toEqual(['nvme']);
    expect(p.absent).toEqual(['e1000']);
    expect(hasNetworkDriver(p)).toBe(true);
    expect(hasNetworkDriver(planModules(['virtio_blk'], DEP, ''))).toBe(false);
  });

  it('reads ldd: libraries and the loader, not the vDSO; a static program has none; a missing library is an error', () => {
    const out = [
      '\tlinux-vdso.so.1 (0x00007ffd)',
      '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f0c2c200000)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c2bff9000)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f0c2c516000)',
    ].join('\n');
    expect(parseLdd(out, 'zshield')).toEqual([
      '/lib/x86_64-linux-gnu/libstdc++.so.6',
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/lib64/ld-linux-x86-64.so.2',
    ]);
    expect(parseLdd('\tstatically linked\n', 'busybox')).toEqual([]);
    expect(() => parseLdd('\tlibfoo.so.1 => not found\n', 'x')).toThrow(/x needs libfoo\.so\.1/);
  });

  it('writes a newc archive cpio(1) lists: folders, files with their modes, a symlink, /dev/console', () => {
    const d = tmp();
    const f = path.join(d, 'a.cpio');
    writeFileSync(
      f,
      cpioArchive([
        { kind: 'dir', path: 'bin' },
        { kind: 'file', path: 'bin/x', data: Buffer.from('hello\n'), mode: 0o755 },
        { kind: 'symlink', path: 'bin/sh', target: 'x' },
        { kind: 'dir', path: 'dev' },
        { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
      ]),
    );
    const r = spawnSync('cpio', ['-itv', '-F', f], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual([
      'drwxr-xr-x',
      '-rwxr-xr-x',
      'lrwxrwxrwx',
      'drwxr-xr-x',
      'crw-------',
    ]);
    expect(lines[2]).toMatch(/bin\/sh -> x$/);
    expect(lines[4]).toMatch(/5,\s+1 .*dev\/console$/);
  });

  it("the rescue's /init uses the kernel arguments and paths the server writes", () => {
    const init = readFileSync(path.resolve(import.meta.dirname, '../../rc/rescue-init'), 'utf8');
    expect(init).toContain(`arg ${RESCUE_CMDLINE.server}`);
    expect(init).toContain(`arg ${RESCUE_CMDLINE.mac}`);
    for (const p of [NETBOOT_PATHS.instructions, NETBOOT_PATHS.after, NETBOOT_PATHS.failed])
      expect(init).toContain(`"$server${p}/$mac"`);
    expect(init).toContain(`"$server${NETBOOT_PATHS.rescue}/${RESCUE_FILES.zshield}"`);
    expect(init).toContain('clone receive --instructions');
  });

  it('refuses instructions without a disk (the rescue never picks one)', () => {
    expect(() => checkInstructions({ name: 'b', mac: 'm', session: 's', portbase: 9000 }, 'u')).toThrow(
      /not rescue instructions/,
    );
  });
});

describe('netboot: dnsmasq, iPXE answers, the table', () => {
  it('dnsmasq answers the listed MACs only, serves TFTP, no DNS, in the foreground', () => {
    const cmd = dnsmasqCommand({
      interface: 'br0',
      range: parseDhcpRange('198.18.0.100,198.18.0.199'),
      netmask: '255.255.255.0',
      machines,
      dir: '/tmp/x',
      tftpRoot: '/tmp/x/tftp',
    });
    expect(cmd.mutates).toBe(true);
    expect(cmd.args).toEqual(
      expect.arrayContaining([
        '--conf-file=/dev/null',
        '--keep-in-foreground',
        '--port=0',
        '--interface=br0',
        '--dhcp-range=198.18.0.100,198.18.0.199,255.255.255.0,10m',
        '--dhcp-host=52:54:00:18:00:11,set:zshield',
        '--dhcp-host=52:54:00:18:00:12,set:zshield',
        '--dhcp-ignore=tag:!known',
        `--dhcp-boot=tag:zshield,${IPXE_BOOT_FILE}`,
        '--enable-tftp',
        '--tftp-root=/tmp/x/tftp',
      ]),
    );
    expect(bootFileScript('http://198.18.0.1:8067')).toBe(
      `#!ipxe\nchain http://198.18.0.1:8067/netboot/ipxe/\${net0/mac}\n`,
    );
  });

  it('refuses a DHCP range outside the subnet, reversed, or holding the server', () => {
    const r = (t: string) => checkRange(parseDhcpRange(t), '198.18.0.1', '255.255.255.0');
    expect(r('198.18.0.100,198.18.0.199')).toBeNull();
    expect(r('198.18.1.100,198.18.1.199')).toMatch(/not inside/);
    expect(r('198.18.0.199,198.18.0.100')).toMatch(/comes after/);
    expect(r('198.18.0.1,198.18.0.10')).toMatch(/own address/);
    expect(() => parseDhcpRange('198.18.0.100')).toThrow(/two IPv4 addresses/);
  });

  it('the HTTP server: the rescue for a listed MAC until it is switched to its disk, 404 for others', async () => {
    const d = tmp();
    for (const f of [RESCUE_FILES.kernel, RESCUE_FILES.initramfs, RESCUE_FILES.zshield])
      writeFileSync(path.join(d, f), f);
    const s = await startNetbootServer({
      address: '127.0.0.1',
      port: 0,
      rescueDir: d,
      machines,
      session: 'sess',
      portbase: 9000,
      kernelArgs: 'console=ttyS0',
      after: 'poweroff',
    });
    try {
      const get = async (p: string) => {
        const r = await fetch(`${s.url}${p}`);
        return { status: r.status, text: await r.text() };
      };
      const rescue = await get('/netboot/ipxe/52%3A54%3A00%3A18%3A00%3A11');
      expect(rescue.text).toBe(
        [
          '#!ipxe',
          `kernel ${s.url}/rescue/vmlinuz console=ttyS0 zshield.server=${s.url} zshield.mac=52:54:00:18:00:11`,
          `initrd ${s.url}/rescue/initramfs.img?mac=52:54:00:18:00:11`,
          'boot',
          '',
        ].join('\n'),
      );
      expect((await get('/netboot/ipxe/52:54:00:99:99:99')).status).toBe(404);
      expect((await get('/netboot/ipxe/%E0%A4%A')).status).toBe(404);
      expect((await get('/rescue/rescue.json')).status).toBe(404);
      expect(JSON.parse((await get('/netboot/instructions/52:54:00:18:00:12')).text)).toEqual({
        name: 'box2',
        mac: '52:54:00:18:00:12',
        disk: 'SER-box2',
        session: 'sess',
        portbase: 9000,
      });
      expect((await get('/netboot/after/52:54:00:18:00:12')).text).toBe('poweroff');
      const box1 = s.boxes.get('52:54:00:18:00:11')!;
      expect(box1.netbooted).toBe(false);
      expect((await get('/rescue/initramfs.img?mac=52:54:00:18:00:11')).text).toBe('initramfs.img');
      // Marked when the response finished, which the client may see first.
      await vi.waitFor(() => expect(box1.netbooted).toBe(true));
      box1.answer = 'disk';
      expect((await get('/netboot/ipxe/52:54:00:18:00:11')).text).toMatch(/^#!ipxe\n(.*\n)?exit\n$/);
      expect(box1.sentToDisk).toBe(true);
      const posted = await fetch(`${s.url}/netboot/failed/52:54:00:18:00:12`, {
        method: 'POST',
        body: 'no DHCP',
      });
      expect(posted.status).toBe(204);
      const rows = boxRows([...s.boxes.values()], [], new Set(['box1', 'box2']));
      expect(rows.map((r) => r.problem)).toEqual([
        'no report from its rescue (it refused the session, or its receive failed: see its console)',
        'rescue failed: no DHCP',
      ]);
      expect(formatBoxTable(rows).split('\n')[0]).toBe(
        'box   mac                powered  netbooted  received  repaired  verified  booted from disk',
      );
    } finally {
      await s.close();
    }
  });

  it('the disk answer hands the box back to its firmware (next boot device)', () => {
    const box = {
      machine: machines[0]!,
      answer: 'disk' as const,
      netbooted: true,
      sentToDisk: false,
      failed: null,
    };
    expect(ipxeScript(box, 'http://x', '')).toContain('exit');
  });
});

describe('clone send --netboot: every check before anything is powered', () => {
  async function world() {
    const dir = tmp();
    const raw = path.join(dir, 'raw');
    writeFileSync(raw, Buffer.alloc(2 * 1024 * 1024, 7));
    const keyFile = path.join(dir, 'vendor.key');
    const key = await writeNewSigningKey(REAL_WRITES, keyFile);
    const image = path.join(dir, 'appl-1.img.zst');
    await makeGoldenImage({
      source: raw,
      out: image,
      name: 'appl',
      version: '1',
      key,
      chunkSize: 1024 * 1024,
    });
    const rescue = path.join(dir, 'rescue');
    mkdirSync(rescue);
    const sha = (t: string) => createHash('sha256').update(t).digest('hex');
    for (const f of [RESCUE_FILES.kernel, RESCUE_FILES.initramfs, RESCUE_FILES.zshield])
      writeFileSync(path.join(rescue, f), f);
    writeFileSync(
      path.join(rescue, RESCUE_FILES.manifest),
      JSON.stringify({
        kernelSha256: sha(RESCUE_FILES.kernel),
        initramfsSha256: sha(RESCUE_FILES.initramfs),
        zshieldSha256: sha(RESCUE_FILES.zshield),
        trustedKeys: [key.publicText],
      }),
    );
    const ctx = (runner: RecordingRunner, dryRun = false) => {
      const c = testContext({ runner, dir, clock: new FakeClock(new Date('2026-11-29T10:00:00Z')), dryRun });
      c.config.clone.trustedKeys = [key.publicText];
      c.config.clone.signingKey = keyFile;
      c.config.clone.machines = machines;
      return c;
    };
    return { image, rescue, keyFile, ctx };
  }
  // An interface of this machine with an IPv4 address, and a range inside its subnet (a /24 or wider).
  const lan = Object.entries(os.networkInterfaces())
    .map(([name, a]) => ({ name, a: (a ?? []).find((x) => x.family === 'IPv4' && !x.internal) }))
    .find((x) => x.a && x.a.netmask.startsWith('255.255.255.') === true);
  const range = () => {
    const [a, b, c, d] = lan!.a!.address.split('.').map(Number);
    const start = d! < 128 ? 200 : 10;
    return `${a}.${b}.${c}.${start},${a}.${b}.${c}.${start + 20}`;
  };

  it.skipIf(!lan)(
    'the dry run reads each status, shows dnsmasq and the power steps, powers nothing',
    async () => {
      const w = await world();
      const runner = new RecordingRunner(true).on(/status$/, { stdout: 'Chassis Power is off\n' });
      const c = w.ctx(runner, true);
      const ext = netbootExtension(c, {
        rescue: w.rescue,
        dhcpRange: range(),
        httpPort: 8067,
        kernelArgs: 'console=ttyS0',
        after: 'poweroff',
        bootTimeoutSeconds: 60,
        keyFile: w.keyFile,
      });
      expect(await runSend(c, { image: w.image, interface: lan!.name, extend: ext })).toBeNull();
      expect(runner.transcript()).toEqual(['$ bmc box1 status', '$ bmc box2 status']);
      const text = c.printed.join('\n');
      expect(text).toMatch(/box1: power off/);
      expect(text).toMatch(/start dnsmasq on .* for the 2 listed MAC\(s\) only/);
      expect(text).toMatch(/power box1: on \(bmc box1 on\), or cycle when it is on \(bmc box1 cycle\)/);
      expect(text).toMatch(/--min-receivers 2/);
    },
  );

  it.skipIf(!lan)(
    "one box's status failing: nothing is powered, nothing started, the box named",
    async () => {
      const w = await world();
      const runner = new RecordingRunner()
        .on(/status$/, { stdout: 'Chassis Power is off\n' })
        .on('bmc box2 status', { exitCode: 1, stderr: 'Unable to establish IPMI v2 / RMCP+ session' });
      const c = w.ctx(runner);
      const ext = netbootExtension(c, {
        rescue: w.rescue,
        dhcpRange: range(),
        httpPort: 8067,
        kernelArgs: '',
        after: 'poweroff',
        bootTimeoutSeconds: 60,
        keyFile: w.keyFile,
      });
      await expect(runSend(c, { image: w.image, interface: lan!.name, extend: ext })).rejects.toThrow(
        /^box2: its power status command failed .*nothing was powered/,
      );
      expect(runner.transcript()).toEqual(['$ bmc box1 status', '$ bmc box2 status']);
    },
  );

  it.skipIf(!lan)(
    'a rescue that does not trust the session key, or whose files changed, is refused before any status',
    async () => {
      const w = await world();
      writeFileSync(path.join(w.rescue, RESCUE_FILES.zshield), 'another binary');
      const runner = new RecordingRunner();
      const c = w.ctx(runner);
      const ext = netbootExtension(c, {
        rescue: w.rescue,
        dhcpRange: range(),
        httpPort: 8067,
        kernelArgs: '',
        after: 'poweroff',
        bootTimeoutSeconds: 60,
        keyFile: w.keyFile,
      });
      await expect(runSend(c, { image: w.image, interface: lan!.name, extend: ext })).rejects.toThrow(
        /rescue\/zshield does not match .*rescue\.json/,
      );
      expect(runner.calls).toEqual([]);
    },
  );
});
