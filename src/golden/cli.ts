import { goldenImageCommand, goldenUpdateCommand } from '../clone/cli.js';
import type { CommandKit } from '../context.js';
import { confirmOf, group, withJson, withYes } from '../output.js';

export function goldenCommand(kit: CommandKit) {
  return group({
    command: 'golden',
    describe: 'the golden medium',
    builder: (y) =>
      y
        .command(
          'prepare',
          'write a golden medium from this (prototype) system: GRUB, read-only root, recovery entries, boot hook',
          (yy) =>
            withJson(
              withYes(
                yy
                  .option('target', {
                    requiresArg: true,
                    type: 'string',
                    describe: 'serial or WWN of the medium (else disks.golden.serial)',
                  })
                  .option('package', {
                    requiresArg: true,
                    type: 'string',
                    describe:
                      "zshield's Debian package: installed into this prototype first (dpkg -i); the medium then uses its units and grub.d script",
                  }),
                'confirm: erase the medium',
              ),
            ),
          async (a) => {
            const ctx = await kit.context(a);
            const { runGoldenPrepare } = await import('./run.js');
            await runGoldenPrepare(ctx, {
              confirm: confirmOf(a),
              json: a.json,
              ...(a.target ? { target: a.target } : {}),
              ...(a.package ? { packageFile: a.package } : {}),
            });
          },
        )
        .command(goldenImageCommand(kit))
        .command(goldenUpdateCommand(kit))
        .demandCommand(1, 'say which: golden prepare | golden image | golden update'),
  });
}
