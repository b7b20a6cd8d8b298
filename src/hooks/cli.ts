import type { Argv, CommandModule } from 'yargs';
import type { CommandArgs, CommandKit } from '../context.js';

// The implementation is loaded when the command runs, not at every start of the binary.

/**
 * `zshield apt-hook`: what the package's apt hook runs (rc/zshield.apt.conf, DPkg::Pre-Invoke).
 * Its settings are hooks.* in the config.
 */
export function aptHookCommand(kit: CommandKit): CommandModule {
  return {
    command: 'apt-hook',
    describe:
      "apt's pre-upgrade hook: a backup (reason pre-upgrade) unless hooks.* say no, in a chroot, container or on the golden medium, or the restore point is recent",
    builder: (y: Argv) =>
      y.option('json', {
        type: 'boolean',
        default: false,
        describe: 'print the decision and its result as one JSON document',
      }),
    handler: async (argv) => {
      const a = argv as unknown as CommandArgs;
      const json = a['json'] === true;
      const ctx = await kit.context(a, { quietConsole: json });
      const { runAptHook } = await import('./apt.js');
      const r = await runAptHook(ctx);
      if (json) ctx.out.print(JSON.stringify(r, null, 2));
      else if (r.result === 'dry-run')
        ctx.out.print('zshield: would take a pre-upgrade backup (dry run: nothing was changed)');
    },
  };
}
