// A guest command's options and results, and the handle of one started in the background
// (Appliance.spawn()): what the bench's tests hold on to.

export interface ShOptions {
  /** Default 120 s. On timeout the call throws (with the console tail) and the job is killed. */
  timeoutMs?: number;
  /** Bytes fed to the script's stdin (default: empty). */
  stdin?: string | Buffer;
}

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RawResult {
  code: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** Quote one word for a POSIX shell. */
export function shQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** What a background job needs of the appliance that runs it. */
export interface JobControl {
  failure(message: string): Error;
  jobPid(id: string): Promise<number | undefined>;
  killJob(id: string, signal: string): Promise<void>;
  jobOutput(id: string): Promise<{ stdout: string; stderr: string }>;
}

/** A guest command started with Appliance.spawn(). */
export class GuestJob {
  private result: Promise<RawResult>;
  private settled = false;

  constructor(
    private readonly app: JobControl,
    readonly id: string,
    result: Promise<RawResult>,
  ) {
    this.result = result;
    const mark = () => {
      this.settled = true;
    };
    result.then(mark, mark); // also keeps a rejection from being unhandled
  }

  /** Has the job ended (or the appliance stopped)? */
  get finished(): boolean {
    return this.settled;
  }

  /** Wait for the job to end. A timeout throws (with the console tail) but leaves the job running. */
  async wait(opts: { timeoutMs?: number } = {}): Promise<ShResult> {
    const timeoutMs = opts.timeoutMs ?? 600_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(this.app.failure(`guest job ${this.id} did not end within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      const r = await Promise.race([this.result, timeout]);
      return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Guest pid of the job's script (= its process group); undefined once it has ended. */
  pid(): Promise<number | undefined> {
    return this.app.jobPid(this.id);
  }

  /** Send a signal (default KILL) to the job's whole process group. */
  kill(signal = 'KILL'): Promise<void> {
    return this.app.killJob(this.id, signal);
  }

  /** What the job has written so far. */
  output(): Promise<{ stdout: string; stderr: string }> {
    return this.app.jobOutput(this.id);
  }
}
