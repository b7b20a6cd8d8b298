import type { CommandKit } from '../context.js';
import { UsageError } from '../errors.js';
import { type CliCommand, command, group, jsonOutput, printJson, withJson } from '../output.js';

/** Where the boxes' pinned catalog keys are kept unless --keys says otherwise. */
export const DEFAULT_KEYS_DIR = '/etc/zshield/fleet-keys';
/** A box backs up daily: two days without a backup is one missed day and the next one late. */
const DEFAULT_MAX_AGE_HOURS = 48;

/** `fleet`: a vendor's view of every box's history on one target (run anywhere with read access). */
export function fleetCommand(kit: CommandKit): CliCommand {
  return group({
    command: 'fleet',
    describe: "every box's history on a target: its verified catalog, newest backup, files and bytes",
    builder: (y) =>
      y
        .command(
          command({
            command: 'status',
            describe:
              "for each box on a target: its catalog checked against its pinned key (KEYS/HOST.pub), the newest backup's age, its files all there, the bytes; fails naming the boxes that are stale, do not verify, lack files or rewrote their catalog",
            builder: (yy) =>
              withJson(yy)
                .option('target', {
                  type: 'string',
                  demandOption: true,
                  requiresArg: true,
                  describe: 'the history target (history.targets) that holds the boxes, one folder each',
                })
                .option('keys', {
                  type: 'string',
                  default: DEFAULT_KEYS_DIR,
                  requiresArg: true,
                  describe: "folder of the boxes' pinned catalog public keys, HOST.pub each",
                })
                .option('max-age', {
                  type: 'number',
                  default: DEFAULT_MAX_AGE_HOURS,
                  requiresArg: true,
                  describe: 'hours: a box whose newest backup is older fails',
                }),
            handler: async (a) => {
              const maxAge = Number(a['max-age']);
              if (!Number.isFinite(maxAge) || maxAge <= 0)
                throw new UsageError('--max-age must be a number of hours > 0');
              const ctx = await kit.context(a, { quietConsole: a.json });
              const out = jsonOutput(ctx, a.json);
              const { fleetFailure, formatFleetReport, runFleetStatus } = await import('./status.js');
              const { fleetHeadsFile } = await import('../state/fleet-heads.js');
              const report = await runFleetStatus(ctx, {
                target: a.target,
                keysDir: a.keys,
                maxAgeHours: maxAge,
              });
              const failure = fleetFailure(report, fleetHeadsFile(ctx.config.paths.stateDir, report.target));
              // The table either way; with --json a failure's document carries the report instead.
              ctx.out.print(formatFleetReport(report));
              if (failure) throw failure;
              if (a.json) printJson(out, report);
            },
          }),
        )
        .demandCommand(1, 'say which: fleet status'),
  });
}
