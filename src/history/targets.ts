import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path/posix';
import { sftpTargetSchema, targetWhere } from '../config/history.js';
import { DEFAULT_CONFIG_PATH } from '../config/paths.js';
import { FINGERPRINT_PATTERN } from '../config/remote.js';
import type { Context } from '../context.js';
import { ConfigError, NotFoundError, RefusedError, UsageError } from '../errors.js';
import type { EditStep, Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { checkPrivateFile, encryptPassword, newKey, readKeyFile, writeKeyFile } from '../system/secrets.js';
import { RemoteSession } from '../ssh/session.js';
import { type Credentials, endpointText, parsePrivateKey, probeHostKey } from '../ssh/connect.js';
import type { Prompter } from '../system/prompt.js';
import { writeHistorySettings } from './init.js';

/**
 * `history target add | trust | remove | list`: a history target set up from the command line,
 * so nobody writes a host key, an encrypted password or a directory into the config by hand. A
 * target is added only after its host key was confirmed, its login worked and a file could be
 * written and removed in its directory.
 */

export interface TargetSpec {
  user: string;
  server: string;
  directory: string;
}

/** `USER@HOST:DIR` (an IPv6 address in brackets: `user@[::1]:/dir`). */
export function parseTargetSpec(text: string): TargetSpec {
  const m = /^([^@\s]+)@(\[[^\]]+\]|[^:\s]+):(\/.*)$/.exec(text);
  if (!m)
    throw new UsageError(`"${text}" is not USER@HOST:DIR (DIR an absolute path on the server)`, {
      hint: 'for example: zshield history target add site1 backup@10.0.0.5:/srv/zshield --key /etc/zshield/id_ed25519',
    });
  return { user: m[1]!, server: m[2]!.replace(/^\[|\]$/g, ''), directory: m[3]!.replace(/\/+$/, '') || '/' };
}

export interface AddTargetOptions {
  name: string;
  spec: TargetSpec;
  port: number;
  /** An OpenSSH private key file (0600) on this box. */
  key?: string;
  /** The login password (from stdin), stored encrypted with history.keyFile. */
  password?: string;
  /** The fingerprint checked out of band; else asked on the terminal. */
  fingerprint?: string;
  prompter: Prompter | null;
}

const configFileOf = (ctx: Context) => ctx.configFile ?? DEFAULT_CONFIG_PATH;

/** The history section's targets as written in the config file (no defaults filled in). */
export function rawTargets(configFile: string): Record<string, unknown>[] {
  if (!existsSync(configFile)) return [];
  const raw = JSON.parse(readFileSync(configFile, 'utf8')) as { history?: { targets?: unknown } };
  const t = raw.history?.targets;
  return Array.isArray(t) ? (t as Record<string, unknown>[]) : [];
}

/**
 * Show the server's key and have it confirmed (as `remote trust` does): by --fingerprint, or by
 * "yes" on the terminal. Returns the confirmed fingerprint.
 */
async function confirmHostKey(
  ctx: Context,
  endpoint: { host: string; port: number },
  pinned: string | null,
  opts: { fingerprint?: string; prompter: Prompter | null },
): Promise<string> {
  if (opts.fingerprint !== undefined && !FINGERPRINT_PATTERN.test(opts.fingerprint))
    throw new UsageError(
      '--fingerprint must look like SHA256:<43 base64 characters> (as ssh-keygen -l prints it)',
    );
  const key = await probeHostKey(endpoint, ctx.config.history.connectTimeoutSeconds * 1000);
  ctx.out.print(`${endpointText(endpoint)} offers ${key.type} key ${key.fingerprint}`);
  if (pinned === key.fingerprint) {
    ctx.out.print('it is the pinned key');
    return key.fingerprint;
  }
  if (pinned) ctx.out.print(`WARNING: this is not the pinned key ${pinned}; trusting it replaces that one`);
  if (opts.fingerprint !== undefined) {
    if (opts.fingerprint !== key.fingerprint)
      throw new RefusedError(
        `${endpointText(endpoint)} offers ${key.fingerprint}, not the expected ${opts.fingerprint}: not trusted`,
        { hint: 'the key you checked is not the one this server offers; find out why before trusting it' },
      );
    return key.fingerprint;
  }
  if (!opts.prompter)
    throw new UsageError(
      'not on a terminal: check the key on the server, then pass --fingerprint SHA256:...',
    );
  const a = await opts.prompter.line('Is this the server\'s key? Type "yes" to trust it: ');
  if (a.trim().toLowerCase() !== 'yes')
    throw new RefusedError('host key not trusted (not confirmed); nothing written');
  return key.fingerprint;
}

async function login(
  ctx: Context,
  endpoint: { host: string; port: number },
  hostKey: string,
  credentials: Credentials,
): Promise<RemoteSession> {
  return RemoteSession.open({
    endpoint,
    credentials,
    hostKey,
    timeoutMs: ctx.config.history.connectTimeoutSeconds * 1000,
    log: ctx.log,
    signal: ctx.signal,
    writes: ctx.writes,
  });
}

/** Write access proven: the directory made, a probe file written there and removed. */
async function probeWrite(
  ctx: Context,
  endpoint: { host: string; port: number },
  hostKey: string,
  credentials: Credentials,
  directory: string,
): Promise<void> {
  const s = await login(ctx, endpoint, hostKey, credentials);
  try {
    await s.mkdirs(directory);
    const probe = path.join(directory, `.zshield-probe-${randomBytes(4).toString('hex')}`);
    const handle = await s.open(probe, 'w');
    try {
      await s.write(handle, Buffer.from('zshield\n'), 0, probe);
    } finally {
      await s.closeHandle(handle, probe);
    }
    await s.unlink(probe);
  } finally {
    s.close();
  }
}

/** The new target's config entry, checked by the schema now (a bad name or host stops here). */
function sftpEntry(opts: AddTargetOptions, hostKey: string): Record<string, unknown> {
  const entry: Record<string, unknown> = {
    name: opts.name,
    server: opts.spec.server,
    port: opts.port,
    user: opts.spec.user,
    hostKey,
    directory: opts.spec.directory,
    ...(opts.key !== undefined ? { privateKey: opts.key } : { password: 'v1:pending' }),
  };
  const parsed = sftpTargetSchema.safeParse({ ...entry, password: null, privateKey: opts.key ?? '/x' });
  if (!parsed.success)
    throw new ConfigError(
      parsed.error.issues.map((i) => ({
        where: `history target ${opts.name}: ${i.path.join('.')}`,
        message: i.message,
      })),
    );
  return entry;
}

export async function runTargetAdd(ctx: Context, opts: AddTargetOptions): Promise<void> {
  const h = ctx.config.history;
  const configFile = configFileOf(ctx);
  if ((opts.key === undefined) === (opts.password === undefined))
    throw new UsageError('give one way to log in: --key FILE or --password-stdin');
  if (h.targets.some((t) => t.name === opts.name))
    throw new RefusedError(`history target ${opts.name} exists already`, {
      hint: `zshield history target remove ${opts.name} first, or zshield history target trust ${opts.name} for a new host key`,
    });
  if (opts.password !== undefined) ctx.log.redact(opts.password);
  let privateKey: Buffer | null = null;
  if (opts.key !== undefined) {
    checkPrivateFile(opts.key, 'private key');
    privateKey = await parsePrivateKey(readFileSync(opts.key), opts.key);
  }
  const endpoint = { host: opts.spec.server, port: opts.port };
  const hostKey = await confirmHostKey(ctx, endpoint, null, opts);
  const credentials: Credentials = { user: opts.spec.user, password: opts.password ?? null, privateKey };
  const entry = sftpEntry(opts, hostKey);
  const where = `${opts.spec.user}@${endpointText(endpoint)}:${opts.spec.directory}`;
  const plan: Plan = {
    title: `Add history target ${opts.name} (${where})`,
    notes: [
      `host key ${hostKey} (confirmed)`,
      opts.key !== undefined
        ? `logs in with the key ${opts.key}`
        : `logs in with a password, stored encrypted with ${h.keyFile}`,
      `the repository goes in ${opts.spec.directory}/repo, the catalog in ${opts.spec.directory}/catalog`,
    ],
    checks: [
      {
        title: `log in to ${where}`,
        run: async () => {
          (await login(ctx, endpoint, hostKey, credentials)).close();
        },
      },
    ],
    steps: [
      {
        title: `check write access: make ${opts.spec.directory}, write a file there and remove it`,
        edit: {
          files: [`${where}/.zshield-probe-*`],
          apply: () => probeWrite(ctx, endpoint, hostKey, credentials, opts.spec.directory),
        },
      },
      writeTargetStep(
        ctx,
        configFile,
        h.keyFile,
        opts.name,
        entry,
        opts.password === undefined ? null : { field: 'password', value: opts.password, what: 'password' },
      ),
    ],
  };
  await runPlan(ctx, plan, { confirm: 'none', show: 'out' });
}

/** `history target trust NAME`: pin a history target's (new) host key once confirmed. */
export async function runTargetTrust(
  ctx: Context,
  name: string,
  opts: { fingerprint?: string; prompter: Prompter | null },
): Promise<void> {
  const configFile = configFileOf(ctx);
  const t = findTarget(ctx, name);
  if (t.type === 's3')
    throw new UsageError(`history target ${name} is an S3 store: it has no host key to trust`, {
      hint: 'its endpoint is checked by TLS (https://)',
    });
  const endpoint = { host: t.server, port: t.port };
  const hostKey = await confirmHostKey(ctx, endpoint, t.hostKey, opts);
  if (hostKey === t.hostKey) {
    // A plan with no step: a dry run ends as every command's does.
    await runPlan(
      ctx,
      {
        title: `The host key of history target ${name} is pinned already (${hostKey})`,
        notes: [],
        steps: [],
      },
      { confirm: 'none' },
    );
    if (!ctx.dryRun) ctx.out.print('No changes.');
    return;
  }
  await runPlan(
    ctx,
    {
      title: `Pin the host key of history target ${name}`,
      notes: [`${endpointText(endpoint)}: ${hostKey}${t.hostKey ? ` (replaces ${t.hostKey})` : ''}`],
      steps: [
        {
          title: `write history.targets[${name}].hostKey into ${configFile}`,
          edit: {
            files: [configFile],
            apply: () => {
              const targets = rawTargets(configFile).map((x) => (x['name'] === name ? { ...x, hostKey } : x));
              writeHistorySettings(ctx.writes, configFile, { targets });
              ctx.out.print(`trusted: history target ${name} hostKey = ${hostKey}`);
            },
          },
        },
      ],
    },
    { confirm: 'none', show: 'out' },
  );
}

export async function runTargetRemove(ctx: Context, name: string): Promise<void> {
  const configFile = configFileOf(ctx);
  const t = findTarget(ctx, name);
  await runPlan(
    ctx,
    {
      title: `Remove history target ${name} from the config`,
      notes: [
        `its copy on ${targetWhere(t)} is left as it is (remove it there if you mean to)`,
        'retention no longer waits for it',
      ],
      steps: [
        {
          title: `remove it from history.targets in ${configFile}`,
          edit: {
            files: [configFile],
            apply: () => {
              writeHistorySettings(ctx.writes, configFile, {
                targets: rawTargets(configFile).filter((x) => x['name'] !== name),
              });
              ctx.out.print(`history target ${name} removed`);
            },
          },
        },
      ],
    },
    { confirm: 'none', show: 'out' },
  );
}

export interface TargetListing {
  name: string;
  where: string;
  login: 'key' | 'password' | 'access key';
  hostKey: string | null;
}

export function listTargets(ctx: Context): TargetListing[] {
  return ctx.config.history.targets.map((t) =>
    t.type === 's3'
      ? { name: t.name, where: targetWhere(t), login: 'access key' as const, hostKey: null }
      : {
          name: t.name,
          where: `${t.user}@${t.server}:${t.port}:${t.directory}`,
          login: t.privateKey ? 'key' : 'password',
          hostKey: t.hostKey,
        },
  );
}

function findTarget(ctx: Context, name: string) {
  const t = ctx.config.history.targets.find((x) => x.name === name);
  if (!t)
    throw new NotFoundError(`no history target named ${name}`, {
      hint: 'zshield history target list shows the targets',
    });
  return t;
}

/**
 * The last step of `history target add` (SFTP or S3): the entry appended to history.targets in the
 * config, its secret (an SFTP password, an S3 secret key) encrypted with history.keyFile, which is
 * made when missing.
 */
export function writeTargetStep(
  ctx: Context,
  configFile: string,
  keyFile: string,
  name: string,
  entry: Record<string, unknown>,
  secret: { field: 'password' | 'secretAccessKey'; value: string; what: string } | null,
): EditStep {
  return {
    title: `write the target into ${configFile}${secret ? ` (its ${secret.what} encrypted)` : ''}`,
    edit: {
      files: [configFile, ...(secret && !existsSync(keyFile) ? [keyFile] : [])],
      apply: () => {
        if (secret) {
          if (!existsSync(keyFile)) writeKeyFile(ctx.writes, keyFile, newKey());
          entry[secret.field] = encryptPassword(secret.value, readKeyFile(keyFile));
        }
        writeHistorySettings(ctx.writes, configFile, { targets: [...rawTargets(configFile), entry] });
        ctx.out.print(`history target ${name} added; zshield history replicate --target ${name} fills it`);
      },
    },
  };
}
