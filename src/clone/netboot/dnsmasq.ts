import type { Machine } from '../../config/clone.js';
import { UsageError } from '../../errors.js';
import type { Command } from '../../system/command.js';
import { NETBOOT_PATHS } from '../rescue/names.js';

/**
 * dnsmasq (Debian's dnsmasq-base: the program without a system service) as the netboot session's
 * DHCP and TFTP server, in the foreground for the session only. It answers the listed MACs and
 * nobody else (`dhcp-ignore=tag:!known`: a host without a dhcp-host line gets no answer at all),
 * so zshield never becomes the LAN's DHCP server; DNS is off (port 0); TFTP serves one small
 * file, the iPXE script that chains to the HTTP server (TFTP runs lock-step at ~5 MB/s: the
 * kernel and initramfs go over HTTP).
 */

/** The file TFTP serves (the DHCP boot file of every listed box). */
export const IPXE_BOOT_FILE = 'netboot.ipxe';

/** The tag dnsmasq sets on the listed boxes. */
const TAG = 'zshield';

/** iPXE chains to the HTTP server with its own MAC: the server answers per box. */
export function bootFileScript(httpUrl: string): string {
  return `#!ipxe\nchain ${httpUrl}${NETBOOT_PATHS.ipxe}/\${net0/mac}\n`;
}

export interface DhcpRange {
  start: string;
  end: string;
}

/** `--dhcp-range START,END`: two IPv4 addresses. */
export function parseDhcpRange(text: string): DhcpRange {
  const parts = text.split(',');
  const ip = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
  if (parts.length !== 2 || !parts.every((p) => ip.test(p) && p.split('.').every((n) => Number(n) <= 255))) {
    throw new UsageError('--dhcp-range START,END: two IPv4 addresses, e.g. 198.18.0.100,198.18.0.199');
  }
  return { start: parts[0]!, end: parts[1]! };
}

const toNumber = (ip: string) => ip.split('.').reduce((n, p) => n * 256 + Number(p), 0);

/** Both ends inside the interface's subnet, start before end, the interface's own address outside. */
export function checkRange(r: DhcpRange, address: string, netmask: string): string | null {
  const mask = toNumber(netmask);
  const net = toNumber(address) & mask;
  const [s, e, a] = [toNumber(r.start), toNumber(r.end), toNumber(address)];
  if ((s & mask) >>> 0 !== net >>> 0 || (e & mask) >>> 0 !== net >>> 0)
    return `${r.start}-${r.end} is not inside ${address}/${netmask}`;
  if (s > e) return `${r.start} comes after ${r.end}`;
  if (a >= s && a <= e) return `the range holds the interface's own address ${address}`;
  return null;
}

export interface DnsmasqSettings {
  interface: string;
  range: DhcpRange;
  netmask: string;
  machines: readonly Machine[];
  /** Folder for the leases file and the TFTP root. */
  dir: string;
  tftpRoot: string;
  onLine?: Command['onLine'];
}

export function dnsmasqCommand(s: DnsmasqSettings): Command {
  return {
    file: 'dnsmasq',
    args: [
      '--conf-file=/dev/null',
      '--keep-in-foreground',
      '--log-facility=-',
      '--log-dhcp',
      '--port=0',
      '--no-resolv',
      '--no-hosts',
      `--interface=${s.interface}`,
      '--bind-dynamic',
      // No 3 s ICMP probe of each address before it is offered.
      '--no-ping',
      `--dhcp-range=${s.range.start},${s.range.end},${s.netmask},10m`,
      `--dhcp-leasefile=${s.dir}/leases`,
      ...s.machines.map((m) => `--dhcp-host=${m.mac},set:${TAG}`),
      '--dhcp-ignore=tag:!known',
      `--dhcp-boot=tag:${TAG},${IPXE_BOOT_FILE}`,
      // iPXE option 176 (no-pxedhcp): iPXE does not wait 2 s for ProxyDHCP offers.
      '--dhcp-option=encap:175,176,1',
      '--enable-tftp',
      `--tftp-root=${s.tftpRoot}`,
    ],
    // It answers DHCP on the interface: never in a dry run.
    mutates: true,
    ...(s.onLine ? { onLine: s.onLine } : {}),
  };
}
