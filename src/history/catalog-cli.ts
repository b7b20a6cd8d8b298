// `catalog`: the signed catalog of the history's fingerprints, mounted by cli.ts.
import type { CommandKit } from '../context.js';
import { VerifyError } from '../errors.js';
import { type CliCommand, group, jsonOutput, printJson, withJson } from '../output.js';

export function catalogCommand(kit: CommandKit): CliCommand {
  return group({
    command: 'catalog',
    describe: 'the signed catalog of backup fingerprints',
    builder: (y) =>
      y
        .command(
          'verify',
          'check every entry, the chain and the head against the pinned public key',
          (yy) =>
            withJson(
              yy.option('file-dir', {
                type: 'string',
                describe: 'check the catalog in this directory (e.g. fetched from a target)',
              }),
            ),
          async (a) => {
            const ctx = await kit.context(a, { quietConsole: a.json });
            const out = jsonOutput(ctx, a.json);
            const { verifyCatalog } = await import('./catalog.js');
            const dir = a['file-dir'] !== undefined ? String(a['file-dir']) : ctx.config.history.dir;
            const c = verifyCatalog(dir, ctx.config.history.publicKey);
            if (a['file-dir'] !== undefined) {
              const { readSeenHead } = await import('./state.js');
              const seen = readSeenHead(ctx.config.history.dir);
              if (seen && c.head.count < seen.count)
                throw new VerifyError(
                  `catalog in ${dir}: rolled back: its signed head has ${c.head.count} entries, this box has seen ${seen.count}`,
                  {
                    hint: 'a copy older than one already seen was put back; the next zshield history replicate replaces it',
                  },
                );
            }
            if (c.unfinishedAppend)
              ctx.log.warn(
                'catalog: the last entry was written but its head was not (an append was cut short); the next append finishes it',
              );
            ctx.out.print(
              `catalog verified: ${c.entries.length} entries, signed by ${ctx.config.history.publicKey}`,
            );
            if (a.json)
              printJson(out, {
                verified: true,
                dir,
                entries: c.entries.length,
                publicKey: ctx.config.history.publicKey,
                unfinishedAppend: c.unfinishedAppend,
              });
          },
        )
        .demandCommand(1, 'say which: catalog verify'),
  });
}

/** The history's modules for cli/main.ts: `...historyCommands(kit)` in commandModules. */
