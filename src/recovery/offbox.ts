import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { type HistoryConfig, type TargetConfig, targetWhere } from '../config/history.js';
import { parseRecoveryFile, type RecoveryFile } from '../config/recovery-file.js';
import type { Config } from '../config/schema.js';
import type { Context } from '../context.js';
import type { Prompter } from '../system/prompt.js';
import { ConfigError, NotFoundError, RefusedError, UsageError } from '../errors.js';
import { OFFBOX_RESTORE_TAG } from '../names/lvm-tags.js';
import type { CommandStep } from '../plan/plan.js';
import type { ConfirmOptions } from './options.js';
import { runFactoryReset } from './reset.js';
import { encryptPassword, newKey, openPassword, writeKeyFile } from '../system/secrets.js';
import { writePrivateFileAtomic } from '../system/atomic-file.js';
import {
  CATALOG_FILES,
  type CatalogView,
  catalogView,
  FW_CFG_RECOVERY_FILE,
  openSource,
  openStore,
  parseS3Spec,
  RepositoryPasswordError,
  readRecoveryFile,
  resticFor,
  snapshotIdsIn,
  verifyCatalog,
} from '../history/index.js';
import { SCRATCH_WRITES } from '../system/writes.js';
import { formatBytes } from '../config/size.js';

/**
 * A blank replacement system disk brought back from the off-box copy (`recover offbox`, the golden
 * medium's "Recover from off-box backup"): the factory reset's layout and boot loader
 * (recovery/reset.ts, with a RootFill), with the root restored from a fingerprint fetched from a
 * target instead of the golden root. The box has no credentials: they come from a recovery file
 * (config/recovery-file.ts). Every check that can fail runs before the plan's first write: the
 * file, the target (reachable, holding the fingerprint), the catalog (verified with the given key,
 * listing the fingerprint), the repository password (restic reads the snapshot), then the disk
 * (the factory reset's own checks).
 */

const TARGET_NAME = 'offbox';

export interface OffboxOptions extends ConfirmOptions {
  /** The recovery file (default: the fw_cfg entry). */
  file?: string;
  /** The disk's serial or WWN, overriding the config. */
  target?: string;
  /** Ask the operator on this terminal instead of reading a file. */
  ask?: Prompter;
}

/**
 * The same facts typed on the console (no removable medium at hand): the target as
 * user@server[:port]:/directory (then its host key, a login password or the path of a key file) or
 * as s3://bucket/prefix (then the endpoint, an explicit yes for an http:// one, the region, the
 * access key id and its secret), the repository password and the catalog's public key. Secrets are
 * read without echo. Checked by the recovery file's schema: a bad answer is one line, exit 3.
 */
export async function askRecovery(p: Prompter): Promise<RecoveryFile> {
  p.print(
    'Recover from off-box backup: the target and the keys (nothing is written before the plan is shown)',
  );
  const where = (await p.line(TARGET_QUESTION)).trim();
  const target = where.startsWith('s3://') ? await askS3Target(p, where) : await askSftpTarget(p, where);
  const repositoryPassword = await p.secret('repository password: ');
  const publicKey = (await p.line("the catalog's public key (ed25519:...): ")).trim();
  const fingerprint = (await p.line('fingerprint (empty: the newest): ')).trim();
  const r = parseRecoveryFile(
    JSON.stringify({ target, repositoryPassword, publicKey, fingerprint: fingerprint || null }),
  );
  if (!r.ok) throw new ConfigError([{ where: 'the answers', message: r.problem }]);
  return r.file;
}

export const TARGET_QUESTION = 'target (user@server[:port]:/directory or s3://bucket/prefix): ';

async function askSftpTarget(p: Prompter, where: string): Promise<Record<string, unknown>> {
  const m = /^([^@\s]+)@([^:\s/]+)(?::(\d{1,5}))?:(\/\S*)$/.exec(where);
  if (!m) throw new UsageError(`"${where}" is not user@server[:port]:/directory or s3://bucket/prefix`);
  const hostKey = (await p.line("the target's host key (SHA256:...): ")).trim();
  const password = await p.secret('login password (empty: log in with a key file): ');
  let privateKey: string | null = null;
  if (!password) {
    const keyPath = (await p.line('private key file (e.g. on a mounted stick): ')).trim();
    try {
      privateKey = readFileSync(keyPath, 'utf8');
    } catch (err) {
      throw new UsageError(
        `cannot read the key file ${keyPath}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
  }
  return {
    user: m[1],
    server: m[2],
    port: m[3] ? Number(m[3]) : 22,
    directory: m[4],
    hostKey,
    password: password || null,
    privateKey,
  };
}

/**
 * An object store: its secret read without echo. An http:// endpoint is taken only on an explicit
 * yes, as the config takes it only with allowHttp: the requests are signed, the data is not hidden.
 */
async function askS3Target(p: Prompter, where: string): Promise<Record<string, unknown>> {
  const spec = parseS3Spec(where);
  if (!spec) throw new UsageError(`"${where}" is not s3://bucket/prefix`);
  const endpoint = (await p.line('endpoint (https://host[:port]): ')).trim();
  const allowHttp = endpoint.startsWith('http://');
  if (
    allowHttp &&
    (await p.line('the endpoint is http:// (no TLS: the data travels in clear); allow it? (yes/no): '))
      .trim()
      .toLowerCase() !== 'yes'
  )
    throw new UsageError(`${endpoint} not allowed (no TLS); nothing was written`, {
      hint: 'give an https:// endpoint, or answer yes for a store on a network you trust',
    });
  const region = (await p.line('region (empty: us-east-1): ')).trim();
  const accessKeyId = (await p.line('access key id: ')).trim();
  const secretAccessKey = await p.secret('secret access key: ');
  return {
    type: 's3',
    endpoint,
    allowHttp,
    bucket: spec.bucket,
    prefix: spec.prefix,
    ...(region ? { region } : {}),
    accessKeyId,
    secretAccessKey,
  };
}

/**
 * The file's secrets copied into 0600 files under the run directory (a tmpfs), and a config whose
 * history section points at them, so the history's own code (SftpStore, restic) runs unchanged.
 */
export function stageRecovery(ctx: Context, rf: RecoveryFile, dir: string): Config {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  ctx.log.redact(rf.repositoryPassword);
  const key = newKey();
  const keyFile = path.join(dir, 'secret.key');
  writeKeyFile(SCRATCH_WRITES, keyFile, key);
  const history: HistoryConfig = {
    ...ctx.config.history,
    dir: path.join(dir, 'history'),
    keyFile,
    password: encryptPassword(rf.repositoryPassword, key),
    publicKey: rf.publicKey,
    cacheDir: path.join(dir, 'cache'),
    targets: [stagedTarget(ctx, rf.target, key, dir)],
  };
  return { ...ctx.config, history };
}

/**
 * The context the fetch runs in: the staged config, and no config file. Its secrets are the
 * recovery file's, in the 0600 files made here; the golden medium's own config file (0644 when it
 * holds no secret) is not where they are, so its mode is no reason to refuse them (the stores check
 * the config file's mode before they decrypt a secret it would hold).
 */
export function stagedContext(ctx: Context, rf: RecoveryFile, dir: string): Context {
  return { ...ctx, configFile: null, config: stageRecovery(ctx, rf, dir) };
}

/** Where the repository is, as the wrong-password message names it (`host:/dir`, or the S3 place). */
const repoPlace = (t: TargetConfig) => (t.type === 's3' ? targetWhere(t) : `${t.server}:${t.directory}`);

/** The recovery file's target as a history target, its secret encrypted with the scratch key. */
function stagedTarget(ctx: Context, t: RecoveryFile['target'], key: Buffer, dir: string): TargetConfig {
  if (t.type === 's3') {
    ctx.log.redact(t.secretAccessKey);
    const { secretAccessKey, ...where } = t;
    // Read only from here: appendOnly keeps a restore from ever deleting on the store.
    return {
      ...where,
      name: TARGET_NAME,
      secretAccessKey: encryptPassword(secretAccessKey, key),
      appendOnly: true,
      multipartAboveMiB: 64,
    };
  }
  if (t.password) ctx.log.redact(t.password);
  let privateKey: string | null = null;
  if (t.privateKey) {
    privateKey = path.join(dir, 'target.key');
    writePrivateFileAtomic(
      SCRATCH_WRITES,
      privateKey,
      t.privateKey.endsWith('\n') ? t.privateKey : `${t.privateKey}\n`,
    );
  }
  return {
    name: TARGET_NAME,
    type: 'sftp',
    server: t.server,
    port: t.port,
    user: t.user,
    password: t.password ? encryptPassword(t.password, key) : null,
    privateKey,
    hostKey: t.hostKey,
    directory: t.directory,
  };
}

/** The fingerprint to restore: the one asked for, or the newest the catalog lists and the target holds. */
export async function chooseFingerprint(
  ctx: Context,
  wanted: string | null,
  work: string,
): Promise<CatalogView> {
  const h = ctx.config.history;
  const store = openStore(ctx, h, h.targets[0]!);
  try {
    const held = new Set(snapshotIdsIn(await store.list()));
    const dir = path.join(work, 'catalog');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of CATALOG_FILES) await store.fetchCatalog(name, path.join(dir, name));
    const view = catalogView(verifyCatalog(dir, h.publicKey).entries).filter((v) => !v.forgotten);
    if (wanted) {
      const v = view.find((e) => e.fingerprint === wanted);
      if (!v) throw new RefusedError(`fingerprint ${wanted} is not in the catalog of ${store.label}`);
      if (!held.has(wanted)) throw new NotFoundError(`${store.label} does not hold ${wanted}`);
      return v;
    }
    const newest = view.filter((v) => held.has(v.fingerprint)).at(-1);
    if (!newest)
      throw new NotFoundError(`${store.label} holds no backup its catalog lists`, {
        hint: 'check the target directory in the recovery file',
      });
    return newest;
  } finally {
    store.close();
  }
}

/** `recover offbox`: checks, fetch, then the factory reset's plan with the fingerprint's root. */
export async function runOffboxRecovery(ctx: Context, opts: OffboxOptions): Promise<void> {
  const file = opts.file ?? FW_CFG_RECOVERY_FILE;
  const rf = opts.ask ? await askRecovery(opts.ask) : readRecoveryFile(file);
  const where = opts.ask ? 'the answers' : `recovery file ${file}`;
  const dir = path.join(ctx.config.paths.runDir, 'offbox');
  const staged = stagedContext(ctx, rf, dir);
  try {
    const entry = await chooseFingerprint(staged, rf.fingerprint, dir);
    const id = entry.fingerprint;
    ctx.out.print(`offbox: ${id} (cataloged ${entry.time} on ${entry.host}, ${entry.reason})`);
    // The password is the recovery file's (staged), not the config file's: no config-file check.
    const h = staged.config.history;
    const password = openPassword({ ciphertext: h.password!, keyFile: h.keyFile, log: ctx.log });
    const wrongPassword = (err: unknown): never => {
      if (!(err instanceof RepositoryPasswordError)) throw err;
      throw new ConfigError(
        [
          {
            where,
            message: `repositoryPassword: the password does not open the repository on ${repoPlace(staged.config.history.targets[0]!)}`,
          },
        ],
        {
          hint: 'set repositoryPassword to what zshield history password prints on the box that made the backup; only its keys were fetched, nothing was written',
        },
      );
    };
    // Config and keys first, the password proven on them (restic cat config), and only then the
    // index and the data: a wrong password stops here, with nothing but the keys fetched.
    const source = await openSource(staged, id, { from: TARGET_NAME }, password).catch(wrongPassword);
    const restic = resticFor(staged, source.repo, password);
    const size = await restic.restoreSize(id).catch(wrongPassword);
    const pwFile = path.join(dir, 'restic-pw');
    writePrivateFileAtomic(SCRATCH_WRITES, pwFile, restic.opts.password);
    const restore: CommandStep = {
      title: `restore ${id} into the new root (restic restore, ${size.files} files, ${formatBytes(size.bytes)})`,
      command: {
        file: 'restic',
        args: [
          '--repo',
          source.repo,
          '--password-file',
          pwFile,
          '--cache-dir',
          staged.config.history.cacheDir,
        ],
        mutates: true,
        timeoutMs: 24 * 3600_000,
      },
    };
    await runFactoryReset(ctx, {
      ...opts,
      root: {
        what: `fingerprint ${id} of ${entry.host} (${entry.time}) from ${targetWhere(staged.config.history.targets[0]!)}`,
        steps: (mnt) => [
          {
            ...restore,
            command: { ...restore.command, args: [...restore.command.args, 'restore', id, '--target', mnt] },
          },
        ],
        mark: OFFBOX_RESTORE_TAG,
        reason: 'post-restore',
        bytes: size.bytes,
      },
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The boot hook's `zshield_recovery=offbox`: the recovery file from fw_cfg, else the questions on
 * the console (when it is a terminal); then the plan and the countdown.
 */
export async function runOffboxAtBoot(
  ctx: Context,
  console: { isTTY: boolean; prompter: () => Prompter },
): Promise<void> {
  if (existsSync(FW_CFG_RECOVERY_FILE)) return runOffboxRecovery(ctx, { confirm: 'countdown' });
  if (!console.isTTY)
    throw new NotFoundError(
      'Recover from off-box backup: no recovery file (fw_cfg opt/zshield-recovery) and no terminal to ask on',
      {
        hint: 'boot the golden medium normally and run zshield recover offbox --recovery-file FILE (or --ask); nothing was changed',
      },
    );
  const p = console.prompter();
  try {
    await runOffboxRecovery(ctx, { confirm: 'countdown', ask: p, prompter: p });
  } finally {
    p.close();
  }
}
