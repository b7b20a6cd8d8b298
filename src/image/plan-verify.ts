import path from 'node:path';
import type { CommandStep, PipelineStep, Step } from '../plan/plan.js';
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

/** e2fsck and debugfs on a file system (the unpacked copy, or the job's own snapshot). */
export interface FsCheckSteps {
  /** What a restore's e2fsck does: the target is the job's own, so it may be repaired. */
  fsckFix: CommandStep;
  /** Then it must be consistent: any problem left is a failure (exit code not 0). Null: -fy's word is taken. */
  fsck: CommandStep | null;
  contains: CommandStep[];
  findings: VerifyFindings;
}

export interface VerifySteps extends FsCheckSteps {
  /** Null when the file system is checked where it is (the job's own snapshot), not unpacked. */
  unpack: PipelineStep | null;
}

export const newFindings = (): VerifyFindings => ({ fsckModified: false, stat: new Map() });

/**
 * Check a file system without mounting it: let e2fsck repair it as a restore would (journal
 * replay, orphan inodes), optionally check it read-only after, and look into it with debugfs for
 * the paths a system has. `what` names the target in the titles.
 */
export function fsCheckSteps(
  target: string,
  what: string,
  mustContain: readonly string[],
  recheck: boolean,
): FsCheckSteps {
  const findings = newFindings();
  return {
    findings,
    fsckFix: {
      title: `verify: let e2fsck repair ${what} as a restore would (journal replay, orphan inodes)`,
      command: {
        file: 'e2fsck',
        // Exit 1: corrected, now consistent; 4 (left uncorrected) fails the step.
        args: ['-f', '-y', target],
        mutates: true,
        okCodes: [0, 1],
        timeoutMs: 3_600_000,
        onLine: (line, stream) => {
          if (stream === 'stdout' && /FILE SYSTEM WAS MODIFIED/.test(line)) findings.fsckModified = true;
        },
      },
    },
    fsck: recheck
      ? {
          title: `verify: check the file system in ${what}, read-only: nothing may be left to repair`,
          command: { file: 'e2fsck', args: ['-f', '-n', target], mutates: false, timeoutMs: 3_600_000 },
        }
      : null,
    contains: mustContain.map((p) => ({
      title: `verify: ${what} holds ${p}`,
      // debugfs exits 0 even when the path is missing: its output is judged after.
      command: {
        file: 'debugfs',
        args: ['-R', `stat "${p}"`, target],
        mutates: false,
        onLine: (line, stream) => {
          if (stream === 'stdout') findings.stat.set(p, `${findings.stat.get(p) ?? ''}${line}\n`);
        },
      },
    })),
  };
}

/**
 * How an image is verified without mounting anything: unpacked to a sparse copy (zstd checks the
 * checksum of every frame on the way), the copy's file system repaired as a restore would and then
 * checked read-only by e2fsck, and looked into with debugfs for the paths a system has. The copy is
 * the caller's to remove; the findings are the caller's to judge (judgeContent in verify.ts).
 */
export function planVerify(
  image: string,
  raw: string,
  mustContain: readonly string[],
  archived = true,
  signal?: AbortSignal,
): VerifySteps {
  return {
    unpack: {
      title: 'verify: unpack the image to a sparse copy (zstd checks its frame checksums)',
      pipeline: { ...unpackPipeline(image, raw, archived), ...(signal ? { signal } : {}) },
    },
    ...fsCheckSteps(raw, 'the copy', mustContain, true),
  };
}

/** The verification steps in the order they run. */
export const verifySteps = (v: VerifySteps): Step[] => [
  ...(v.unpack ? [v.unpack] : []),
  v.fsckFix,
  ...(v.fsck ? [v.fsck] : []),
  ...v.contains,
];
