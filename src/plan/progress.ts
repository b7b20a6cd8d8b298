import { formatBytes } from '../config/size.js';
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
      // The last update is drawn whatever the throttle says: the bar ends at 100%, not where it was.
      if (tty && (u.final || t - lastDraw >= DRAW_EVERY_MS)) {
        lastDraw = t;
        drawn = true;
        // A pseudo-terminal without a size says 0 columns: taken as unknown.
        tty.write(`\r\x1b[2K${formatBar(label, u, tty.columns || 80)}`);
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

/**
 * The progress of one long step of a command, for its context: the one place that decides where
 * progress goes. Never stdout (it carries the command's result, or its one --json document): the
 * bar on stderr when stderr is a terminal, plain lines through the logger (stderr and the log
 * file) otherwise. With --json (ctx.doc, set by output.ts jsonOutput) the console gets no progress
 * lines: they go to the log file only (a bar on a terminal's stderr is still drawn: it is not
 * stdout, and a person is watching).
 */
export function progressFor(
  ctx: { log: Pick<Logger, 'info' | 'toFile'>; doc?: unknown },
  label: string,
  opts: Omit<ProgressOptions, 'log'> & {
    /** The command prints JSON without ctx.doc (runPlan with show 'json'). */
    json?: boolean;
  } = {},
): Progress {
  const { json, ...rest } = opts;
  const log =
    ctx.doc || json ? { info: (m: string) => ctx.log.toFile('info', m), toFile: ctx.log.toFile } : ctx.log;
  return startProgress(label, { ...rest, log });
}

/** Work counted in bytes (or chunks): `at(done)` after each piece, `done()` at the end (also after a failure). */
export interface Meter {
  at(done: number): void;
  done(): void;
}

/**
 * Progress of work zshield does itself (reading, compressing, hashing, writing chunks), counted
 * against a known total: `label: 42% 1.2 GiB of 3.0 GiB`, throttled as every progress is (the
 * bar at most 4 times a second, a log line at the start, every 5 s and at the end).
 */
export function meterFor(
  ctx: Parameters<typeof progressFor>[0],
  label: string,
  total: number,
  opts: Omit<ProgressOptions, 'log' | 'logLine'> & { unit?: 'bytes' | 'chunks' } = {},
): Meter {
  const { unit = 'bytes', ...rest } = opts;
  const amount = (n: number) => (unit === 'bytes' ? formatBytes(n) : `${n} chunks`);
  const p = progressFor(ctx, label, {
    ...rest,
    logLine: (u) => `${label}: ${Math.floor((u.fraction ?? 0) * 100)}% ${u.text}`,
  });
  let ended = false;
  return {
    at(done) {
      if (ended) return;
      const fraction = total > 0 ? Math.min(1, done / total) : 1;
      const text = unit === 'bytes' ? `${amount(done)} of ${amount(total)}` : `${done} of ${amount(total)}`;
      p.update({ fraction, text, final: done >= total });
    },
    done() {
      if (ended) return;
      ended = true;
      p.done();
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
