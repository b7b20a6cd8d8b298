import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfigText } from '../config/load.js';
import { DEFAULT_CONFIG_PATH } from '../config/paths.js';
import type { Context } from '../context.js';
import { ConfigError, UsageError } from '../errors.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { encryptPassword, newKey, readKeyFile, writeKeyFile } from '../system/secrets.js';
import { writePrivateFileAtomic } from '../system/atomic-file.js';
import { loadSigningKey, writeNewSigningKey } from '../system/signing.js';
import { createCatalog } from './catalog.js';
import { repoDir, repositoryPassword, resticFor, signingKeyFile } from './repo.js';
import type { Writes } from '../system/writes.js';

/**
 * `history init`: the local repository, its password (given on stdin, or made here) stored
 * encrypted with history.keyFile, the catalog's signing key and an empty signed catalog, and the
 * public key pinned in the config. Each part is made only when absent, so a second run (or a run
 * after a power cut) finishes what is missing and changes nothing else.
 */
export async function runHistoryInit(
  ctx: Context,
  opts: { password?: string },
): Promise<{ publicKey: string }> {
  const h = ctx.config.history;
  const configFile = ctx.configFile ?? DEFAULT_CONFIG_PATH;
  if (opts.password !== undefined && (opts.password.length < 8 || opts.password.includes('\n')))
    throw new UsageError('the repository password must be one line of at least 8 characters');
  if (opts.password !== undefined) ctx.log.redact(opts.password);
  const repoExists = existsSync(path.join(repoDir(h), 'config'));
  let publicKey = h.publicKey ?? '';
  const plan: Plan = {
    title: `Set up the history in ${h.dir} (only what is missing)`,
    notes: [
      repoExists
        ? `the repository ${repoDir(h)} exists: ${opts.password !== undefined ? 'the given password must open it' : 'kept as it is'}`
        : `makes the restic repository ${repoDir(h)}`,
    ],
    checks: [
      {
        title: repoExists
          ? 'the password opens the existing repository'
          : 'the stored password (if any) can be decrypted',
        run: async () => {
          const pw = opts.password ?? (h.password ? repositoryPassword(ctx) : null);
          if (pw !== null && repoExists) await resticFor(ctx, repoDir(h), pw).open();
        },
      },
    ],
    steps: [
      {
        title:
          'make what is missing: key file, repository, signing key, catalog; pin the password and the public key in the config',
        edit: {
          files: [h.keyFile, repoDir(h), signingKeyFile(h), h.dir, configFile],
          apply: async () => {
            publicKey = await initLocked(ctx, configFile, opts);
          },
        },
      },
    ],
  };
  await runPlan(ctx, plan, { confirm: 'none', show: ctx.dryRun ? 'out' : 'none' });
  return { publicKey };
}

async function initLocked(ctx: Context, configFile: string, opts: { password?: string }): Promise<string> {
  const h = ctx.config.history;
  mkdirSync(h.dir, { recursive: true, mode: 0o700 });
  const changes: Record<string, unknown> = {};
  let password: string;
  if (h.password && opts.password === undefined) {
    password = repositoryPassword(ctx);
  } else {
    password = opts.password ?? randomBytes(24).toString('base64url');
    ctx.log.redact(password);
    if (!existsSync(h.keyFile)) {
      writeKeyFile(ctx.writes, h.keyFile, newKey());
      ctx.log.info(`history: made key file ${h.keyFile}`);
    }
    // A given password replaces the stored one only after it opened the repository (the checks).
    if (h.password)
      ctx.out.print('history.password replaced by the given password (it opens the repository)');
    changes['password'] = encryptPassword(password, readKeyFile(h.keyFile));
  }
  if (!existsSync(path.join(repoDir(h), 'config'))) {
    mkdirSync(path.dirname(repoDir(h)), { recursive: true, mode: 0o700 });
    await resticFor(ctx, repoDir(h), password).init();
    ctx.out.print(`made the restic repository ${repoDir(h)}`);
  }
  const key = existsSync(signingKeyFile(h))
    ? await loadSigningKey(signingKeyFile(h))
    : await writeNewSigningKey(ctx.writes, signingKeyFile(h), { writePublic: true });
  if (h.publicKey && h.publicKey !== key.publicText)
    throw new ConfigError([
      { where: `${configFile}: history.publicKey`, message: `is not the key of ${signingKeyFile(h)}` },
    ]);
  if (!h.publicKey) changes['publicKey'] = key.publicText;
  createCatalog(ctx.writes, h.dir, key);
  if (Object.keys(changes).length) writeHistorySettings(ctx.writes, configFile, changes);
  ctx.out.print(`history ready in ${h.dir}; catalog public key ${key.publicText}`);
  if (changes['password'] && opts.password === undefined)
    ctx.out.print(
      'the repository password was generated: zshield history password shows it; keep a copy off the box for a disaster restore',
    );
  return key.publicText;
}

/** Set keys of the config file's `history` section, the rest of the file as written; 0600, atomic. */
export function writeHistorySettings(
  writes: Writes,
  configFile: string,
  changes: Record<string, unknown>,
): void {
  let raw: Record<string, unknown> = {};
  if (existsSync(configFile)) {
    const text = readFileSync(configFile, 'utf8');
    parseConfigText(text, configFile);
    raw = JSON.parse(text) as Record<string, unknown>;
  }
  const history = { ...((raw['history'] as Record<string, unknown> | undefined) ?? {}), ...changes };
  const out = `${JSON.stringify({ ...raw, history }, null, 2)}\n`;
  parseConfigText(out, configFile);
  writePrivateFileAtomic(writes, configFile, out);
}
