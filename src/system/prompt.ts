import { InterruptedError, UsageError } from '../errors.js';

/**
 * Questions on the operator's terminal. Answers are read from our own buffer of the input so that
 * typed-ahead lines are not lost between questions; a secret is read with the terminal in raw
 * mode, so it is never echoed (and Ctrl-C, which raw mode delivers as a byte, still cancels).
 */
export interface Prompter {
  /** Ask and read one line (echoed by the terminal). */
  line(question: string): Promise<string>;
  /** Ask and read one line without echo. */
  secret(question: string): Promise<string>;
  /**
   * Read one line if one comes within `ms` (the boot countdown: no answer is an answer). Returns
   * null when the time runs out or the input ends.
   */
  lineWithin(ms: number): Promise<string | null>;
  print(text: string): void;
  close(): void;
}

type Input = NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };

export class StreamPrompter implements Prompter {
  private buf = '';
  private ended = false;
  private wake: (() => void) | null = null;
  private readonly onData = (d: Buffer | string) => {
    this.buf += d.toString();
    this.wake?.();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.wake?.();
  };
  private readonly onAbort = () => this.wake?.();

  constructor(
    private readonly input: Input,
    private readonly output: NodeJS.WritableStream,
    private readonly signal?: AbortSignal,
  ) {
    input.on('data', this.onData);
    input.on('end', this.onEnd);
    signal?.addEventListener('abort', this.onAbort);
    input.resume();
  }

  print(text: string): void {
    this.output.write(`${text}\n`);
  }

  private async more(question: string): Promise<void> {
    if (this.signal?.aborted) throw new InterruptedError('cancelled; nothing written');
    if (this.ended) throw new UsageError(`input ended before an answer to "${question.trim()}"`);
    await new Promise<void>((r) => {
      this.wake = r;
    });
    this.wake = null;
    if (this.signal?.aborted) throw new InterruptedError('cancelled; nothing written');
  }

  async line(question: string): Promise<string> {
    this.output.write(question);
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      if (m) {
        const answer = this.buf.slice(0, m.index);
        this.buf = this.buf.slice(m.index + m[0].length);
        if (answer.includes('\x03')) throw new InterruptedError('cancelled; nothing written');
        return answer.trim();
      }
      if (this.ended && this.buf) {
        const answer = this.buf;
        this.buf = '';
        return answer.trim();
      }
      await this.more(question);
    }
  }

  async lineWithin(ms: number): Promise<string | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      if (m) {
        const answer = this.buf.slice(0, m.index);
        this.buf = this.buf.slice(m.index + m[0].length);
        return answer.trim();
      }
      // After the end of input the time still runs out (a countdown on a console nobody types at).
      const left = deadline - Date.now();
      if (left <= 0) return null;
      if (this.signal?.aborted) throw new InterruptedError('cancelled; nothing written');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = null;
    }
  }

  async secret(question: string): Promise<string> {
    const tty = this.input.isTTY === true && typeof this.input.setRawMode === 'function';
    if (!tty) {
      // Not a terminal (a pipe, a test): nothing is echoed anyway.
      this.output.write(question);
      const m = await this.line('');
      this.output.write('\n');
      return m;
    }
    // No echo before the question shows: an answer typed as soon as it appears is never echoed.
    this.input.setRawMode!(true);
    this.output.write(question);
    let value = '';
    try {
      for (;;) {
        while (this.buf.length) {
          const ch = this.buf[0]!;
          this.buf = this.buf.slice(1);
          if (ch === '\r' || ch === '\n') {
            // A CR LF pair typed ahead counts once.
            if (ch === '\r' && this.buf[0] === '\n') this.buf = this.buf.slice(1);
            return value;
          }
          if (ch === '\x03') throw new InterruptedError('cancelled; nothing written');
          if (ch === '\x04' && value === '') throw new UsageError('input ended before the password');
          if (ch === '\x7f' || ch === '\b') value = value.slice(0, -1);
          else if (ch === '\x15') value = '';
          else if (ch >= ' ') value += ch;
        }
        await this.more(question);
      }
    } finally {
      this.input.setRawMode!(false);
      this.output.write('\n');
    }
  }

  close(): void {
    this.input.off('data', this.onData);
    this.input.off('end', this.onEnd);
    this.signal?.removeEventListener('abort', this.onAbort);
    this.input.pause();
  }
}

/** Ask until the answer is y/yes or n/no. */
export async function askYesNo(p: Prompter, question: string): Promise<boolean> {
  for (;;) {
    const a = (await p.line(question)).trim();
    if (/^(y|yes)$/i.test(a)) return true;
    if (/^(n|no)$/i.test(a)) return false;
    p.print('  please answer y or n');
  }
}

/** A new password, typed twice without echo. Empty means none. */
export async function askNewPassword(p: Prompter, indent = '  '): Promise<string> {
  for (let i = 0; i < 3; i++) {
    const a = await p.secret(`${indent}new password: `);
    if (a === '') return '';
    const b = await p.secret(`${indent}repeat it: `);
    if (a === b) return a;
    p.print(`${indent}the two entries differ; again`);
  }
  throw new UsageError('the password entries did not match three times; nothing written');
}
