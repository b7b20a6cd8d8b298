import type { Context } from '../context.js';
import type { Plan } from '../plan/plan.js';
import { type RunPlanOptions, runPlan } from '../plan/run.js';
import { ConfigError, RefusedError, UsageError } from '../errors.js';
import { FINGERPRINT_PATTERN } from '../config/remote.js';
import { writeRemoteSection } from './config-file.js';
import type { Prompter } from '../system/prompt.js';
import { endpointText, probeHostKey } from '../ssh/connect.js';

export interface TrustOptions {
  configFile: string;
  /** The fingerprint the operator checked out of band; recorded only if the server offers it. */
  fingerprint?: string;
  /** On a terminal: ask. Null: --fingerprint is required. */
  prompter: Prompter | null;
}

/**
 * `zshield remote trust`: fetch the server's host key (without logging in), show its fingerprint,
 * and pin it in the config once the operator has compared it: by answering "yes" on the terminal,
 * or by passing the fingerprint they expect.
 */
/** What `remote trust` found and did (its --json document). */
export interface TrustResult {
  server: string;
  port: number;
  fingerprint: string;
  /** Written into the config by this run (false: already pinned, or a dry run). */
  pinned: boolean;
}

export async function runTrust(ctx: Context, opts: TrustOptions): Promise<TrustResult> {
  const r = ctx.config.remote;
  if (!r.server) {
    throw new ConfigError(
      [{ where: `${opts.configFile}: remote.server`, message: 'must be set to trust its key' }],
      {
        hint: 'set it with zshield config edit',
      },
    );
  }
  if (opts.fingerprint !== undefined && !FINGERPRINT_PATTERN.test(opts.fingerprint)) {
    throw new UsageError(
      '--fingerprint must look like SHA256:<43 base64 characters> (as ssh-keygen -l prints it)',
    );
  }
  const endpoint = { host: r.server, port: r.port };
  const key = await probeHostKey(endpoint, r.connectTimeoutSeconds * 1000);
  ctx.out.print(`${endpointText(endpoint)} offers ${key.type} key ${key.fingerprint}`);
  const result = { server: r.server, port: r.port, fingerprint: key.fingerprint, pinned: false };
  const title = `Trust the host key of ${endpointText(endpoint)}`;
  if (r.hostKey === key.fingerprint) {
    ctx.out.print('already trusted: it is the pinned key. No changes.');
    // Nothing to change: the plan is empty (a dry run still says that it changed nothing).
    await runPlan(ctx, { title, notes: [`${key.fingerprint} is the pinned key`], steps: [] }, showOf(ctx));
    return result;
  }
  if (r.hostKey)
    ctx.out.print(`WARNING: this is not the pinned key ${r.hostKey}; trusting it replaces that one`);
  if (opts.fingerprint !== undefined) {
    if (opts.fingerprint !== key.fingerprint) {
      throw new RefusedError(
        `${endpointText(endpoint)} offers ${key.fingerprint}, not the expected ${opts.fingerprint}: not trusted`,
        { hint: 'the key you checked is not the one this server offers; find out why before trusting it' },
      );
    }
  } else if (opts.prompter) {
    const a = await opts.prompter.line('Is this the server\'s key? Type "yes" to trust it: ');
    if (a.trim().toLowerCase() !== 'yes') {
      throw new RefusedError('host key not trusted (not confirmed); nothing written');
    }
  } else {
    throw new UsageError('not on a terminal: check the key, then pass --fingerprint SHA256:...');
  }
  const plan: Plan = {
    title,
    notes: [
      `it offers ${key.type} key ${key.fingerprint}${opts.fingerprint !== undefined ? ' (the fingerprint given)' : ' (confirmed on the terminal)'}`,
      ...(r.hostKey ? [`it replaces the pinned key ${r.hostKey}`] : []),
    ],
    steps: [
      {
        title: `pin ${key.fingerprint} as remote.hostKey in ${opts.configFile}`,
        edit: {
          files: [opts.configFile],
          apply: () => writeRemoteSection(ctx.writes, opts.configFile, { ...r, hostKey: key.fingerprint }),
        },
      },
    ],
  };
  const run = await runPlan(ctx, plan, showOf(ctx));
  if (!run.applied) return result;
  ctx.log.info(`remote trust: pinned ${key.type} ${key.fingerprint} for ${endpointText(endpoint)}`);
  ctx.out.print(`trusted: remote.hostKey = ${key.fingerprint} written to ${opts.configFile}`);
  return { ...result, pinned: true };
}

/** Confirmed already (by the fingerprint or the terminal); a real run's plan goes to the log, its stdout says what was done. */
const showOf = (ctx: Context): RunPlanOptions => ({
  confirm: 'none',
  ...(ctx.dryRun ? {} : { show: 'log' as const }),
});
