// The QEMU command line of a bench boot: what a guest boots, its disks, its console, its agent
// socket and its network, as qemu-system-x86_64 arguments (appliance.ts starts it and talks to it).

import fs from 'node:fs';
import path from 'node:path';

const MiB = 1024 * 1024;

export interface DiskSpec {
  /** File name stem: the disk is `<workDir>/<name>.img` (sparse, created if missing, kept). */
  name: string;
  sizeMiB: number;
  /** virtio-blk serial, visible in the guest as /sys/block/vdX/serial (max 20 characters). */
  serial: string;
  /**
   * Caps the disk's reads and writes together (QEMU's throttling.bps-total), so that a long kernel
   * operation (a snapshot merge) lasts long enough for a shim to act in its middle on any host.
   */
  throttleBytesPerSec?: number;
}

/**
 * What the guest boots.
 * - `{ from: 'kernel' }` (the default): the bench kernel with the bench initramfs, which IS the
 *   golden root (qemu -kernel/-initrd/-append; the prototype system). `initrd` replaces the
 *   initramfs: e.g. `benchInfo().bootInitrd` (the disks' boot initramfs) with
 *   `appendCmdline: 'root=/dev/vgroup/lv-root'` boots a root on a disk without GRUB. `kernel`
 *   replaces the kernel (e.g. the systemd flavour's, systemdBenchInfo()).
 * - `{ from: 'disk', disk }`: the firmware (SeaBIOS) boots the MBR of the disk named `disk` (a
 *   DiskSpec name): its GRUB, its grub.cfg, its kernel and initramfs (/boot/initrd.img-<kver>,
 *   which activates LVM and mounts the root), its root's busybox init and rcS (which runs
 *   /etc/rc.local on the console, e.g. the `zshield boot` hook). The kernel command line comes
 *   from GRUB (appendCmdline is refused; pick a menu entry with setNextBootEntry()). That disk gets
 *   bootindex 0 and the other disks the following ones in order, as a BIOS boot order would (a
 *   disk without a boot loader falls through to the next); `only: true` makes that disk the only
 *   boot device (`-boot strict=on`).
 */
export type BootSource =
  | { from: 'kernel'; initrd?: string; kernel?: string }
  | { from: 'disk'; disk: string; only?: boolean };

export interface BootOptions {
  /** Folder for the disk images and the console log (created if missing). */
  workDir: string;
  /** Disks in order: the first is vda, the second vdb, ... */
  disks: DiskSpec[];
  /** Default: the bench kernel + initramfs. See BootSource. */
  boot?: BootSource;
  /**
   * Boot until the agent answers; default 90 s with the kernel, 150 s from a disk (TCG boots take
   * ~8 s / ~15 s when the host is idle). For bootUntilExit(): until qemu exits, default 600 s.
   */
  timeoutMs?: number;
  /** `-fw_cfg name=opt/<key>,string=<value>`; read in the guest from
   * /sys/firmware/qemu_fw_cfg/by_name/opt/<key>/raw. A key without the `opt/` prefix gets it. */
  fwCfg?: Record<string, string>;
  /** Appended to the kernel command line (e.g. `zshield_recovery=latest`). Kernel boots only. */
  appendCmdline?: string;
  /** Guest memory, default 1024 (384 and below cannot unpack the initramfs). */
  memoryMiB?: number;
  /**
   * The serial console both ways: a QEMU socket chardev (qemu still logs to console.log) that
   * typeOnConsole() types into. Off by default: with the socket backend the log showed a
   * duplicated byte every few KB (QEMU 7.2, not seen with the file backend), so scenarios that
   * match console text keep the file; a typing scenario reads zshield's lines from the journal.
   */
  consoleInput?: boolean;
  /** More qemu arguments, appended last (e.g. `['-machine', 'q35']`). */
  extraQemuArgs?: string[];
  /** A NIC for the guest (none by default); see GuestNetwork. */
  network?: GuestNetwork;
}

/**
 * The guest's one NIC (virtio-net, eth0 in the guest, configured by rcS from fw_cfg opt/bench.net).
 * - `user`: QEMU user networking with `restrict=on`: the guest reaches nothing but the forwards,
 *   each a `guestfwd` from USER_NET.server:guestPort to 127.0.0.1:hostPort on the host (through
 *   `nc`, a new one per connection; a `tcp:` chardev would serve one connection only).
 * - `tap`: a tap device made by the test (`ip tuntap add NAME mode tap`) in the network namespace
 *   `netns`, with qemu started inside that namespace; `address` is the guest's "ADDRESS/PREFIX".
 *   Traffic stays in the test's namespaces (multicast cloning: user networking carries none).
 */
export type GuestNetwork =
  | { kind: 'user'; forwards: { guestPort: number; hostPort: number }[] }
  | { kind: 'tap'; netns: string; tap: string; address: string; mac?: string };

/** Addresses of QEMU user networking as the bench uses it. */
export const USER_NET = { guest: '10.0.2.15/24', gateway: '10.0.2.2', server: '10.0.2.100' } as const;

/** The qemu arguments, the fw_cfg entry and the command prefix for a GuestNetwork. */
export function networkArgs(net: GuestNetwork): {
  args: string[];
  fwCfg: Record<string, string>;
  prefix: string[];
} {
  if (net.kind === 'user') {
    const fwd = net.forwards.map((f) => {
      if (!Number.isInteger(f.guestPort) || !Number.isInteger(f.hostPort))
        throw new Error('bad forward port');
      return `,guestfwd=tcp:${USER_NET.server}:${f.guestPort}-cmd:nc 127.0.0.1 ${f.hostPort}`;
    });
    return {
      args: ['-netdev', `user,id=net0,restrict=on${fwd.join('')}`, '-device', 'virtio-net-pci,netdev=net0'],
      fwCfg: { 'opt/bench.net': USER_NET.guest },
      prefix: [],
    };
  }
  for (const word of [net.netns, net.tap]) {
    if (!/^[A-Za-z0-9_-]{1,15}$/.test(word)) throw new Error(`bad network name: ${word}`);
  }
  const mac = net.mac ? `,mac=${net.mac}` : '';
  return {
    args: [
      '-netdev',
      `tap,id=net0,ifname=${net.tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=net0${mac}`,
    ],
    fwCfg: { 'opt/bench.net': net.address },
    prefix: ['ip', 'netns', 'exec', net.netns],
  };
}

/** Where a boot's files are: its console log, agent and console sockets, the firmware's log. */
export interface BootFiles {
  consolePath: string;
  sockPath: string;
  consoleSock: string;
  /** SeaBIOS's debug log, for a disk boot only. */
  fwLog?: string;
}

/** The default boot: the bench kernel and initramfs. */
export const KERNEL_BOOT: BootSource = { from: 'kernel' };

/** Refuses a disk or boot that qemu would misread (names go into option values). */
export function checkBootOptions(opts: BootOptions): void {
  for (const d of opts.disks) {
    if (!/^[A-Za-z0-9_.-]+$/.test(d.name)) throw new Error(`bad disk name: ${d.name}`);
    if (!/^[A-Za-z0-9_.-]{1,20}$/.test(d.serial)) throw new Error(`bad disk serial: ${d.serial}`);
  }
  const source = opts.boot ?? KERNEL_BOOT;
  if (source.from !== 'disk') return;
  if (!opts.disks.some((d) => d.name === source.disk)) {
    throw new Error(`boot from disk ${source.disk}: no DiskSpec of that name`);
  }
  if (opts.appendCmdline) {
    throw new Error('appendCmdline needs a kernel boot: from a disk, GRUB makes the command line');
  }
}

/** The disks' image files in `workDir` (sparse, made when missing, kept), by DiskSpec name. */
export function makeDisks(workDir: string, disks: DiskSpec[]): Map<string, string> {
  const paths = new Map<string, string>();
  for (const d of disks) {
    const file = path.join(workDir, `${d.name}.img`);
    if (!fs.existsSync(file)) {
      const fd = fs.openSync(file, 'w');
      fs.ftruncateSync(fd, d.sizeMiB * MiB);
      fs.closeSync(fd);
    }
    paths.set(d.name, file);
  }
  return paths;
}

const q = (s: string) => s.replace(/,/g, ',,'); // qemu option value escaping

/** The console, the agent's virtio-serial port and the machine: the same for every boot. */
function machineArgs(opts: BootOptions, files: BootFiles): string[] {
  return [
    ['-accel', 'tcg', '-cpu', 'max', '-smp', '1', '-m', String(opts.memoryMiB ?? 1024)],
    ['-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-nic', 'none'],
    ['-no-reboot'],
    // The console both ways: qemu logs the guest's output to consolePath; the host types into
    // the socket (typeOnConsole). wait=on: the guest starts once the host is connected, and the
    // host stays connected (a socket without a client drops the guest's output, log included).
    opts.consoleInput
      ? [
          '-chardev',
          `socket,id=con,path=${q(files.consoleSock)},server=on,wait=on,logfile=${q(files.consolePath)}`,
          '-serial',
          'chardev:con',
        ]
      : ['-chardev', `file,id=con,path=${q(files.consolePath)}`, '-serial', 'chardev:con'],
    ['-device', 'virtio-serial-pci'],
    ['-chardev', `socket,id=agent,path=${q(files.sockPath)},server=on,wait=off`],
    ['-device', 'virtserialport,chardev=agent,name=bench'],
  ].flat();
}

/** What the guest boots: the bench kernel (or another) with its command line, or a disk's MBR. */
function bootArgs(
  opts: BootOptions,
  kernel: { vmlinuz: string; initrd: string },
  files: BootFiles,
): string[] {
  const source = opts.boot ?? KERNEL_BOOT;
  if (source.from === 'kernel') {
    // no_timer_check: see guest/default-grub (a busy host's TCG guest fails the timer check).
    const cmdline = ['console=ttyS0', 'panic=-1', 'no_timer_check', opts.appendCmdline ?? '']
      .join(' ')
      .trim();
    return [
      '-kernel',
      source.kernel ?? kernel.vmlinuz,
      '-initrd',
      source.initrd ?? kernel.initrd,
      '-append',
      cmdline,
    ];
  }
  // SeaBIOS writes what it boots (or "No bootable device") to the debug port, not the serial
  // console: keep it, for failure messages.
  const args = [
    '-chardev',
    `file,id=fw,path=${q(files.fwLog!)}`,
    '-device',
    'isa-debugcon,iobase=0x402,chardev=fw',
  ];
  if (source.only) args.push('-boot', 'strict=on');
  return args;
}

/** One -drive and its virtio-blk device per disk, in order, with the boot order of a disk boot. */
function diskArgs(opts: BootOptions, diskPaths: Map<string, string>): string[] {
  const source = opts.boot ?? KERNEL_BOOT;
  const bootDisk = source.from === 'disk' ? opts.disks.findIndex((d) => d.name === source.disk) : -1;
  return opts.disks.flatMap((d, i) => {
    let bootIndex = '';
    if (bootDisk >= 0 && source.from === 'disk') {
      // The boot disk first, then the others in order (unless it is the only boot device).
      const order = i === bootDisk ? 0 : i < bootDisk ? i + 1 : i;
      if (i === bootDisk || !source.only) bootIndex = `,bootindex=${order}`;
    }
    const throttle = d.throttleBytesPerSec
      ? `,throttling.bps-total=${Math.floor(d.throttleBytesPerSec)}`
      : '';
    // discard + detect-zeroes: what the guest discards (mkfs does) or writes as zeroes becomes a
    // hole in the image, so the bench takes only the host disk its data needs. write-zeroes=off:
    // the guest's BLKZEROOUT (blkdiscard --zeroout) asks to keep the zeroed blocks allocated,
    // which qemu does (3 GiB of host disk for image restore's zeroed lv-root); without the
    // command, the guest writes zero pages, and those become holes. werror/rerror report: when
    // the host disk is full, the guest gets I/O errors and its commands fail (the default stops
    // the guest, which then hangs until each test's timeout).
    const drive = `format=raw,if=none,id=disk${i},cache=unsafe,discard=unmap,detect-zeroes=unmap`;
    return [
      '-drive',
      `file=${q(diskPaths.get(d.name)!)},${drive},werror=report,rerror=report${throttle}`,
      '-device',
      `virtio-blk-pci,drive=disk${i},serial=${d.serial},write-zeroes=off${bootIndex}`,
    ];
  });
}

/**
 * The whole command of a boot: qemu-system-x86_64 under `setpriv --pdeathsig KILL` (qemu dies with
 * the process that started it: no orphans), inside the network namespace of a tap NIC (`ip netns
 * exec` execs setpriv, which execs qemu: one process, inside the namespace).
 */
export function qemuCommand(
  opts: BootOptions,
  kernel: { vmlinuz: string; initrd: string },
  files: BootFiles,
  diskPaths: Map<string, string>,
): string[] {
  const args = [...machineArgs(opts, files), ...bootArgs(opts, kernel, files), ...diskArgs(opts, diskPaths)];
  const net = opts.network ? networkArgs(opts.network) : undefined;
  if (net) args.push(...net.args);
  for (const [key, value] of Object.entries({ ...opts.fwCfg, ...net?.fwCfg })) {
    const name = key.startsWith('opt/') ? key : `opt/${key}`;
    args.push('-fw_cfg', `name=${q(name)},string=${q(value)}`);
  }
  // ZSHIELD_BENCH_RTC=2031-06-01 starts every guest on that date (its clock runs on from there):
  // the bench's cases must not depend on the host's date (they move a guest's clock relative
  // to the guest's own time), and this is how that is proven.
  const rtc = process.env['ZSHIELD_BENCH_RTC'];
  if (rtc) args.push('-rtc', `base=${q(rtc)}`);
  args.push(...(opts.extraQemuArgs ?? []));
  return [...(net?.prefix ?? []), 'setpriv', '--pdeathsig', 'KILL', '--', 'qemu-system-x86_64', ...args];
}
