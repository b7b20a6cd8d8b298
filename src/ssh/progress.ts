// What an upload shows while it runs and how fast it may go: its progress through the one progress
// component, and the token bucket behind `--bwlimit`-like settings.
import { formatBytes } from '../config/size.js';
import { progressFor } from '../plan/progress.js';

/** A token bucket: `take(n)` resolves when n more bytes fit in the rate. */
export class RateLimiter {
  private next = Number.NEGATIVE_INFINITY;
  constructor(
    private readonly bytesPerSecond: number,
    private readonly now: () => number = () => performance.now(),
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  async take(n: number): Promise<void> {
    const t = this.now();
    // Allow a burst of 1/4 s so small writes do not each wait.
    const burstMs = 250;
    this.next = Math.max(this.next, t - burstMs) + (n / this.bytesPerSecond) * 1000;
    const wait = this.next - t;
    if (wait > 0) await this.sleep(wait);
  }
}

/**
 * An upload's progress through the one progress component (plan/progress.ts progressFor, which
 * decides where progress goes: a bar on a terminal, a line in the log at most every 5 s and at the
 * end; with --json only the log file), with the rate since this run began.
 */
export class Progress {
  private readonly started: number;
  private readonly meter: ReturnType<typeof progressFor>;
  private ended = false;
  constructor(
    ctx: Parameters<typeof progressFor>[0],
    private readonly name: string,
    private readonly total: number,
    private readonly from: number,
    private readonly now: () => number = () => Date.now(),
    tty?: NodeJS.WriteStream | null,
  ) {
    this.started = now();
    this.meter = progressFor(ctx, `remote copy: ${name}`, {
      now,
      logLine: (u) => u.text,
      ...(tty === undefined ? {} : { tty }),
    });
  }

  update(done: number): void {
    if (this.ended) return;
    const pct = this.total === 0 ? 100 : Math.floor((done / this.total) * 100);
    const secs = Math.max((this.now() - this.started) / 1000, 0.001);
    const rate = (done - this.from) / secs;
    this.meter.update({
      fraction: pct / 100,
      final: done >= this.total,
      text: `remote copy: ${this.name} ${pct}% (${formatBytes(done)} of ${formatBytes(this.total)}, ${formatBytes(rate)}/s)`,
    });
    if (done >= this.total) {
      this.ended = true;
      this.meter.done();
    }
  }
}
