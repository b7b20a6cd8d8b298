import type { Context } from '../context.js';
import type { CommandStep } from '../plan/plan.js';

/**
 * Optional: reboot each configured box into receive mode before a session (the seed did it with
 * Intel AMT). Each entry is an argument array run through the Runner as it is; a password belongs
 * in the tool's environment or password-file option, never in the config's argv. Untested on real
 * hardware: no test here has a BMC to talk to.
 */
export async function runPowerCommands(ctx: Context): Promise<void> {
  for (const box of ctx.config.clone.power) {
    const [file, ...args] = box.command;
    ctx.out.print(`power: ${box.name} (untested on real hardware)`);
    await ctx.runner.run({ file: file!, args, mutates: true, timeoutMs: 60_000 });
  }
}

/**
 * The same commands as plan steps (clone send --power): they run after every check of the send
 * passed, and a dry run shows them without running them.
 */
export function powerSteps(ctx: Pick<Context, 'config'>): CommandStep[] {
  return ctx.config.clone.power.map((box) => {
    const [file, ...args] = box.command;
    return {
      title: `power: ${box.name} into receive mode (clone.power; untested on real hardware)`,
      command: { file: file!, args, mutates: true, timeoutMs: 60_000 },
    };
  });
}
