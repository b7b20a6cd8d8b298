import type { CommandKit } from '../context.js';
import { command, jsonOutput, printJson, withJson } from '../output.js';

// The implementation is loaded when the command runs, not at every start of the binary.

/**
 * `zshield apt-hook`: what the package's apt hook runs (rc/zshield.apt.conf, DPkg::Pre-Invoke).
 * Its settings are hooks.* in the config.
 */
export function aptHookCommand(kit: CommandKit) {
  return command({
    command: 'apt-hook',
    describe:
      "apt's pre-upgrade hook: a backup (reason pre-upgrade) unless hooks.* say no, in a chroot, container or on the golden medium, or the restore point is recent",
    builder: (y) => withJson(y),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runAptHook } = await import('./apt.js');
      const r = await runAptHook(ctx);
      if (a.json) printJson(out, r);
    },
  });
}
