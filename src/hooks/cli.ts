import type { Argv, CommandModule } from 'yargs';
import type { CommandArgs, CommandKit } from '../context.js';
import { JSON_OPTION, jsonOutput, printJson, wantsJson } from '../output.js';

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
    builder: (y: Argv) => y.option('json', JSON_OPTION),
    handler: async (argv) => {
      const a = argv as unknown as CommandArgs;
      const ctx = await kit.context(a, { quietConsole: wantsJson(a) });
      const out = jsonOutput(ctx, wantsJson(a));
      const { runAptHook } = await import('./apt.js');
      const r = await runAptHook(ctx);
      if (wantsJson(a)) printJson(out, r);
    },
  };
}
