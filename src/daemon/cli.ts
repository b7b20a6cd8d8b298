import type { CommandKit, Context } from '../context.js';
import { type GlobalArgs, command } from '../output.js';
import type { DaemonHooks } from './daemon.js';

export type StartDaemon = (ctx: Context, a: GlobalArgs) => Promise<void>;

export function daemonCommand(kit: CommandKit, start: StartDaemon = startDaemon) {
  return command({
    command: 'daemon',
    describe:
      'run the backup daemon: daily backup, catch-up, snapshot fill checks; SIGTERM stops it, SIGHUP reloads the config',
    builder: (y) => y,
    handler: async (a) => {
      // The daemon finishes a running backup on SIGTERM instead of aborting it.
      const ctx = await kit.context(a, { abortOnSignal: false });
      await start(ctx, a);
    },
  });
}

/**
 * The daemon with the config it reloads on SIGHUP (the file the command line named), and what runs
 * after each health check (cli/main.ts gives the metrics writer: the daemon does not import it).
 */
export async function startDaemon(
  ctx: Context,
  a: GlobalArgs,
  more: Pick<DaemonHooks, 'afterCheck'> = {},
): Promise<void> {
  const { runDaemon } = await import('./daemon.js');
  const { loadConfig } = await import('../config/load.js');
  await runDaemon(ctx, { reloadConfig: async () => (await loadConfig(a.config)).config, ...more });
}
