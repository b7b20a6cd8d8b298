import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { asset } from '../assets.js';
import type { Context } from '../context.js';
import { NotFoundError } from '../errors.js';
import type { Confirm } from '../output.js';
import { runPlan } from '../plan/run.js';
import { type DiskProbe, probeDisks } from '../system/disks.js';
import type { Prompter } from '../system/prompt.js';
import { requireTools } from '../system/tools.js';
import { planGoldenMedium } from './prepare.js';
import { type PrototypeFacts, probePrototype } from './probe.js';

export interface GoldenPrepareOptions {
  /** 'yes': confirmed by --yes; 'ask': refused without it. */
  confirm: Confirm;
  json?: boolean;
  /** Serial or WWN of the medium (else disks.golden.serial). */
  target?: string;
  prompter?: Prompter;
  /** zshield's Debian package, installed into the prototype first (golden prepare --package). */
  packageFile?: string;
}

/** The probes golden prepare reads (tests pass stand-ins; the real ones read this machine). */
export interface GoldenProbes {
  disks: (ctx: Context) => Promise<DiskProbe>;
  prototype: (ctx: Context) => Promise<PrototypeFacts>;
}

const realProbes: GoldenProbes = { disks: (ctx) => probeDisks(ctx.runner), prototype: probePrototype };

/** `zshield golden prepare`: write a golden medium from the running prototype system. */
export async function runGoldenPrepare(
  ctx: Context,
  opts: GoldenPrepareOptions,
  probes: GoldenProbes = realProbes,
): Promise<void> {
  await requireTools(ctx.runner, ['lsblk', ...(opts.packageFile ? ['dpkg'] : [])]);
  if (opts.packageFile && !existsSync(opts.packageFile)) {
    throw new NotFoundError(`package file ${opts.packageFile} not found`, {
      hint: 'bash build/package.sh makes build/out/zshield_<version>_amd64.deb',
    });
  }
  const plan = planGoldenMedium({
    config: ctx.config,
    disks: await probes.disks(ctx),
    facts: await probes.prototype(ctx),
    ...(opts.target ? { target: opts.target } : {}),
    ...(opts.packageFile ? { packageFile: path.resolve(opts.packageFile) } : {}),
    uuid: randomUUID(),
    now: ctx.clock.now(),
    assets: {
      grubScript: asset('grubScript'),
      bootUnit: asset('bootUnit'),
      daemonUnit: asset('daemonUnit'),
      rcLocalLine: asset('rcLocal'),
    },
  });
  const run = await runPlan(ctx, plan, {
    confirm: opts.confirm,
    what: 'Writing the golden medium',
    show: opts.json ? 'json' : 'out',
    ...(opts.prompter ? { prompter: opts.prompter } : {}),
  });
  if (run.applied) ctx.out.print('golden medium written');
}
