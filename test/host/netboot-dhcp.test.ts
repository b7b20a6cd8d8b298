import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IPXE_BOOT_FILE,
  bootFileScript,
  dnsmasqCommand,
  parseDhcpRange,
} from '../../src/clone/netboot/dnsmasq.js';
import { parseConfigText } from '../../src/config/load.js';
import { type Lan, type Proc, makeLan, runIn, until } from './netns.js';

/**
 * The DHCP and TFTP half of clone send --netboot with the real dnsmasq (dnsmasq-base), in network
 * namespaces made here: the argv zshield gives it answers a listed MAC (an address in the range,
 * the iPXE script as boot file, that script over TFTP) and gives an unlisted MAC no answer at all.
 */

const ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C',
};
const LISTED = '52:54:00:18:00:21';
const OTHER = '52:54:00:18:00:99';
const hasDnsmasq = spawnSync('which', ['dnsmasq']).status === 0;

let lan: Lan;
let dir: string;
let dnsmasq: Proc;

beforeAll(async () => {
  if (!hasDnsmasq) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'zshield-netboot-dhcp-'));
  chmodSync(dir, 0o755);
  lan = makeLan(['s', 'listed', 'other']);
  // The boxes start without an address, with the MACs the config names (or not).
  for (const [host, mac] of [
    ['listed', LISTED],
    ['other', OTHER],
  ] as const) {
    spawnSync('ip', ['-n', lan.ns(host), 'addr', 'flush', 'dev', 'eth0']);
    spawnSync('ip', ['-n', lan.ns(host), 'link', 'set', 'eth0', 'down']);
    spawnSync('ip', ['-n', lan.ns(host), 'link', 'set', 'eth0', 'address', mac]);
    spawnSync('ip', ['-n', lan.ns(host), 'link', 'set', 'eth0', 'up']);
  }
  const tftp = path.join(dir, 'tftp');
  mkdirSync(tftp, { mode: 0o755 });
  writeFileSync(path.join(tftp, IPXE_BOOT_FILE), bootFileScript('http://198.18.0.1:8067'), { mode: 0o644 });
  const machine = {
    name: 'box1',
    mac: LISTED,
    disk: 'SER1',
    power: { status: ['true'], on: ['true'], cycle: ['true'] },
  };
  const { machines } = parseConfigText(JSON.stringify({ clone: { machines: [machine] } }), 'test').config
    .clone;
  const cmd = dnsmasqCommand({
    interface: 'eth0',
    range: parseDhcpRange('198.18.0.100,198.18.0.110'),
    netmask: '255.255.255.0',
    machines,
    dir,
    tftpRoot: tftp,
  });
  dnsmasq = runIn(lan.ns('s'), [cmd.file, ...cmd.args], ENV);
  await until(() => /started, version|DHCP, IP range/.test(dnsmasq.out()), 'dnsmasq to start', 10_000);
});

afterAll(async () => {
  if (dnsmasq?.child.pid) {
    try {
      process.kill(-dnsmasq.child.pid, 'SIGTERM');
    } catch {}
    await dnsmasq.exited;
  }
  lan?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** busybox udhcpc once, its script writing what the lease holds. */
function udhcpc(host: string): { code: number | null; lease: string } {
  const out = path.join(dir, `${host}.lease`);
  const script = path.join(dir, `${host}.sh`);
  writeFileSync(
    script,
    `#!/bin/sh\n[ "$1" = bound ] && echo "ip=$ip boot_file=$boot_file siaddr=$siaddr" >${out}\nexit 0\n`,
    {
      mode: 0o755,
    },
  );
  const r = spawnSync(
    'ip',
    [
      'netns',
      'exec',
      lan.ns(host),
      'busybox',
      'udhcpc',
      '-i',
      'eth0',
      '-n',
      '-q',
      '-t',
      '3',
      '-T',
      '1',
      '-s',
      script,
    ],
    {
      encoding: 'utf8',
      env: ENV,
      timeout: 30_000,
    },
  );
  let lease = '';
  try {
    lease = readFileSync(out, 'utf8').trim();
  } catch {}
  return { code: r.status, lease };
}

describe.skipIf(!hasDnsmasq)('dnsmasq as clone send --netboot runs it', () => {
  it('a listed MAC gets an address in the range and the iPXE script as boot file, which TFTP serves', () => {
    const r = udhcpc('listed');
    expect(r.code).toBe(0);
    expect(r.lease).toMatch(/^ip=198\.18\.0\.1(0\d|10) boot_file=netboot\.ipxe siaddr=198\.18\.0\.1$/);
    const got = path.join(dir, 'got.ipxe');
    // The script above only records the lease: the address is put on by hand for the TFTP fetch.
    const ip = /ip=(\S+)/.exec(r.lease)![1]!;
    spawnSync('ip', ['-n', lan.ns('listed'), 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    const argv = [
      'netns',
      'exec',
      lan.ns('listed'),
      'busybox',
      'tftp',
      '-g',
      '-r',
      IPXE_BOOT_FILE,
      '-l',
      got,
      '198.18.0.1',
    ];
    const t = spawnSync('ip', argv, { encoding: 'utf8', env: ENV, timeout: 30_000 });
    expect(t.status, t.stderr).toBe(0);
    expect(readFileSync(got, 'utf8')).toBe(bootFileScript('http://198.18.0.1:8067'));
  });

  it('an unlisted MAC gets no DHCP answer at all, and no lease', () => {
    const r = udhcpc('other');
    expect(r.code).not.toBe(0);
    expect(r.lease).toBe('');
    // dnsmasq's lease file: the listed box's lease, nothing for the other.
    const leases = readFileSync(path.join(dir, 'leases'), 'utf8');
    expect(leases).toContain(LISTED);
    expect(leases).not.toContain(OTHER);
  });
});
