import { DEFAULT_CONFIG_PATH } from '../config/paths.js';
import type { CommandKit, Context } from '../context.js';
import { UsageError } from '../errors.js';
import type { Prompter } from '../system/prompt.js';
import { command, group, jsonOutput, printJson, withJson, withYes } from '../output.js';

// The implementations (and ssh2 with them) are loaded when a remote command runs, not at every
// start of the binary.

const configFileOf = (ctx: Context) => ctx.configFile ?? DEFAULT_CONFIG_PATH;

async function withPrompter<T>(
  ctx: Context,
  tty: boolean,
  fn: (p: Prompter | null) => Promise<T>,
): Promise<T> {
  const { StreamPrompter } = await import('../system/prompt.js');
  const p =
    !tty || process.stdin.isTTY ? new StreamPrompter(process.stdin, process.stdout, ctx.signal) : null;
  try {
    return await fn(p);
  } finally {
    p?.close();
  }
}

function positive(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a whole number >= 1`);
  return n;
}

export function remoteCommand(kit: CommandKit) {
  return group({
    command: 'remote',
    describe: 'copies of the backups on a remote host over SSH',
    builder: (y) =>
      y
        .command(
          'copy',
          'copy the backups the remote lacks (verified, resumable), then keep the newest --limit of each kind here and there',
          (yy) =>
            withJson(
              yy
                .option('limit', {
                  requiresArg: true,
                  type: 'number',
                  describe: 'backups of each kind to keep; wins over remote.limit in the config (default 5)',
                })
                .option('bwlimit', {
                  requiresArg: true,
                  type: 'number',
                  describe: 'upload bandwidth cap in KiB/s; wins over remote.bandwidthKiBps',
                })
                .option('verify-all', {
                  type: 'boolean',
                  default: false,
                  describe: "compare every file already on the remote by SHA-256 (not only this run's share)",
                }),
            ),
          async (a) => {
            const json = a.json;
            const ctx = await kit.context(a, { quietConsole: json });
            // With --json, stdout carries the report alone (its plan in it, on a dry run too).
            const out = jsonOutput(ctx, json);
            const { runRemoteCopy } = await import('./copy.js');
            const report = await runRemoteCopy(ctx, {
              verifyAll: a['verify-all'],
              ...(a.limit !== undefined ? { limit: positive('--limit', a.limit)! } : {}),
              ...(a.bwlimit !== undefined ? { bandwidthKiBps: positive('--bwlimit', a.bwlimit)! } : {}),
            });
            if (json) out.print(JSON.stringify(report, null, 2));
          },
        )
        .command(
          'trust',
          "show the remote host's key fingerprint and pin it in the config once you confirm it",
          (yy) =>
            withJson(
              yy.option('fingerprint', {
                requiresArg: true,
                type: 'string',
                describe:
                  'the SHA256:... fingerprint you checked on the server (instead of answering on the terminal)',
              }),
            ),
          async (a) => {
            const ctx = await kit.context(a, { quietConsole: a.json });
            const out = jsonOutput(ctx, a.json);
            const { runTrust } = await import('./trust.js');
            const r = await withPrompter(ctx, true, (prompter) =>
              runTrust(ctx, {
                configFile: configFileOf(ctx),
                prompter,
                ...(a.fingerprint !== undefined ? { fingerprint: a.fingerprint } : {}),
              }),
            );
            // A dry run's document is its plan (runPlan printed it).
            if (a.json && !ctx.dryRun) printJson(out, r);
          },
        )
        .demandCommand(1, 'say which: remote copy | remote trust'),
  });
}

export function keygenCommand(kit: CommandKit) {
  return command({
    command: 'keygen',
    describe: 'make a new key file for the remote password and re-encrypt the password with it',
    builder: (y) =>
      withJson(
        withYes(
          y.option('ask-password', {
            type: 'boolean',
            default: false,
            describe:
              'type the password (no echo) instead of decrypting the stored one, e.g. when the old key is lost',
          }),
          'do not ask for confirmation',
        ),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runKeygen } = await import('./keygen.js');
      const r = await withPrompter(ctx, true, (prompter) =>
        runKeygen(ctx, {
          configFile: configFileOf(ctx),
          prompter,
          askPassword: a['ask-password'],
          yes: a.yes,
        }),
      );
      // A dry run's document is its plan (runPlan printed it).
      if (a.json && !ctx.dryRun) printJson(out, r);
    },
  });
}

/** For `config check` (cli/config.ts): the checks a remote copy makes before it connects (check.ts). */
export async function remoteConfigCheck(ctx: Context) {
  const { checkRemoteConfig } = await import('./check.js');
  return checkRemoteConfig(ctx);
}

/** `config edit`, registered under `config` next to check and show (cli/config.ts). */
export function configEditCommand(kit: CommandKit) {
  return command({
    command: 'edit',
    describe: 'edit the remote copy settings interactively (password asked without echo)',
    builder: (y) => y,
    handler: async (a) => {
      const ctx = await kit.context(a);
      const { editRemoteSettings } = await import('./editor.js');
      await withPrompter(ctx, false, (prompter) =>
        editRemoteSettings({
          prompter: prompter!,
          remote: ctx.config.remote,
          configFile: configFileOf(ctx),
          log: ctx.log,
          writes: ctx.writes,
        }),
      );
    },
  });
}
