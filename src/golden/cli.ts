import type { Argv, CommandModule } from 'yargs';
import { goldenImageCommand, goldenUpdateCommand } from '../clone/cli.js';
import type { CommandArgs, CommandKit } from '../context.js';
import { JSON_OPTION } from '../output.js';

export function goldenCommand(kit: CommandKit): CommandModule {
  return {
    command: 'golden',
    describe: 'the golden medium',
    builder: (y: Argv) =>
      y
        .command(
          'prepare',
          'write a golden medium from this (prototype) system: GRUB, read-only root, recovery entries, boot hook',
          (yy: Argv) =>
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
              })
              .option('yes', { type: 'boolean', default: false, describe: 'confirm: erase the medium' })
              .option('json', JSON_OPTION),
          async (argv) => {
            const a = argv as unknown as CommandArgs;
            const ctx = await kit.context(a);
            const { runGoldenPrepare } = await import('./run.js');
            await runGoldenPrepare(ctx, {
              confirm: a['yes'] ? 'yes' : 'ask',
              json: Boolean(a['json']),
              ...(a['target'] ? { target: String(a['target']) } : {}),
              ...(a['package'] ? { packageFile: String(a['package']) } : {}),
            });
          },
        )
        .command(goldenImageCommand(kit))
        .command(goldenUpdateCommand(kit))
        .demandCommand(1, 'say which: golden prepare | golden image | golden update'),
    handler: () => {},
  };
}
