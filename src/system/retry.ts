import pRetry from 'p-retry';
import { InterruptedError } from '../errors.js';

/**
 * The one retry helper: p-retry (exponential backoff, an AbortSignal that stops the wait, a
 * predicate that says which failures a retry can help), wrapped so every caller says the same
 * things the same way: how many tries, what to log between them, which errors are worth another try.
 */
export interface RetryOptions {
  /** All tries, the first included (>= 1). */
  tries: number;
  /** Wait before the second try; each later wait doubles, up to maxDelayMs. 0: no wait. */
  baseDelayMs: number;
  maxDelayMs?: number;
  /** Is this failure worth another try? (A wrong password or a missing disk is not.) */
  retryable: (err: unknown) => boolean;
  /** Told before each wait: the failure, the try that failed, the number of tries, the wait. */
  onRetry?: (err: unknown, failedTry: number, tries: number, delayMs: number) => void;
  signal?: AbortSignal;
}

export async function withRetries<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const maxDelay = opts.maxDelayMs ?? Number.POSITIVE_INFINITY;
  const delayAfter = (n: number) => Math.min(opts.baseDelayMs * 2 ** (n - 1), maxDelay);
  try {
    return await pRetry(fn, {
      retries: Math.max(0, opts.tries - 1),
      factor: 2,
      minTimeout: opts.baseDelayMs,
      maxTimeout: Math.min(maxDelay, 2 ** 31 - 1),
      randomize: false,
      ...(opts.signal ? { signal: opts.signal } : {}),
      shouldRetry: ({ error }) => !(error instanceof InterruptedError) && opts.retryable(error),
      onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
        if (retriesLeft > 0 && !(error instanceof InterruptedError) && opts.retryable(error)) {
          opts.onRetry?.(error, attemptNumber, opts.tries, delayAfter(attemptNumber));
        }
      },
    });
  } catch (err) {
    // p-retry rejects with the signal's reason when aborted during a wait.
    if (opts.signal?.aborted && !(err instanceof InterruptedError)) {
      throw new InterruptedError('interrupted while waiting to retry', { cause: err });
    }
    throw err;
  }
}
