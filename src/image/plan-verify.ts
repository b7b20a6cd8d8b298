import path from 'node:path';
import type { CommandStep, PipelineStep } from '../plan/plan.js';
import type { Pipeline } from '../system/pipeline.js';

/**
 * The image unpacked to a sparse file `raw`: only the file system's data is written (tar --sparse
 * recreates the holes; the raw layout made before the archive, by zstd --sparse). zstd checks the
 * checksum of every frame on the way.
 */
export function unpackPipeline(image: string, raw: string, archived: boolean): Pipeline {
  return {
    stages: !archived
      ? [{ file: 'zstd', args: ['-d', '-q', '-f', '--sparse', '-o', raw, image], mutates: true }]
      : [
          { file: 'zstd', args: ['-d', '-c', '-q', image], mutates: false },
          {
            file: 'tar',
            // The one member gets the copy's name, whatever the archive calls it: nothing is
            // written anywhere else.
            args: [
              '-x',
              '--sparse',
              '-f',
              '-',
              '-C',
              path.dirname(raw),
              `--transform=s,.*,${path.basename(raw)},`,
            ],
            mutates: true,
          },
        ],
    mutates: true,
  };
}

/** What the verification steps saw (their output, read as they run): the job judges it after. */
export interface VerifyFindings {
  /** e2fsck -fy changed the copy ("FILE SYSTEM WAS MODIFIED"): journal replay, orphan inodes. */
  fsckModified: boolean;
  /** debugfs's stat output per path that must be in the image. */
  stat: Map<string, string>;
}

export interface VerifySteps {
  unpack: PipelineStep;
  /** What a restore's e2fsck does, done to the copy: it is the copy's own, so it may be repaired. */
  fsckFix: CommandStep;
  /** Then the copy must be consistent: any problem left is a failure (exit code not 0). */
  fsck: CommandStep;
  contains: CommandStep[];
  findings: VerifyFindings;
}

export const newFindings = (): VerifyFindings => ({ fsckModified: false, stat: new Map() });

/**
 * How an image is verified without mounting anything: unpacked to a sparse copy (zstd checks the
 * checksum of every frame on the way), the copy's file system repaired as a restore would and then
 * checked read-only by e2fsck, and looked into with debugfs for the paths a system has. The copy is
 * the caller's to remove; the findings are the caller's to judge (checkFindings in verify.ts).
 */
export function planVerify(
  image: string,
  raw: string,
  mustContain: readonly string[],
  archived = true,
  signal?: AbortSignal,
): VerifySteps {
  const findings = newFindings();
  const sig = signal ? { signal } : {};
  return {
    findings,
    unpack: {
      title: 'verify: unpack the image to a sparse copy (zstd checks its frame checksums)',
      pipeline: { ...unpackPipeline(image, raw, archived), ...sig },
    },
    fsckFix: {
      title: 'verify: let e2fsck repair the copy as a restore would (journal replay, orphan inodes)',
      command: {
        file: 'e2fsck',
        args: ['-f', '-y', raw],
        mutates: true,
        okCodes: [0, 1],
        onLine: (line, stream) => {
          if (stream === 'stdout' && /FILE SYSTEM WAS MODIFIED/.test(line)) findings.fsckModified = true;
        },
      },
    },
    fsck: {
      title: 'verify: check the file system in the copy, read-only: nothing may be left to repair',
      command: { file: 'e2fsck', args: ['-f', '-n', raw], mutates: false },
    },
    contains: mustContain.map((p) => ({
      title: `verify: the copy holds ${p}`,
      // debugfs exits 0 even when the path is missing: its output is judged after.
      command: {
        file: 'debugfs',
        args: ['-R', `stat "${p}"`, raw],
        mutates: false,
        onLine: (line, stream) => {
          if (stream === 'stdout') findings.stat.set(p, `${findings.stat.get(p) ?? ''}${line}\n`);
        },
      },
    })),
  };
}

/** The verification steps in the order they run. */
export const verifySteps = (v: VerifySteps) => [v.unpack, v.fsckFix, v.fsck, ...v.contains];
