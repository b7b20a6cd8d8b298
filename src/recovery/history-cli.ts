import type { CommandKit, Context } from '../context.js';
import { UsageError } from '../errors.js';
import {
  allowUncatalogedOption,
  type CliCommand,
  command,
  confirmOf,
  fromTargetOption,
  jsonOutput,
  withJson,
  withYes,
} from '../output.js';

// The recoveries from the history (`recover fingerprint`, `recover offbox`): their implementations,
// and the history's restic driving and stores with them, are loaded when one runs.

/** `recover fingerprint ID`: lv-root reset to a fingerprint of the history (fingerprint.ts). */
export function recoverFingerprintCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'fingerprint <id>',
    describe:
      'reset lv-root to a fingerprint of the history (from the golden medium): restored into a new volume, swapped in, the old root kept',
    builder: (y) =>
      withJson(
        withYes(
          y.positional('id', { type: 'string', describe: 'the 64-hex fingerprint (history list)' }),
          'confirm: replace lv-root',
        ),
      )
        .option('from', fromTargetOption)
        .option('allow-uncataloged', allowUncatalogedOption)
        .option('hostname', {
          requiresArg: true,
          type: 'string',
          describe:
            "another box's fingerprint (replicate A onto B): write this host name into the new root, as image create --hostname does",
        })
        .option('ip', {
          requiresArg: true,
          type: 'string',
          describe: "with --hostname: this box's static IPv4 address (a.b.c.d[/prefix]) in the new root",
        }),
    handler: async (a) => {
      const { parseIdentity } = await import('../image/index.js');
      const identity = parseIdentity(a.hostname, a.ip);
      const ctx = await kit.context(a);
      // --json: stdout is the plan alone (what the recovery says for a person goes nowhere).
      jsonOutput(ctx, a.json);
      const { runFingerprintRecovery } = await import('./fingerprint.js');
      await runFingerprintRecovery(ctx, String(a.id), {
        confirm: confirmOf(a),
        json: a.json,
        allowUncataloged: a['allow-uncataloged'],
        identity,
        ...(a.from !== undefined ? { from: a.from } : {}),
      });
    },
  });
}

/** `recover offbox`: a blank system disk brought back from the off-box copy (offbox.ts). */
export function recoverOffboxCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'offbox',
    describe:
      'bring a blank system disk back from the off-box backup (what "Recover from off-box backup" does): the factory layout and boot loader, the root of a fingerprint fetched from a target',
    builder: (y) =>
      withJson(
        withYes(
          y
            .option('recovery-file', {
              requiresArg: true,
              type: 'string',
              describe:
                'the recovery file (target, repository password, catalog key; see README); default: fw_cfg opt/zshield-recovery',
            })
            .option('target', {
              requiresArg: true,
              type: 'string',
              describe: 'serial or WWN of the system disk (overrides the config)',
            })
            .option('ask', {
              type: 'boolean',
              default: false,
              describe: 'ask for the target and the keys on this terminal instead of reading a recovery file',
            }),
          'confirm: erase the target disk',
        ),
      ),
    handler: async (a) => {
      if (a.ask && a['recovery-file'] !== undefined)
        throw new UsageError('--ask and --recovery-file: give one of them');
      const ctx = await kit.context(a);
      // --json: stdout is the plan alone (its title names the fingerprint chosen and its source).
      jsonOutput(ctx, a.json);
      const { runOffboxRecovery } = await import('./offbox.js');
      const { StreamPrompter } = await import('../system/prompt.js');
      const ask = a.ask ? new StreamPrompter(process.stdin, process.stderr) : undefined;
      try {
        await runOffboxRecovery(ctx, {
          confirm: confirmOf(a),
          json: a.json,
          ...(ask ? { ask } : {}),
          ...(a['recovery-file'] !== undefined ? { file: a['recovery-file'] } : {}),
          ...(a.target !== undefined ? { target: a.target } : {}),
        });
      } finally {
        ask?.close();
      }
    },
  });
}

/** The boot hook's `zshield_recovery=offbox` (cli.ts bootCommand). */
export async function offboxAtBoot(ctx: Context): Promise<void> {
  const { runOffboxAtBoot } = await import('./offbox.js');
  const { StreamPrompter } = await import('../system/prompt.js');
  await runOffboxAtBoot(ctx, {
    isTTY: Boolean(process.stdin.isTTY),
    prompter: () => new StreamPrompter(process.stdin, process.stdout),
  });
}
