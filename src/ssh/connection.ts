import type { Context } from '../context.js';
import { InterruptedError, type ZshieldError } from '../errors.js';
import { withRetries } from '../system/retry.js';
import type { Target } from './credentials.js';
import { RemoteSession } from './session.js';
import { type Credentials, TransientRemoteError } from './connect.js';
import { LocalChangedError, RemoteMismatchError } from './transfer.js';

/** The longest wait between two tries. */
const MAX_BACKOFF_MS = 60_000;

/** The session, reopened after a lost link, and the retry policy around every use of it. */
export class Connection {
  private session: RemoteSession | null = null;
  constructor(
    private readonly ctx: Context,
    private readonly target: Target,
    private readonly credentials: Credentials,
    private readonly baseMs: number,
  ) {}

  async retry<T>(what: string, fn: (s: RemoteSession) => Promise<T>): Promise<T> {
    try {
      // The session this try used: with several uses in flight, a failed one closes its own
      // session, not one another use has opened again meanwhile.
      let used: RemoteSession | null = null;
      return await withRetries(
        async () => {
          used = await this.open();
          return fn(used);
        },
        {
          tries: this.target.remote.retries + 1,
          baseDelayMs: this.baseMs,
          maxDelayMs: MAX_BACKOFF_MS,
          signal: this.ctx.signal,
          // A lost link, a copy that did not verify, a file rewritten under us: another try helps.
          // Authentication, host keys, a full remote disk: it does not.
          retryable: (err) =>
            err instanceof TransientRemoteError ||
            err instanceof RemoteMismatchError ||
            err instanceof LocalChangedError,
          onRetry: (err, failed, tries, delay) => {
            this.ctx.log.warn(
              `remote copy: ${what}: ${(err as ZshieldError).message}; try ${failed + 1} of ${tries} in ${(delay / 1000).toFixed(1)} s`,
            );
            // A link that failed is closed (reopened by the next try); a copy that did not verify
            // leaves the session to the uses still in flight on it.
            if (err instanceof TransientRemoteError || used?.lost !== false) {
              if (used === null || used === this.session) this.close();
              else used.close();
            }
          },
        },
      );
    } catch (err) {
      if (this.ctx.signal.aborted && !(err instanceof InterruptedError)) {
        throw new InterruptedError(`interrupted: ${what}`);
      }
      throw err;
    }
  }

  private opening: Promise<RemoteSession> | null = null;

  /** The session, opened again after a lost link; uses that ask at once share one connect. */
  private async open(): Promise<RemoteSession> {
    if (this.session && !this.session.lost) return this.session;
    this.opening ??= this.connect().finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  private async connect(): Promise<RemoteSession> {
    this.session?.close();
    this.session = null;
    const s = await RemoteSession.open({
      endpoint: this.target.endpoint,
      credentials: this.credentials,
      hostKey: this.target.remote.hostKey,
      timeoutMs: this.target.remote.connectTimeoutSeconds * 1000,
      log: this.ctx.log,
      signal: this.ctx.signal,
      writes: this.ctx.writes,
    });
    this.ctx.log.debug(`remote: connected to ${s.where}`);
    this.session = s;
    return s;
  }

  close(): void {
    this.session?.close();
    this.session = null;
  }
}
