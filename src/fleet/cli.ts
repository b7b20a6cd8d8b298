import type { CommandKit } from '../context.js';
import { UsageError } from '../errors.js';
import {
  type CliCommand,
  command,
  confirmOf,
  group,
  jsonOutput,
  printJson,
  withJson,
  withYes,
} from '../output.js';

/** Where the boxes' pinned catalog keys are kept unless --keys says otherwise. */
export const DEFAULT_KEYS_DIR = '/etc/zshield/fleet-keys';
/** A box backs up daily: two days without a backup is one missed day and the next one late. */
const DEFAULT_MAX_AGE_HOURS = 48;

/** `fleet`: a vendor's view of every box's history on one target (run anywhere with read access). */
export function fleetCommand(kit: CommandKit): CliCommand {
  return group({
    command: 'fleet',
    describe:
      "every box's history on a target: its verified catalog, newest backup, files and bytes; the vendor's prune of an append-only target",
    builder: (y) =>
      y
        .command(fleetStatusCommand(kit))
        .command(fleetPruneCommand(kit))
        .demandCommand(1, 'say which: fleet status | fleet prune'),
  });
}

/** `fleet status`: read only, on any machine with read access to the target. */
function fleetStatusCommand(kit: CommandKit): CliCommand {
  return command({
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
  });
}

/** `fleet prune`: on the vendor's machine, whose entry for the target holds the key that may delete. */
function fleetPruneCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'prune',
    describe:
      "with the target's prune credential (never on a box): remove from an append-only target exactly the files a box's verified catalog says its repository no longer has; no restic runs there",
    builder: (yy) =>
      withYes(withJson(yy), 'confirm: delete those files from the target')
        .option('target', {
          type: 'string',
          demandOption: true,
          requiresArg: true,
          describe:
            'the history target that holds the boxes; its entry here holds the credential that may delete',
        })
        .option('box', {
          type: 'string',
          demandOption: true,
          requiresArg: true,
          describe: "the box's folder on the target (as fleet status names it)",
        })
        .option('keys', {
          type: 'string',
          default: DEFAULT_KEYS_DIR,
          requiresArg: true,
          describe: "folder of the boxes' pinned catalog public keys, HOST.pub each",
        }),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runFleetPrune } = await import('./prune.js');
      const report = await runFleetPrune(ctx, {
        target: a.target,
        box: a.box,
        keysDir: a.keys,
        confirm: confirmOf(a),
      });
      if (a.json) printJson(out, report);
    },
  });
}
