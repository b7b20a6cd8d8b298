import type { Context } from '../context.js';
import type { Pipeline } from '../system/pipeline.js';

const EVERY_MS = 5000;

/**
 * The progress meters of an image job's copy, on the terminal and in the log: at most one line
 * every 5 s, and e2image's final line. e2image -p says "Copying n / m blocks", dd status=progress
 * "... bytes ... copied"; whatever else those tools print goes to the debug log.
 */
export function withProgress(ctx: Context, p: Pipeline): Pipeline {
  let last = 0;
  const meter = (file: string) =>
    file === 'e2image'
      ? (text: string) => (/^Copied\b/.test(text) ? 'final' : /^Copying\b/.test(text) ? 'step' : null)
      : file === 'dd'
        ? (text: string) => (/bytes/.test(text) ? 'step' : null)
        : null;
  return {
    ...p,
    stages: p.stages.map((s) => {
      const kind = meter(s.file);
      if (!kind) return s;
      return {
        ...s,
        onLine: (line: string) => {
          const text = line.trim();
          const k = kind(text);
          if (!k) return ctx.log.debug(`  ${text}`);
          const now = Date.now();
          if (k !== 'final' && now - last < EVERY_MS) return;
          last = now;
          ctx.log.info(`  ${text}`);
        },
      };
    }),
  };
}
