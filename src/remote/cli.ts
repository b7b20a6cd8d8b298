import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_CONFIG_PATH } from '../config/load.js';
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import type { Prompter } from '../system/prompt.js';

// The implementations (and ssh2 with them) are loaded when a remote command runs, not at every
// start of the binary.

/** The global options every command has (cli/main.ts). */
export interface SetupArgs {
  config?: string;
  'dry-run': boolean;
  verbose: boolean;
  quiet: boolean;
}
export type Setup = (a: SetupArgs, consoleQuiet?: boolean) => Promise<Context>;

type Args = SetupArgs & Record<string, unknown>;

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

export function remoteCommand(setup: Setup): CommandModule {
  return {
    command: 'remote',
    describe: 'copies of the backups on a remote host over SSH',
    builder: (y: Argv) =>
      y
        .command(
          'copy',
          'copy the backups the remote lacks (verified, resumable), then keep the newest --limit of each kind here and there',
          (yy: Argv) =>
            yy
              .option('limit', {
                type: 'number',
                describe: 'backups of each kind to keep; wins over remote.limit in the config (default 5)',
              })
              .option('bwlimit', {
                type: 'number',
                describe: 'upload bandwidth cap in KiB/s; wins over remote.bandwidthKiBps',
              })
              .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON' }),
          async (a) => {
            const args = a as unknown as Args;
            const json = Boolean(args['json']);
            const ctx = await setup(args, json);
            // With --json, stdout carries the report alone.
            const out = ctx.out;
            if (json) ctx.out = { print: () => {} };
            const { runRemoteCopy } = await import('./copy.js');
            const report = await runRemoteCopy(ctx, {
              ...(args['limit'] !== undefined ? { limit: positive('--limit', args['limit'])! } : {}),
              ...(args['bwlimit'] !== undefined
                ? { bandwidthKiBps: positive('--bwlimit', args['bwlimit'])! }
                : {}),
            });
            if (json) out.print(JSON.stringify(report, null, 2));
          },
        )
        .command(
          'trust',
          "show the remote host's key fingerprint and pin it in the config once you confirm it",
          (yy: Argv) =>
            yy.option('fingerprint', {
              type: 'string',
              describe:
                'the SHA256:... fingerprint you checked on the server (instead of answering on the terminal)',
            }),
          async (a) => {
            const args = a as unknown as Args;
            const ctx = await setup(args);
            const { runTrust } = await import('./trust.js');
            await withPrompter(ctx, true, (prompter) =>
              runTrust(ctx, {
                configFile: configFileOf(ctx),
                prompter,
                ...(args['fingerprint'] !== undefined ? { fingerprint: String(args['fingerprint']) } : {}),
              }),
            );
          },
        )
        .demandCommand(1, 'say which: remote copy | remote trust'),
    handler: () => {},
  };
}

export function keygenCommand(setup: Setup): CommandModule {
  return {
    command: 'keygen',
    describe: 'make a new key file for the remote password and re-encrypt the password with it',
    builder: (y: Argv) =>
      y
        .option('ask-password', {
          type: 'boolean',
          default: false,
          describe:
            'type the password (no echo) instead of decrypting the stored one, e.g. when the old key is lost',
        })
        .option('yes', { type: 'boolean', default: false, describe: 'do not ask for confirmation' }),
    handler: async (argv) => {
      const a = argv as unknown as Args;
      const ctx = await setup(a);
      const { runKeygen } = await import('./keygen.js');
      await withPrompter(ctx, true, (prompter) =>
        runKeygen(ctx, {
          configFile: configFileOf(ctx),
          prompter,
          askPassword: Boolean(a['ask-password']),
          yes: Boolean(a['yes']),
        }),
      );
    },
  };
}

/** `config edit`, registered under `config` next to check and show. */
export function configEditCommand(setup: Setup): CommandModule {
  return {
    command: 'edit',
    describe: 'edit the remote copy settings interactively (password asked without echo)',
    builder: (y: Argv) => y,
    handler: async (argv) => {
      const ctx = await setup(argv as unknown as Args);
      const { editRemoteSettings } = await import('./editor.js');
      await withPrompter(ctx, false, (prompter) =>
        editRemoteSettings({
          prompter: prompter!,
          remote: ctx.config.remote,
          configFile: configFileOf(ctx),
          log: ctx.log,
          dryRun: ctx.dryRun,
        }),
      );
    },
  };
}
