import type { CommandKit, Context } from '../context.js';
import { type GlobalArgs, command, confirmOf, group, withJson, withYes } from '../output.js';
import { offboxAtBoot, recoverFingerprintCommand, recoverOffboxCommand } from './history-cli.js';

// The implementations are loaded when a command runs, not at every start of the binary.

/** `recover factory | latest | fingerprint ID | offbox`. */
export function recoverCommand(kit: CommandKit) {
  return group({
    command: 'recover',
    describe: 'recover the system disk now (what the GRUB recovery entries do)',
    builder: (y) =>
      y
        .command(
          'factory',
          'factory reset, what "Recover to factory default" does: rebuild the system disk from the golden root (erases it)',
          (yy) =>
            withJson(
              withYes(yy, 'confirm: erase the target disk').option('target', {
                requiresArg: true,
                type: 'string',
                describe: 'serial or WWN of the system disk (overrides the config)',
              }),
            ),
          async (a) => {
            const ctx = await kit.context(a);
            const { runFactoryReset } = await import('./index.js');
            await runFactoryReset(ctx, {
              confirm: confirmOf(a),
              json: a.json,
              ...(a.target ? { target: a.target } : {}),
            });
          },
        )
        .command(
          'latest',
          'restore the latest backup, what "Recover to latest backup" does: merge snap0 into lv-root, put /boot back, take a new snap0',
          (yy) => withJson(withYes(yy, 'confirm: roll lv-root back')),
          async (a) => {
            const ctx = await kit.context(a);
            const { runRestore } = await import('./index.js');
            await runRestore(ctx, { confirm: confirmOf(a), json: a.json });
          },
        )
        .command([recoverFingerprintCommand(kit), recoverOffboxCommand(kit)])
        .demandCommand(
          1,
          'say which: recover factory | recover latest | recover fingerprint ID | recover offbox',
        ),
  });
}

/**
 * `zshield boot`, the boot hook. `daemon` goes on as the backup daemon (daemon/cli.ts, wired by
 * main: a recovery never starts the daemon's jobs itself).
 */
export function bootCommand(
  kit: CommandKit,
  opts: {
    daemon: (ctx: Context, a: GlobalArgs) => Promise<void>;
  },
) {
  return command({
    command: 'boot',
    describe:
      'run at every boot: act on zshield_recovery= from the kernel command line (factory reset, restore latest); finish an interrupted recovery',
    builder: (y) =>
      y
        .option('cmdline-file', {
          requiresArg: true,
          type: 'string',
          default: '/proc/cmdline',
          describe: 'where to read the kernel command line',
        })
        .option('daemon', {
          type: 'boolean',
          default: false,
          describe: 'then go on as the backup daemon (only when running from the system disk)',
        }),
    handler: async (a) => {
      // Started from rc.local on the console: when rcS ends, the console's session hangs up.
      // Ignore SIGHUP so the boot hook (and the daemon it becomes) survives it; the daemon adds
      // its own reload handler.
      process.on('SIGHUP', () => {});
      const ctx = await kit.context(a);
      const { answerGoldenUpdate } = await import('../golden/index.js');
      if (await answerGoldenUpdate(ctx, a['cmdline-file'])) return;
      const acted = await actOnCmdline(ctx, a['cmdline-file']);
      if (acted !== 'none' && !ctx.dryRun && ctx.config.recovery.reboot) {
        ctx.out.print('zshield: rebooting into the system disk');
        // busybox and systemd reboot return once init has the request; the log is closed after.
        await ctx.runner.run({ file: 'reboot', args: [], mutates: true });
        return;
      }
      if (a.daemon && (await lvRootIsRunning(ctx))) await opts.daemon(ctx, a);
    },
  });
}

async function actOnCmdline(ctx: Context, cmdlineFile: string): Promise<string> {
  const { recoveryRequest } = await import('./cmdline.js');
  const { readCmdline } = await import('../system/kernel-cmdline.js');
  const { resumeInterrupted, runFactoryReset, runRestore } = await import('./index.js');
  const request = recoveryRequest(readCmdline(cmdlineFile));
  const confirm = { confirm: 'countdown' as const };
  if (request === 'default') {
    await runFactoryReset(ctx, confirm);
    return 'factory';
  }
  if (request === 'latest') {
    await runRestore(ctx, confirm);
    return 'restore';
  }
  if (request === 'offbox') {
    await offboxAtBoot(ctx);
    return 'offbox';
  }
  const acted = await resumeInterrupted(ctx, confirm, undefined, offboxAtBoot);
  if (acted === 'none') ctx.log.info('zshield boot: no recovery requested');
  return acted;
}

async function lvRootIsRunning(ctx: Context): Promise<boolean> {
  const { runningFromLvRoot } = await import('./resume.js');
  try {
    return await runningFromLvRoot(ctx);
  } catch {
    return false;
  }
}
