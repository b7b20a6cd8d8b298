import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { VerifyError } from '../errors.js';
import type { Runner } from '../system/runner.js';
import { readFully } from './golden-image.js';
import type { DirectKernel } from './update-qemu.js';

/**
 * The update boot starts the image's own kernel directly (QEMU -kernel), because through GRUB the
 * host cannot add the update key to the command line. What GRUB would boot is read from the image's
 * grub.cfg (its first menu entry), the files taken out with debugfs: no mount, no root needed.
 */

const SECTOR = 512;

/** Byte offsets of the MBR's Linux partitions (type 0x83), in table order. */
export function linuxPartitionOffsets(mbr: Buffer): number[] {
  if (mbr.length < SECTOR || mbr.readUInt16LE(510) !== 0xaa55) return [];
  const out: number[] = [];
  for (let i = 0; i < 4; i++) {
    const e = 446 + i * 16;
    if (mbr[e + 4] === 0x83) out.push(mbr.readUInt32LE(e + 8) * SECTOR);
  }
  return out;
}

export interface GrubEntry {
  title: string;
  linux: string;
  args: string;
  initrd?: string;
}

/** The first top-level menu entry of a grub.cfg: what GRUB boots by default (GRUB_DEFAULT=0). */
export function firstMenuEntry(cfg: string): GrubEntry | null {
  const m = /^menuentry\s+'([^']*)'[^\n]*\{\n([\s\S]*?)^\}/m.exec(cfg);
  if (!m) return null;
  const linux = /^\s*linux\s+(\S+)(.*)$/m.exec(m[2]!);
  if (!linux) return null;
  const initrd = /^\s*initrd\s+(\S+)/m.exec(m[2]!);
  // GRUB variables ($vt_handoff) have no value outside GRUB.
  const args = linux[2]!
    .split(/\s+/)
    .filter((w) => w !== '' && !w.startsWith('$'))
    .join(' ');
  return { title: m[1]!, linux: linux[1]!, args, ...(initrd ? { initrd: initrd[1]! } : {}) };
}

const debugfsDevice = (image: string, offset: number) => `${image}?offset=${offset}`;

async function debugfs(runner: Runner, image: string, offset: number, request: string) {
  return runner.run({ file: 'debugfs', args: ['-R', request, debugfsDevice(image, offset)], mutates: false });
}

/** Finds grub.cfg in the image's Linux partitions and takes out the kernel and initrd it boots. */
export async function extractBootFiles(
  runner: Runner,
  image: string,
  outDir: string,
  extra: string,
): Promise<DirectKernel> {
  const fh = await open(image, 'r');
  const mbr = await readFully(fh, SECTOR, 0).finally(() => fh.close());
  for (const offset of linuxPartitionOffsets(mbr)) {
    const cfg = await debugfs(runner, image, offset, 'cat /boot/grub/grub.cfg');
    const entry = firstMenuEntry(cfg.stdout);
    if (!entry) continue;
    const kernel = path.join(outDir, 'vmlinuz');
    await debugfs(runner, image, offset, `dump ${entry.linux} ${kernel}`);
    const k: DirectKernel = { kernel, append: `${entry.args} ${extra}`.trim() };
    if (entry.initrd) {
      k.initrd = path.join(outDir, 'initrd');
      await debugfs(runner, image, offset, `dump ${entry.initrd} ${k.initrd}`);
    }
    await mustExist(kernel, entry.linux);
    if (k.initrd) await mustExist(k.initrd, entry.initrd!);
    return k;
  }
  throw new VerifyError(
    `${image}: no Linux partition with /boot/grub/grub.cfg and a menu entry: not a golden medium`,
  );
}

/** debugfs reports a missing file on stderr and still exits 0. */
async function mustExist(file: string, inImage: string): Promise<void> {
  const st = await stat(file).catch(() => null);
  if (!st || st.size === 0)
    throw new VerifyError(`${inImage}, named by the image's grub.cfg, is not in the image`);
}
