import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { type FileHandle, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../context.js';
import { CommandError, NotFoundError, RefusedError, VerifyError } from '../errors.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { requireTools } from '../system/tools.js';
import { UPDATE_CMDLINE_KEY, PROOF_MARKER } from '../names/golden-update.js';
import { type SigningKey, loadSigningKey } from '../system/signing.js';
import type { Runner } from '../system/runner.js';
import { formatArgv } from '../system/command.js';
import {
  type GoldenManifest,
  chunkLength,
  imageIdOf,
  loadManifest,
  makeGoldenImage,
  manifestPathOf,
  readChunk,
  verifyGoldenImage,
} from './golden-image.js';
import { checkIdent } from './golden-make.js';
import { extractBootFiles } from './update-boot.js';
import { type HandoffRequest, readResult, writeHandoffDisk } from './update-handoff.js';
import {
  type Accel,
  QEMU,
  type VmDisks,
  detectAccel,
  proofBootArgs,
  qemuCommand,
  updateBootArgs,
} from './update-qemu.js';

export interface UpdateOptions {
  image: string;
  /** The command to run in the guest (argv), or a script's text (run by /bin/sh). */
  argv?: string[];
  script?: string;
  keyFile: string;
  version?: string;
  out?: string;
  workDir?: string;
  timeoutSeconds: number;
  accel: Accel | 'auto';
  /** The GRUB menu titles the proof boot must show (the recovery entries). */
  entries: string[];
}

export interface UpdateResult {
  out: string;
  manifest: GoldenManifest;
  accel: Accel;
}

export const DEFAULT_ENTRIES = ['Recover to factory default', 'Recover to latest backup'];

/** `<name>-<version>.img.zst` beside the old image, so the old one stays where it was. */
export function newImagePath(image: string, name: string, version: string): string {
  return path.join(path.dirname(path.resolve(image)), `${name}-${version}.img.zst`);
}

export function defaultVersion(old: string, now: Date): string {
  return `${old}+update.${now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}`;
}

/**
 * `golden update` as a plan: the old image verified chunk by chunk, the key, the output name and the
 * working folder checked first (a dry run makes the same checks and fails the same way), then the
 * steps; the working copy is removed whatever happened. Nothing here changes IMAGE or its manifest.
 */
export async function runGoldenUpdate(ctx: Context, o: UpdateOptions): Promise<UpdateResult | null> {
  const old = (await loadManifest(o.image, ctx.config.clone.trustedKeys)).payload;
  const version = o.version ?? defaultVersion(old.version, new Date());
  checkIdent('--image-version', version);
  const out = path.resolve(o.out ?? newImagePath(o.image, old.name, version));
  const workIn = o.workDir ?? path.dirname(path.resolve(o.image));
  const what = o.script !== undefined ? 'the script (/bin/sh)' : formatArgv(o.argv ?? []);
  const io: UpdateIo = {};
  const inWork = (apply: () => Promise<void>) => ({
    edit: { files: ['(working copy)'], root: workIn, apply },
  });
  const plan: Plan = {
    title: `golden update of ${imageIdOf(old)} into ${out} (nothing here changes ${o.image} or its manifest)`,
    notes: [`the command run in the image: ${what}`],
    checks: updateChecks(ctx, o, out, workIn, io),
    steps: [
      {
        title: `decompress ${o.image} to a sparse working copy in ${workIn}`,
        ...inWork(async () => {
          io.work = await mkdtemp(path.join(workIn, '.zshield-update-'));
          io.disks = { image: path.join(io.work, 'golden.raw'), handoff: path.join(io.work, 'handoff.raw') };
          await decompressSparse(o.image, old, io.disks.image);
        }),
      },
      {
        title: `boot the copy in QEMU (${o.accel === 'auto' ? 'KVM if a trial boot with it succeeds, else TCG' : o.accel}) with ${UPDATE_CMDLINE_KEY}=1 and run the command`,
        ...inWork(async () => {
          io.accel = await chooseAccel(ctx, o, io.disks!.image, io.work!);
          await updateBoot(ctx.runner, o, io.disks!, io.accel, io.work!);
          ctx.out.print('update command succeeded; proof boot through the image’s GRUB');
        }),
      },
      {
        title: `boot the copy again through its own GRUB to the proof marker; its menu must show: ${o.entries.join(', ')}`,
        ...inWork(() => proofBoot(ctx.runner, o, io.disks!, io.accel!, io.work!)),
      },
      {
        title: 'write the new image and its signed manifest',
        edit: {
          files: [out, manifestPathOf(out)],
          apply: async () => {
            const manifest = await makeGoldenImage({
              source: io.disks!.image,
              out,
              name: old.name,
              version,
              key: io.key!,
            });
            io.result = { out, manifest, accel: io.accel! };
          },
        },
      },
    ],
    always: [
      {
        title: 'remove the working copy',
        ...inWork(async () => {
          if (io.work) await rm(io.work, { recursive: true, force: true });
        }),
      },
    ],
  };
  const run = await runPlan(ctx, plan, { confirm: 'none' });
  return run.applied ? io.result! : null;
}

/** What a golden update holds between its steps: the key, the working copy, the accelerator, the result. */
interface UpdateIo {
  key?: SigningKey;
  work?: string;
  disks?: VmDisks;
  accel?: Accel;
  result?: UpdateResult;
}

/** The checks before anything is written (a dry run makes the same ones and fails the same way). */
function updateChecks(
  ctx: Context,
  o: UpdateOptions,
  out: string,
  workIn: string,
  io: UpdateIo,
): Plan['checks'] {
  return [
    {
      title: `every chunk of ${o.image} matches its signed manifest`,
      run: () => verifyOld(o.image, ctx.config.clone.trustedKeys),
    },
    {
      title: `the signing key ${o.keyFile} loads`,
      run: async () => {
        io.key = await loadSigningKey(o.keyFile);
      },
    },
    {
      title: `${out} does not exist yet`,
      run: () => {
        if (existsSync(out) || existsSync(manifestPathOf(out)))
          throw new RefusedError(`${out} exists: give another --image-version or --out`);
      },
    },
    { title: `QEMU and debugfs are installed`, run: () => requireTools(ctx.runner, [QEMU, 'debugfs']) },
    { title: `the working folder ${workIn} exists`, run: () => folderExists(workIn) },
  ];
}

async function verifyOld(image: string, trusted: readonly string[]): Promise<void> {
  const r = await verifyGoldenImage(image, trusted);
  if (r.badChunks.length > 0)
    throw new VerifyError(
      `${image}: chunk(s) ${r.badChunks.join(', ')} do not match the manifest: not updated`,
    );
}

function folderExists(dir: string): void {
  let ok = false;
  try {
    ok = statSync(dir).isDirectory();
  } catch {
    ok = false;
  }
  if (!ok) throw new NotFoundError(`the folder ${dir} does not exist`);
}

/** Zero blocks are skipped (seeked over), so a mostly empty medium costs little disk. */
export async function decompressSparse(image: string, m: GoldenManifest, raw: string): Promise<void> {
  const src = await open(image, 'r');
  const dst = await open(raw, 'w', 0o600);
  try {
    await dst.truncate(m.size);
    for (let i = 0; i < m.chunks.length; i++) {
      const chunk = await readChunk(src, m, i);
      await writeNonZero(dst, chunk, i * m.chunkSize, chunkLength(m, i));
    }
    await dst.sync();
  } finally {
    await src.close();
    await dst.close();
  }
}

const BLOCK = 64 * 1024;
const ZERO = Buffer.alloc(BLOCK);

async function writeNonZero(dst: FileHandle, chunk: Buffer, at: number, len: number) {
  for (let off = 0; off < len; off += BLOCK) {
    const part = chunk.subarray(off, Math.min(off + BLOCK, len));
    if (!part.equals(ZERO.subarray(0, part.length))) await dst.write(part, 0, part.length, at + off);
  }
}

async function chooseAccel(ctx: Context, o: UpdateOptions, image: string, work: string): Promise<Accel> {
  if (o.accel !== 'auto') return o.accel;
  const boot = await extractBootFiles(ctx.runner, image, work, '');
  const r = await detectAccel(ctx.runner, boot.kernel, path.join(work, 'trial.log'));
  ctx.out.print(`accelerator: ${r.accel} (${r.why})`);
  return r.accel;
}

async function updateBoot(runner: Runner, o: UpdateOptions, d: VmDisks, accel: Accel, work: string) {
  const req: HandoffRequest = {
    mode: 'update',
    argv: o.argv ?? [],
    timeoutSeconds: o.timeoutSeconds,
    ...(o.script !== undefined ? { script: o.script } : {}),
  };
  await writeHandoffDisk(d.handoff, req);
  const boot = await extractBootFiles(runner, d.image, work, `${UPDATE_CMDLINE_KEY}=1`);
  const log = path.join(work, 'update-console.log');
  await bootVm(runner, updateBootArgs(accel, d, boot, log), o.timeoutSeconds + 120, log, 'update boot');
  const res = await readResult(d.handoff);
  if (!res)
    throw new VerifyError(
      `update boot: the guest reported nothing (it did not boot, or its boot hook did not run): not updated\n${await tail(log)}`,
    );
  if (res.exitCode !== 0) {
    throw new CommandError({
      argv: req.script !== undefined ? ['/bin/sh', '(script)'] : req.argv,
      code: res.exitCode,
      signal: undefined,
      stdout: res.output,
      stderr: '',
    });
  }
}

async function proofBoot(runner: Runner, o: UpdateOptions, d: VmDisks, accel: Accel, work: string) {
  const nonce = randomBytes(8).toString('hex');
  await writeHandoffDisk(d.handoff, { mode: 'proof', nonce });
  const log = path.join(work, 'proof-console.log');
  await bootVm(runner, proofBootArgs(accel, d, log), o.timeoutSeconds + 120, log, 'proof boot');
  const problems = proofProblems(await readFile(log, 'utf8').catch(() => ''), nonce, o.entries);
  if (problems.length > 0)
    throw new VerifyError(`proof boot: ${problems.join('; ')}: not updated\n${await tail(log)}`);
}

/** What the proof boot's console lacks: the marker with this boot's nonce, each menu title. */
export function proofProblems(consoleText: string, nonce: string, entries: readonly string[]): string[] {
  const out: string[] = [];
  for (const t of entries) if (!consoleText.includes(t)) out.push(`GRUB's menu did not show "${t}"`);
  if (!consoleText.includes(`${PROOF_MARKER} ${nonce}`))
    out.push('the system did not come up to its boot hook (no proof marker)');
  return out;
}

async function bootVm(runner: Runner, args: string[], timeoutSeconds: number, log: string, what: string) {
  try {
    await runner.run(qemuCommand(args, timeoutSeconds));
  } catch (err) {
    const why = err instanceof CommandError && err.signal ? err.signal : (err as Error).message;
    throw new VerifyError(`${what}: QEMU did not end by itself (${why}): not updated\n${await tail(log)}`);
  }
}

async function tail(log: string): Promise<string> {
  const text = await readFile(log, 'utf8').catch(() => '');
  return `last console lines:\n${text.split('\n').slice(-15).join('\n')}`;
}
