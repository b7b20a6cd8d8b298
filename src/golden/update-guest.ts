import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type HandoffRequest, readRequest, writeResult } from './update-handoff.js';
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import { HANDOFF_SERIAL, PROOF_MARKER, UPDATE_CMDLINE_KEY } from '../names/golden-update.js';
import { readCmdline } from '../system/kernel-cmdline.js';
import { commandOf } from '../system/command.js';
import { remountArgv } from '../system/mount-commands.js';

/**
 * The golden medium's side of `zshield golden update` (run by `zshield boot` before anything
 * else). Two boots reach it, both in QEMU with the handoff disk attached:
 * - the update boot (`zshield_update=1` on the kernel command line): run the handed-in command
 *   with the golden root read-write, write its exit status and output to the handoff disk, power
 *   off;
 * - the proof boot (through the medium's own GRUB, so no key): print the proof marker with the
 *   request's nonce on the console, power off.
 * Returns true when it handled the boot (the caller then does nothing else).
 */
export async function answerGoldenUpdate(
  ctx: Context,
  cmdlineFile: string,
  where: { sysBlock: string; dev: string } = { sysBlock: '/sys/block', dev: '/dev' },
): Promise<boolean> {
  const wantsUpdate = hasUpdateKey(readCmdline(cmdlineFile));
  const disk = await findHandoffDisk(where.sysBlock, where.dev);
  if (!disk) {
    if (wantsUpdate)
      throw new UsageError(`${UPDATE_CMDLINE_KEY}=1 but no disk with serial ${HANDOFF_SERIAL}`);
    return false;
  }
  const req = await readRequest(disk);
  if (req?.mode === 'proof') {
    ctx.out.print(`${PROOF_MARKER} ${req.nonce}`);
    await powerOff(ctx);
    return true;
  }
  if (!wantsUpdate || req?.mode !== 'update') return false;
  const res = await runUpdate(ctx, req);
  await writeResult(disk, res);
  ctx.out.print(`zshield: golden update command exited ${res.exitCode}`);
  await powerOff(ctx);
  return true;
}

export function hasUpdateKey(cmdline: string): boolean {
  const m = [...cmdline.matchAll(new RegExp(`(?:^|\\s)${UPDATE_CMDLINE_KEY}=(\\S*)`, 'g'))];
  return m.length > 0 && m.at(-1)![1] === '1';
}

/** The handoff disk is found by its virtio serial, as the bench and the real boxes find disks. */
export async function findHandoffDisk(sysBlock: string, dev: string): Promise<string | null> {
  const names = await readdir(sysBlock).catch(() => [] as string[]);
  for (const name of names) {
    const serial = await readFile(path.join(sysBlock, name, 'serial'), 'utf8').catch(() => '');
    if (serial.trim() === HANDOFF_SERIAL) return path.join(dev, name);
  }
  return null;
}

type UpdateRequest = Extract<HandoffRequest, { mode: 'update' }>;

/** The golden root is read-only on purpose; the update is the one writer, then it goes back. */
async function runUpdate(ctx: Context, req: UpdateRequest): Promise<{ exitCode: number; output: string }> {
  const remount = await ctx.runner.run(
    commandOf(remountArgv('/', 'rw'), { mutates: true, okCodes: anyCode }),
  );
  if (remount.exitCode !== 0)
    return { exitCode: 255, output: `cannot remount / read-write: ${remount.stderr}` };
  let argv = req.argv;
  if (req.script !== undefined) {
    const file = path.join(ctx.config.paths.runDir, 'golden-update.sh');
    await mkdir(ctx.config.paths.runDir, { recursive: true });
    await writeFile(file, req.script, { mode: 0o700 });
    argv = ['/bin/sh', file];
  }
  const res = await ctx.runner
    .run({
      file: argv[0]!,
      args: argv.slice(1),
      mutates: true,
      okCodes: anyCode,
      timeoutMs: req.timeoutSeconds * 1000,
    })
    .then((r) => ({ exitCode: r.exitCode, output: `${r.stdout}${r.stderr}` }))
    // Killed at its timeout, or not found: a failure with the reason as its output.
    .catch((err: Error) => ({ exitCode: 255, output: err.message }));
  await ctx.runner.run({ file: 'sync', args: [], mutates: true, okCodes: anyCode });
  await ctx.runner.run(commandOf(remountArgv('/', 'ro'), { mutates: true, okCodes: anyCode }));
  return res;
}

const anyCode = Array.from({ length: 256 }, (_, i) => i);

async function powerOff(ctx: Context): Promise<void> {
  await ctx.runner.run({ file: 'sync', args: [], mutates: true, okCodes: anyCode });
  await ctx.runner.run({ file: 'poweroff', args: [], mutates: true, okCodes: anyCode });
}
