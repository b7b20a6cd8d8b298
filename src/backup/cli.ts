import type { CommandKit } from '../context.js';
import { REASONS, type Reason } from '../names/lvm-tags.js';
import { command, waitMs, withJson, withWait } from '../output.js';

// The implementation is loaded when the command runs, not at every start of the binary.

/**
 * `zshield backup`. `defaultReason` is pre-upgrade when the binary runs as `zshield_backup`: a
 * default rather than a prepended `--reason`, so that an explicit `--reason` is still given once.
 */
export function backupCommand(kit: CommandKit, opts: { defaultReason: Reason }) {
  return command({
    command: 'backup',
    describe: 'take a backup now: a new restore point (snapshot of lv-root) replacing the old one',
    builder: (y) =>
      withJson(
        withWait(
          y.option('reason', {
            requiresArg: true,
            choices: REASONS,
            default: opts.defaultReason,
            describe: 'why: recorded on the snapshot (zshield_backup uses pre-upgrade); give it once',
          }),
        ),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a);
      const wait = waitMs(a);
      const { runBackup } = await import('../restore-point/backup.js');
      const json = a.json;
      const outcome = await runBackup(ctx, { reason: a.reason, waitMs: wait, json });
      if (outcome && !json) {
        ctx.out.print(
          `backup taken: ${outcome.snapshot} (${outcome.reason}) at ${outcome.time.toISOString()}${outcome.repaired ? ' after repairing an interrupted rotation' : ''}`,
        );
      }
    },
  });
}
