import type { CommandKit } from '../context.js';
import { VgNotFoundError } from '../system/lvm.js';
import { NotFoundError } from '../errors.js';
import { command, withJson } from '../output.js';

export function statusCommand(kit: CommandKit) {
  return command({
    command: 'status',
    describe:
      'show the restore point (valid, fill %, age, reason), VG free space, the last backup, images, the daemon, recovery events',
    builder: (y) => withJson(y),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: true });
      const { formatStatus, gatherStatus } = await import('./status.js');
      const report = await gatherStatus(ctx);
      ctx.out.print(a.json ? JSON.stringify(report, null, 2) : formatStatus(report));
      // The report is printed either way; a missing VG or root LV also makes the exit code say so.
      if (!report.vg) throw new VgNotFoundError(ctx.config.lvm.vg);
      if (!report.root)
        throw new NotFoundError(`logical volume "${ctx.config.lvm.vg}/${ctx.config.lvm.rootLv}" not found`);
    },
  });
}
