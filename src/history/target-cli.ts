// `history target add | trust | remove | list`, mounted by cli.ts; the implementations are loaded
// when a command runs.
import type { CommandKit } from '../context.js';
import { UsageError } from '../errors.js';
import type { Argv } from 'yargs';
import {
  type CliCommand,
  command,
  type GlobalArgs,
  group,
  jsonOutput,
  printJson,
  withJson,
} from '../output.js';
import { readStdinLine, ttyPrompter } from './cli-options.js';

const fingerprintOption = {
  requiresArg: true,
  type: 'string',
  describe:
    "the server's SHA256:... host key fingerprint, checked on the server (instead of answering on the terminal)",
} as const;

/** `history target add NAME s3://BUCKET/PREFIX --endpoint URL --access-key-id ID --secret-stdin`. */
async function addS3Target(kit: CommandKit, a: GlobalArgs & Record<string, unknown>): Promise<void> {
  const { parseS3Spec, runS3TargetAdd } = await import('./s3-target.js');
  const spec = parseS3Spec(String(a['where']));
  if (!spec) throw new UsageError(`"${String(a['where'])}" is not s3://BUCKET/PREFIX`);
  if (a['endpoint'] === undefined || a['access-key-id'] === undefined || !a['secret-stdin'])
    throw new UsageError('an s3:// target needs --endpoint URL, --access-key-id ID and --secret-stdin', {
      hint: 'echo "$SECRET" | zshield history target add site1 s3://backups/box1 --endpoint https://s3.example.com --access-key-id ID --secret-stdin',
    });
  if (a['key'] !== undefined || a['password-stdin'] || a['fingerprint'] !== undefined)
    throw new UsageError('--key, --password-stdin and --fingerprint are for SFTP targets');
  const secretAccessKey = await readStdinLine();
  const ctx = await kit.context(a, { quietConsole: Boolean(a['json']) });
  const out = jsonOutput(ctx, Boolean(a['json']));
  await runS3TargetAdd(ctx, {
    name: String(a['name']),
    spec,
    endpoint: String(a['endpoint']),
    accessKeyId: String(a['access-key-id']),
    secretAccessKey,
    allowHttp: Boolean(a['allow-http']),
    appendOnly: Boolean(a['append-only']),
    ...(a['region'] !== undefined ? { region: String(a['region']) } : {}),
  });
  if (a['json']) printJson(out, { target: String(a['name']), added: !ctx.dryRun });
}

/** `history target add`'s options: an SFTP server's login, or an S3 bucket's endpoint and key. */
function addOptions(y: Argv<GlobalArgs>) {
  return withJson(
    y
      .positional('name', { type: 'string', describe: 'a short name (letters, digits, _ . -)' })
      .positional('where', {
        type: 'string',
        describe: 'USER@HOST:DIR (DIR absolute, on the server), or s3://BUCKET/PREFIX with --endpoint',
      })
      .option('port', { type: 'number', default: 22, describe: 'SSH port' })
      .option('key', {
        type: 'string',
        requiresArg: true,
        describe: 'log in with this OpenSSH private key (mode 0600)',
      })
      .option('password-stdin', {
        type: 'boolean',
        default: false,
        describe: 'log in with a password read from stdin (stored encrypted with history.keyFile)',
      })
      .option('fingerprint', fingerprintOption)
      .option('endpoint', {
        type: 'string',
        requiresArg: true,
        describe: "s3: the store's URL (https://...)",
      })
      .option('access-key-id', {
        type: 'string',
        requiresArg: true,
        describe: 's3: the access key id',
      })
      .option('secret-stdin', {
        type: 'boolean',
        default: false,
        describe: 's3: read the secret access key from stdin (stored encrypted with history.keyFile)',
      })
      .option('region', { type: 'string', requiresArg: true, describe: 's3: the signing region' })
      .option('allow-http', {
        type: 'boolean',
        default: false,
        describe: 's3: accept an http:// endpoint (no TLS)',
      })
      .option('append-only', {
        type: 'boolean',
        default: false,
        describe:
          "s3: the bucket's policy denies this key every delete (checked); replication never deletes there",
      }),
  );
}

function targetAddCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'add <name> <where>',
    describe:
      'add a target: an SFTP server (shows its host key and pins it once confirmed) or an S3 bucket; checks login and write access, writes the config',
    builder: addOptions,
    handler: async (a) => {
      if (String(a.where).startsWith('s3://')) return addS3Target(kit, a);
      const port = Number(a.port);
      if (!Number.isInteger(port) || port < 1 || port > 65535)
        throw new UsageError('--port must be a port number (1-65535)');
      if (a.key !== undefined && a['password-stdin'])
        throw new UsageError('--key and --password-stdin: give one of them');
      const password = a['password-stdin'] ? await readStdinLine() : undefined;
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { parseTargetSpec, runTargetAdd } = await import('./targets.js');
      const prompter = await ttyPrompter(ctx, password !== undefined);
      try {
        await runTargetAdd(ctx, {
          name: String(a.name),
          spec: parseTargetSpec(String(a.where)),
          port,
          prompter,
          ...(a.key !== undefined ? { key: String(a.key) } : {}),
          ...(password !== undefined ? { password } : {}),
          ...(a.fingerprint !== undefined ? { fingerprint: String(a.fingerprint) } : {}),
        });
        if (a.json) printJson(out, { target: String(a.name), added: !ctx.dryRun });
      } finally {
        prompter?.close();
      }
    },
  });
}

function targetTrustCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'trust <name>',
    describe: "show a target's host key and pin it once confirmed (a reinstalled server)",
    builder: (y) =>
      withJson(
        y
          .positional('name', { type: 'string', describe: 'the target' })
          .option('fingerprint', fingerprintOption),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runTargetTrust } = await import('./targets.js');
      const prompter = await ttyPrompter(ctx, false);
      try {
        await runTargetTrust(ctx, String(a.name), {
          prompter,
          ...(a.fingerprint !== undefined ? { fingerprint: String(a.fingerprint) } : {}),
        });
        if (a.json) printJson(out, { target: String(a.name), trusted: !ctx.dryRun });
      } finally {
        prompter?.close();
      }
    },
  });
}

function targetRemoveCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'remove <name>',
    describe: 'remove a target from the config (its copy on the server is left)',
    builder: (y) => withJson(y.positional('name', { type: 'string', describe: 'the target' })),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runTargetRemove } = await import('./targets.js');
      await runTargetRemove(ctx, String(a.name));
      if (a.json) printJson(out, { target: String(a.name), removed: !ctx.dryRun });
    },
  });
}

function targetListCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'list',
    describe: 'the targets: name, where, how it logs in, its pinned host key',
    builder: (y) => withJson(y),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: true });
      const { listTargets } = await import('./targets.js');
      const list = listTargets(ctx);
      ctx.out.print(
        a.json
          ? JSON.stringify(list, null, 2)
          : list
              .map(
                (t) =>
                  `${t.name}  ${t.where}  ${t.login}${t.login === 'access key' ? '' : `  ${t.hostKey ?? 'host key NOT pinned'}`}`,
              )
              .join('\n') || 'no history targets (zshield history target add NAME USER@HOST:DIR)',
      );
    },
  });
}

export function historyTargetCommand(kit: CommandKit): CliCommand {
  return group({
    command: 'target',
    describe: 'set up the places the history is replicated to: add, trust, remove, list',
    builder: (y) =>
      y
        .command([
          targetAddCommand(kit),
          targetTrustCommand(kit),
          targetRemoveCommand(kit),
          targetListCommand(kit),
        ])
        .demandCommand(1, 'say which: history target add | trust | remove | list'),
  });
}
