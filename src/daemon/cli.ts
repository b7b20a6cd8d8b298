import type { Argv, CommandModule } from 'yargs';
import { loadConfig } from '../config/load.js';
import type { CommandArgs, CommandKit, Context } from '../context.js';

export function daemonCommand(kit: CommandKit): CommandModule {
  return {
    command: 'daemon',
    describe:
      'run the backup daemon: daily backup, catch-up, snapshot fill checks; SIGTERM stops it, SIGHUP reloads the config',
    builder: (y: Argv) => y,
    handler: async (argv) => {
      const a = argv as unknown as CommandArgs;
      // The daemon finishes a running backup on SIGTERM instead of aborting it.
      const ctx = await kit.context(a, { abortOnSignal: false });
      await startDaemon(ctx, a);
    },
  };
}

/** The daemon with the config it reloads on SIGHUP (the file the command line named). */
export async function startDaemon(ctx: Context, a: CommandArgs): Promise<void> {
  const { runDaemon } = await import('./daemon.js');
  await runDaemon(ctx, { reloadConfig: async () => (await loadConfig(a.config)).config });
}
