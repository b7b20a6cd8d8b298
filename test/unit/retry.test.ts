import { describe, expect, it } from 'vitest';
import { InterruptedError, RemoteError, UsageError } from '../../src/errors.js';
import { withRetries } from '../../src/system/retry.js';

describe('withRetries', () => {
  it('retries a retryable failure up to the number of tries, telling each wait (doubling)', async () => {
    const told: string[] = [];
    let calls = 0;
    const r = await withRetries(
      async (n) => {
        calls++;
        if (n < 3) throw new RemoteError(`link lost ${n}`);
        return 'ok';
      },
      {
        tries: 3,
        baseDelayMs: 1,
        retryable: (e) => e instanceof RemoteError,
        onRetry: (e, failed, tries, delay) =>
          told.push(`${(e as Error).message} ${failed}/${tries} ${delay}`),
      },
    );
    expect(r).toBe('ok');
    expect(calls).toBe(3);
    expect(told).toEqual(['link lost 1 1/3 1', 'link lost 2 2/3 2']);
  });

  it("gives up after the last try with that try's error", async () => {
    let calls = 0;
    await expect(
      withRetries(
        async () => {
          calls++;
          throw new RemoteError(`fail ${calls}`);
        },
        { tries: 2, baseDelayMs: 0, retryable: () => true },
      ),
    ).rejects.toThrow('fail 2');
    expect(calls).toBe(2);
  });

  it('does not retry what a retry cannot help, nor an interruption', async () => {
    let calls = 0;
    await expect(
      withRetries(
        async () => {
          calls++;
          throw new UsageError('bad password');
        },
        { tries: 5, baseDelayMs: 0, retryable: (e) => !(e instanceof UsageError) },
      ),
    ).rejects.toBeInstanceOf(UsageError);
    await expect(
      withRetries(
        async () => {
          calls++;
          throw new InterruptedError('stop');
        },
        { tries: 5, baseDelayMs: 0, retryable: () => true },
      ),
    ).rejects.toBeInstanceOf(InterruptedError);
    expect(calls).toBe(2);
  });

  it('an abort during the wait stops it as an interruption', async () => {
    const ac = new AbortController();
    const p = withRetries(
      async () => {
        setImmediate(() => ac.abort());
        throw new RemoteError('down');
      },
      { tries: 3, baseDelayMs: 3_600_000, retryable: () => true, signal: ac.signal },
    );
    await expect(p).rejects.toBeInstanceOf(InterruptedError);
  });
});
