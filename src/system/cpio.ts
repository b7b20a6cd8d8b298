/**
 * A cpio archive in the "newc" format, the one the Linux kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst): written here in memory rather than
 * by cpio(1) from a staging folder, so a device node (/dev/console, which the kernel needs before
 * /init runs) goes in without mknod, that is without root, and file modes and owners are exactly
 * what the archive says, not what the staging folder happened to get.
 */

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Buffer; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const TRAILER = 'TRAILER!!!';

const hex8 = (n: number) => n.toString(16).padStart(8, '0');
const pad4 = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);

function header(
  ino: number,
  mode: number,
  size: number,
  name: string,
  rdev = { major: 0, minor: 0 },
): Buffer {
  const nameBytes = Buffer.from(`${name}\0`);
  const fields = [
    ino,
    mode,
    0, // uid: root
    0, // gid
    1, // nlink
    0, // mtime: fixed, so the same inputs give the same archive
    size,
    0, // dev major
    0, // dev minor
    rdev.major,
    rdev.minor,
    nameBytes.length,
    0, // check
  ];
  const head = Buffer.from(`070701${fields.map(hex8).join('')}`, 'ascii');
  return Buffer.concat([head, nameBytes, pad4(head.length + nameBytes.length)]);
}

/** The archive of these entries, in their order (a directory before what it holds), with its trailer. */
export function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((e, i) => {
    const name = e.path.replace(/^\/+/, '');
    const ino = i + 1;
    if (e.kind === 'dir') parts.push(header(ino, S_IFDIR | (e.mode ?? 0o755), 0, name));
    else if (e.kind === 'chardev')
      parts.push(header(ino, S_IFCHR | (e.mode ?? 0o600), 0, name, { major: e.major, minor: e.minor }));
    else {
      const data = e.kind === 'file' ? e.data : Buffer.from(e.target);
      const mode = e.kind === 'file' ? S_IFREG | (e.mode ?? 0o644) : S_IFLNK | 0o777;
      parts.push(header(ino, mode, data.length, name), data, pad4(data.length));
    }
  });
  parts.push(header(0, 0, 0, TRAILER));
  return Buffer.concat(parts);
}
