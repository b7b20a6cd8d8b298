import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import winston from 'winston';

export type Level = 'error' | 'warn' | 'info' | 'debug';

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  log(level: Level, message: string): void;
  /** Register a secret: it is replaced by *** in every line written from now on. */
  redact(secret: string): void;
  /** Write to the log file only (the terminal already saw it, e.g. the final error line). */
  toFile(level: Level, message: string): void;
  /** Flush the file transport; call before the process exits. */
  close(): Promise<void>;
}

export interface LoggerOptions {
  /** Level for the log file. */
  level: Level;
  /** Level for the terminal (stderr). 'silent' for none. */
  consoleLevel: Level | 'silent';
  /** Log file path; null for none. An unwritable file (read-only golden root) falls back to none, with a warning. */
  file: string | null;
}

/**
 * winston to the console (stderr, so stdout stays clean for --json) and to a log file with
 * timestamps. Secrets registered with redact() never reach either.
 */
export function createLogger(opts: LoggerOptions): Logger {
  const secrets = new Set<string>();
  const scrub = winston.format((info) => {
    let msg = String(info.message);
    for (const s of secrets) msg = msg.split(s).join('***');
    info.message = msg;
    return info;
  });
  const transports: winston.transport[] = [];
  let fileProblem: string | undefined;
  let fileTransport: winston.transports.FileTransportInstance | undefined;
  if (opts.file) {
    try {
      mkdirSync(path.dirname(opts.file), { recursive: true, mode: 0o750 });
      appendFileSync(opts.file, '', { mode: 0o640 });
      fileTransport = new winston.transports.File({
        filename: opts.file,
        level: opts.level,
        format: winston.format.combine(
          scrub(),
          winston.format.timestamp(),
          winston.format.printf((i) => `${i['timestamp']} [${process.pid}] ${i.level}: ${i.message}`),
        ),
      });
      transports.push(fileTransport);
    } catch (err) {
      fileProblem = `log file ${opts.file} not writable (${(err as NodeJS.ErrnoException).code ?? err}); logging to the console only`;
    }
  }
  if (opts.consoleLevel !== 'silent') {
    transports.push(
      new winston.transports.Console({
        level: opts.consoleLevel,
        stderrLevels: ['error', 'warn', 'info', 'debug'],
        format: winston.format.combine(
          winston.format((info) => (info['fileOnly'] ? false : info))(),
          scrub(),
          winston.format.printf((i) => (i.level === 'info' ? String(i.message) : `${i.level}: ${i.message}`)),
        ),
      }),
    );
  }
  const w = winston.createLogger({ levels: winston.config.npm.levels, transports, exitOnError: false });
  if (transports.length === 0) w.silent = true;
  if (fileProblem) w.warn(fileProblem);

  return {
    error: (m) => w.error(m),
    warn: (m) => w.warn(m),
    info: (m) => w.info(m),
    debug: (m) => w.debug(m),
    log: (level, m) => w.log(level, m),
    redact: (s) => {
      if (s) secrets.add(s);
    },
    toFile: (level, m) => w.log({ level, message: m, fileOnly: true }),
    close: () =>
      new Promise<void>((resolve) => {
        if (!fileTransport) return resolve();
        const t = setTimeout(resolve, 2000);
        fileTransport.on('finish', () => {
          clearTimeout(t);
          resolve();
        });
        w.end();
      }),
  };
}

/** A logger that keeps lines in memory, for tests. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const secrets = new Set<string>();
  const put = (level: string, m: string) => {
    let msg = m;
    for (const s of secrets) msg = msg.split(s).join('***');
    lines.push(`${level}: ${msg}`);
  };
  return {
    lines,
    error: (m) => put('error', m),
    warn: (m) => put('warn', m),
    info: (m) => put('info', m),
    debug: (m) => put('debug', m),
    log: (l, m) => put(l, m),
    redact: (s) => {
      if (s) secrets.add(s);
    },
    toFile: (l, m) => put(l, m),
    close: async () => {},
  };
}
