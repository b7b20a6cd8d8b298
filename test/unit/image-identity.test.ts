import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { RefusedError, UsageError } from '../../src/errors.js';
import { parseIdentity, readHostname, rewriteHosts, rewriteInterfaces } from '../../src/image/identity.js';
import { planCreate } from '../../src/image/plan-create.js';
import { describeStep, formatPlan, isCommand } from '../../src/plan/plan.js';
import { probeVg } from '../../src/system/lvm.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { GiB, type LvRow } from './helpers/lvm-json.js';

// Another network identity for an image (image create --hostname/--ip): the option checks, the
// file rewrites, and where the plan puts them (the job's own snapshot only).

describe('parseIdentity', () => {
  it('takes a host name, optionally an IPv4 address with a prefix', () => {
    expect(parseIdentity(undefined, undefined)).toBeNull();
    expect(parseIdentity('standby-7', undefined)).toEqual({ hostname: 'standby-7', ip: null });
    expect(parseIdentity('sb.example.com', '10.0.0.8/24')).toEqual({
      hostname: 'sb.example.com',
      ip: '10.0.0.8/24',
    });
    expect(parseIdentity('sb', '10.0.0.8')).toEqual({ hostname: 'sb', ip: '10.0.0.8' });
  });
  it('refuses bad names and addresses, and --ip alone (exit 2)', () => {
    for (const [h, ip] of [
      ['no_such host', undefined],
      ['-lead', undefined],
      ['trail-', undefined],
      ['a'.repeat(64), undefined],
      ['', undefined],
      [undefined, '10.0.0.8'],
      ['sb', '10.0.0.256'],
      ['sb', '10.0.0.8/33'],
      ['sb', 'fe80::1'],
      ['sb', '10.0.0.8; reboot'],
    ] as const) {
      expect(() => parseIdentity(h, ip), `${h} ${ip}`).toThrow(UsageError);
    }
  });
});

describe('identity file rewrites', () => {
  it('readHostname: the first name, comments ignored', () => {
    expect(readHostname('# box\n\nappliance1\n')).toBe('appliance1');
    expect(readHostname('')).toBeNull();
  });

  it('rewriteHosts: the old name and its short form become the new ones; other names and comments stay', () => {
    const text =
      '127.0.0.1\tlocalhost\n127.0.1.1\tappliance1.example.com appliance1 # me\n10.0.2.15 appliance1 logs\n::1 localhost\n';
    const out = rewriteHosts(
      text,
      { hostname: 'appliance1.example.com', address: '10.0.2.15' },
      { hostname: 'standby.example.com', ip: '10.0.2.77/24' },
    );
    expect(out).toBe(
      '127.0.0.1\tlocalhost\n127.0.1.1\tstandby.example.com standby # me\n10.0.2.77\tstandby logs\n::1 localhost\n',
    );
    // Without an IP the addresses stay.
    expect(
      rewriteHosts(
        '10.0.2.15 appliance1\n',
        { hostname: 'appliance1', address: null },
        { hostname: 'sb', ip: null },
      ),
    ).toBe('10.0.2.15\tsb\n');
  });

  it('rewriteHosts: a name that was nowhere gets the Debian 127.0.1.1 line; a name never matches inside another', () => {
    expect(
      rewriteHosts(
        '127.0.0.1 localhost\n',
        { hostname: 'bench', address: null },
        { hostname: 'sb', ip: null },
      ),
    ).toBe('127.0.0.1 localhost\n127.0.1.1\tsb\n');
    expect(rewriteHosts('', { hostname: null, address: null }, { hostname: 'sb', ip: null })).toBe(
      '127.0.1.1\tsb\n',
    );
    expect(
      rewriteHosts(
        '127.0.1.1 appliance10\n',
        { hostname: 'appliance1', address: null },
        { hostname: 'sb', ip: null },
      ),
    ).toBe('127.0.1.1 appliance10\n127.0.1.1\tsb\n');
  });

  it('rewriteInterfaces: the address of the one static stanza; a prefix replaces the netmask line', () => {
    const text =
      'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n    address 10.0.2.15\n    netmask 255.255.255.0\n    gateway 10.0.2.2\n\niface eth1 inet dhcp\n';
    expect(rewriteInterfaces(text, '10.0.2.77')).toEqual({
      text: text.replace('address 10.0.2.15', 'address 10.0.2.77'),
      oldAddress: '10.0.2.15',
    });
    expect(rewriteInterfaces(text, '10.0.2.77/24').text).toBe(
      'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n    address 10.0.2.77/24\n    gateway 10.0.2.2\n\niface eth1 inet dhcp\n',
    );
    // An address written in CIDR form keeps its prefix when none is given.
    expect(rewriteInterfaces('iface e inet static\n address 10.1.1.1/16\n', '10.1.1.2').text).toBe(
      'iface e inet static\n address 10.1.1.2/16\n',
    );
  });

  it('rewriteInterfaces: refuses no static stanza, two of them, or one without an address', () => {
    expect(() => rewriteInterfaces('iface eth0 inet dhcp\n', '10.0.0.1')).toThrow(RefusedError);
    expect(() =>
      rewriteInterfaces(
        'iface a inet static\n address 1.1.1.1\niface b inet static\n address 1.1.1.2\n',
        '10.0.0.1',
      ),
    ).toThrow(/2 static IPv4 stanzas/);
    expect(() => rewriteInterfaces('iface a inet static\n gateway 1.1.1.1\n', '10.0.0.1')).toThrow(
      /no address line/,
    );
  });
});

describe('planCreate with an identity', () => {
  const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 10 * GiB, major: 253, minor: 1 };
  const SNAP0: LvRow = {
    name: 'snap0',
    attr: 'swi-a-s---',
    size: 2 * GiB,
    origin: 'lv-root',
    snapPercent: '1.00',
    minor: 2,
  };
  const base = async (source: 'temporary' | 'snap0') => ({
    state: await probeVg(
      new FakeLvm({ vg: { freeExtents: 5000 }, lvs: [ROOT, SNAP0] }).install(new RecordingRunner()),
      'vgroup',
    ),
    config: defaultConfig(),
    source,
    now: new Date('2026-03-01T03:10:00Z'),
    kind: 'standby-7',
    fs: {
      type: 'ext4',
      uuid: 'f00d',
      label: null,
      blockSize: 4096,
      blockCount: (10 * GiB) / 4096,
      freeBlocks: (9 * GiB) / 4096,
      sizeBytes: 10 * GiB,
      usedBytes: GiB,
    },
    freeBytes: 100 * GiB,
    dirOnRoot: false,
    identity: { hostname: 'standby-7', ip: '10.0.2.77/24' },
  });

  it('mounts the temporary snapshot, rewrites the files, unmounts, before the copy', async () => {
    const plan = planCreate(await base('temporary'));
    const lines = plan.steps.map(describeStep);
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    expect(lines[at(/^\$ mount /)]).toBe(
      '$ mount -t ext4 -o nodev,nosuid,noexec /dev/vgroup/snap0-image /run/zshield/image-identity',
    );
    expect(lines[at(/etc\/hostname/)]).toBe(
      '(zshield writes /run/zshield/image-identity/etc/hostname, /run/zshield/image-identity/etc/hosts, /run/zshield/image-identity/etc/network/interfaces)',
    );
    expect(at(/^\$ lvcreate /)).toBeLessThan(at(/^\$ mount /));
    expect(at(/^\$ mount /)).toBeLessThan(at(/etc\/hostname/));
    expect(at(/etc\/hostname/)).toBeLessThan(at(/^\$ umount /));
    expect(at(/^\$ umount /)).toBeLessThan(at(/^\$ e2image /));
    // The unmount also runs at the end, after a failure or SIGTERM, if the mount is still there.
    const last = plan.always![0]!;
    expect(isCommand(last) && last.command.runsAfterAbort && last.command.file).toBe('umount');
    expect(last.title).toMatch(/if it is still mounted/);
    expect(plan.paths.base).toBe('zshield-standby-7-20260301T031000Z');
    const text = formatPlan(plan);
    expect(text).toContain('hostname standby-7, address 10.0.2.77/24), written into snap0-image only');
    expect(text).not.toContain('$ (zshield');
    expect(text).toContain('unmount /run/zshield/image-identity if it is still mounted');
  });

  it('is refused for snap0: the restore point is never modified', async () => {
    const input = await base('snap0');
    expect(() => planCreate(input)).toThrow(
      '--hostname needs a temporary snapshot (--source temporary): snap0 is the restore point and is never modified',
    );
  });
});
