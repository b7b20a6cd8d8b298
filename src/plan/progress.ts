import type { Logger } from '../log/logger.js';

/** How often a long step's progress reaches the log (the terminal bar is redrawn at most 4 times a second). */
const LOG_EVERY_MS = 5000;
const DRAW_EVERY_MS = 250;

export interface ProgressUpdate {
  /** 0..1 when the tool says how far it is. */
  fraction?: number;
  /** The tool's own words (rsync's, lvconvert's, e2image's line), or zshield's. */
  text: string;
  /** The last line (always logged). */
  final?: boolean;
}

export interface Progress {
  update(u: ProgressUpdate): void;
  /** Ends the bar's line on the terminal. */
  done(): void;
}

export interface ProgressOptions {
  log: Pick<Logger, 'info' | 'toFile'>;
  /** A terminal to draw a bar on (stderr when it is one); null: plain lines only. */
  tty?: NodeJS.WriteStream | null;
  now?: () => number;
  /** The log line for an update (default: `  42% <the tool's words>`). */
  logLine?: (u: ProgressUpdate) => string;
}

/**
 * The one progress component: a bar on a terminal, plain throttled lines in the log (and on the
 * console when there is no terminal: at boot, on a serial console, under systemd). Every long step
 * (rsync, merge, e2image, dd, an upload, a restic restore) reports through it.
 */
export function startProgress(label: string, opts: ProgressOptions): Progress {
  const now = opts.now ?? Date.now;
  const tty = opts.tty === undefined ? (process.stderr.isTTY ? process.stderr : null) : opts.tty;
  let lastLog = Number.NEGATIVE_INFINITY;
  let lastDraw = Number.NEGATIVE_INFINITY;
  let drawn = false;
  return {
    update(u) {
      const t = now();
      if (tty && t - lastDraw >= DRAW_EVERY_MS) {
        lastDraw = t;
        drawn = true;
        tty.write(`\r\x1b[2K${formatBar(label, u, tty.columns ?? 80)}`);
      }
      if (u.final || t - lastLog >= LOG_EVERY_MS) {
        lastLog = t;
        const line = opts.logLine
          ? opts.logLine(u)
          : `  ${u.fraction === undefined ? '' : `${Math.floor(u.fraction * 100)}% `}${u.text}`;
        // With a bar on the terminal the log line goes to the file only (the bar already shows it).
        if (tty) opts.log.toFile('info', line);
        else opts.log.info(line);
      }
    },
    done() {
      if (tty && drawn) tty.write('\n');
    },
  };
}

export function formatBar(label: string, u: ProgressUpdate, columns: number): string {
  const pct = u.fraction === undefined ? null : Math.max(0, Math.min(1, u.fraction));
  const width = 20;
  const bar =
    pct === null
      ? ''
      : ` [${'#'.repeat(Math.round(pct * width)).padEnd(width, '.')}] ${Math.floor(pct * 100)}%`;
  return `${label}${bar} ${u.text}`.slice(0, Math.max(20, columns - 1));
}

/** Parsers of the tools' progress lines, named once. */
export const progressParsers = {
  /** rsync --info=progress2: "  1,234,567  42%   10.00MB/s    0:00:01 (xfr#..)". */
  rsync: (line: string): ProgressUpdate | null => {
    const m = /\s(\d{1,3})%\s/.exec(` ${line} `);
    return m ? { fraction: Number(m[1]) / 100, text: line.trim(), final: m[1] === '100' } : null;
  },
  /**
   * lvconvert -i 1 / lvm lvpoll: "vgroup/snap0: Merged: 42.00%". LVM prints the snapshot's usage
   * still to merge (it counts down), so the fraction done is 1 - that.
   */
  merge: (line: string): ProgressUpdate | null => {
    const t = line.trim();
    if (/has finished/.test(t)) return { fraction: 1, text: t, final: true };
    const m = /Merged:\s*([\d.]+)%/.exec(t);
    return m ? { fraction: 1 - Number(m[1]) / 100, text: t } : { text: t };
  },
  /** e2image -p: "Copying 123 / 456 blocks (27%)", final "Copied ...". */
  e2image: (line: string): ProgressUpdate | null => {
    const t = line.trim();
    if (/^Copied\b/.test(t)) return { fraction: 1, text: t, final: true };
    const m = /^Copying\s+(\d+)\s*\/\s*(\d+)/.exec(t);
    return m ? { fraction: Number(m[1]) / Math.max(1, Number(m[2])), text: t } : null;
  },
  /** dd status=progress: "123456 bytes (123 kB) copied, 1 s, 123 kB/s". */
  dd: (line: string): ProgressUpdate | null => (/bytes/.test(line) ? { text: line.trim() } : null),
};
