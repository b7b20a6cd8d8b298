import type { Config } from '../config/schema.js';
import { formatBytes } from '../config/size.js';

/** What `status` says about image backups (image.dir), or null when they are not in use. */
export interface ImagesStatus {
  dir: string;
  /** The host whose images these are (the host part of their names). */
  host: string;
  /** When the daemon makes one: "daily", "weekly on <day>", or null (by hand only). */
  schedule: string | null;
  /** Images of this host (an image file present; leftovers of a checksum or manifest alone do not count). */
  count: number;
  newest: {
    file: string;
    time: string;
    sizeBytes: number | null;
    /** Image, checksum and a valid manifest recording its verification: it counts as a backup. */
    verified: boolean;
    fsck: string | null;
    problem: string | null;
  } | null;
  /** A running `image create` (its pid). */
  jobPid: number | null;
  /** The directory could not be read. */
  error: string | null;
}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

function scheduleText(s: Config['image']['schedule']): string | null {
  if (s === null) return null;
  if (s === 'daily') return 'daily';
  return `weekly on ${DAYS[s.weekday] ?? `day ${s.weekday}`}`;
}

/**
 * The image backups of this host, read-only (the listing `image list` uses). Shown when image
 * backup is configured (image.schedule) or images exist: a box that never made one by hand and has
 * no schedule is not told about a feature it does not use.
 */
export async function gatherImages(config: Config, kind?: string): Promise<ImagesStatus | null> {
  // Loaded here, not at every start of the binary (as the image commands are).
  const { listedImages, hostKind, runningImageJob } = await import('../image/index.js');
  const host = kind ?? hostKind();
  const dir = config.image.dir;
  const schedule = scheduleText(config.image.schedule);
  let listed: ReturnType<typeof listedImages>;
  try {
    listed = listedImages(dir).filter((i) => i.host === host && i.sizeBytes !== null);
  } catch (err) {
    // Unreadable (permissions, not a directory): worth saying only when images are expected there.
    if (schedule === null) return null;
    const code = (err as NodeJS.ErrnoException).code;
    return {
      dir,
      host,
      schedule,
      count: 0,
      newest: null,
      jobPid: null,
      error: `cannot read ${dir}: ${code ?? (err as Error).message}`,
    };
  }
  const jobPid = runningImageJob(config.paths.runDir);
  if (schedule === null && listed.length === 0 && jobPid === null) return null;
  const n = listed[0];
  return {
    dir,
    host,
    schedule,
    count: listed.length,
    newest: n
      ? {
          file: n.file,
          time: n.time,
          sizeBytes: n.sizeBytes,
          verified: n.complete && n.problem === null && n.fsck !== null,
          fsck: n.fsck,
          problem: n.problem,
        }
      : null,
    jobPid,
    error: null,
  };
}

export function formatImages(i: ImagesStatus): string[] {
  const made = i.schedule ? `made ${i.schedule}` : 'no schedule (image.schedule)';
  if (i.error) return [`images:        ERROR: ${i.error}`];
  const lines = [
    i.count === 0
      ? `images:        none of ${i.host} in ${i.dir}; ${made}`
      : `images:        ${i.count} of ${i.host} in ${i.dir}; ${made}`,
  ];
  const n = i.newest;
  if (n) {
    const check = n.verified
      ? `verified${n.fsck ? ` (fsck ${n.fsck})` : ''}`
      : `NOT VERIFIED: ${n.problem ?? 'no verification recorded'}`;
    const size = n.sizeBytes === null ? '' : `, ${formatBytes(n.sizeBytes)}`;
    lines.push(`  newest:      ${n.file}, ${n.time}${size}, ${check}`);
  }
  if (i.jobPid !== null) lines.push(`  running:     an image job (pid ${i.jobPid})`);
  return lines;
}
