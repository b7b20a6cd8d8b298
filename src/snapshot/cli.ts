import type { Argv, CommandModule } from 'yargs';
import type { CommandArgs, CommandKit } from '../context.js';
import { REASONS, type Reason } from '../names/lvm-tags.js';
import { JSON_OPTION } from '../output.js';

// The implementation is loaded when the command runs, not at every start of the binary.

/**
 * `zshield backup`. `defaultReason` is pre-upgrade when the binary runs as `zshield_backup`: a
 * default rather than a prepended `--reason`, so that an explicit `--reason` is still given once.
 */
export function backupCommand(kit: CommandKit, opts: { defaultReason: Reason }): CommandModule {
  return {
    command: 'backup',
    describe: 'take a backup now: a new restore point (snapshot of lv-root) replacing the old one',
    builder: (y: Argv) =>
      y
        .option('reason', {
          requiresArg: true,
          choices: REASONS as unknown as string[],
          default: opts.defaultReason,
          describe: 'why: recorded on the snapshot (zshield_backup uses pre-upgrade); give it once',
        })
        .option('wait', kit.waitOption)
        .option('json', JSON_OPTION),
    handler: async (argv) => {
      const a = argv as unknown as CommandArgs;
      const ctx = await kit.context(a);
      const waitMs = kit.waitMs(a);
      const { runBackup } = await import('./backup.js');
      const json = a['json'] === true;
      const outcome = await runBackup(ctx, { reason: a['reason'] as Reason, waitMs, json });
      if (outcome && !json) {
        ctx.out.print(
          `backup taken: ${outcome.snapshot} (${outcome.reason}) at ${outcome.time.toISOString()}${outcome.repaired ? ' after repairing an interrupted rotation' : ''}`,
        );
      }
    },
  };
}
