// Options and helpers the history's command modules share (cli.ts, target-cli.ts, catalog-cli.ts).
import type { Context } from '../context.js';

export const targetsOf = (v: unknown): string[] | undefined => (v === undefined ? undefined : [String(v)]);

export async function readStdinLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export const target = {
  type: 'string',
  requiresArg: true,
  describe: 'only this target (its name in history.targets)',
} as const;

export async function ttyPrompter(ctx: Context, usesStdin: boolean) {
  if (usesStdin || !process.stdin.isTTY) return null;
  const { StreamPrompter } = await import('../system/prompt.js');
  return new StreamPrompter(process.stdin, process.stdout, ctx.signal);
}
