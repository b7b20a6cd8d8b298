import type { CommandKit } from '../context.js';
import { UsageError } from '../errors.js';
import { keyOption, targetOf, targetOptions, whole } from '../golden/index.js';
import { command, group, jsonOutput, printJson, withJson } from '../output.js';

// The implementations are loaded when a clone command runs.

// Options several subcommands share, declared once.
const interfaceOption = { type: 'string', describe: 'network interface (else clone.interface)' } as const;

function sendCommand(kit: CommandKit) {
  return command({
    command: 'send <image>',
    describe: 'send a golden image to the receivers on this LAN; repair failed ones; print a table',
    builder: (yy) =>
      withJson(
        yy
          .positional('image', { type: 'string' })
          .option('session', { type: 'string', describe: 'session name (default: the image id)' })
          .option('key', keyOption)
          .option('interface', interfaceOption)
          .option('min-receivers', { type: 'number', describe: 'start when this many joined' })
          .option('max-wait', { type: 'number', describe: 'or this many seconds after the first joined' })
          .option('max-bitrate', { type: 'string', describe: 'cap, udpcast syntax: 500m, 80000k' })
          .option('retries-until-drop', {
            type: 'number',
            describe: 'drop a receiver after this many unanswered requests',
          })
          .option('repair-window', {
            type: 'number',
            describe: 'seconds to wait for receiver reports after the stream',
          }),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runSend } = await import('./send.js');
      const minReceivers = whole('min-receivers', a['min-receivers'], 1);
      const maxWaitSeconds = whole('max-wait', a['max-wait'], 0);
      const retriesUntilDrop = whole('retries-until-drop', a['retries-until-drop'], 1);
      const repairWindowSeconds = whole('repair-window', a['repair-window'], 1);
      const bitrate = a['max-bitrate'];
      if (bitrate !== undefined && !/^\d+[km]?$/.test(bitrate))
        throw new UsageError('--max-bitrate: like 500m, 80000k');
      const r = await runSend(ctx, {
        image: String(a.image),
        ...(a.session ? { session: a.session } : {}),
        ...(a.key ? { keyFile: a.key } : {}),
        ...(a.interface ? { interface: a.interface } : {}),
        ...(minReceivers !== undefined ? { minReceivers } : {}),
        ...(maxWaitSeconds !== undefined ? { maxWaitSeconds } : {}),
        ...(retriesUntilDrop !== undefined ? { retriesUntilDrop } : {}),
        ...(repairWindowSeconds !== undefined ? { repairWindowSeconds } : {}),
        ...(bitrate ? { maxBitrate: bitrate } : {}),
      });
      // runSend throws unless every receiver that joined verified.
      if (r && a.json) printJson(out, r);
      if (r) ctx.out.print(`all ${r.rows.length} receiver(s) verified ${r.imageId}`);
    },
  });
}

function receiveCommand(kit: CommandKit) {
  return command({
    command: 'receive',
    describe:
      'join a clone session and write the golden image onto this box (run from a rescue or installer system)',
    builder: (yy) =>
      targetOptions(yy)
        .option('session', {
          type: 'string',
          describe: 'accept only this session (else clone.session)',
        })
        .option('name', { type: 'string', describe: "name in the sender's table (default: host name)" })
        .option('interface', interfaceOption),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runReceive } = await import('./receive.js');
      // Without --yes the plan is shown and checked, then refused (exit 6), as golden image write.
      const r = await runReceive(ctx, {
        target: targetOf(a),
        yes: a.yes,
        ...(a.session ? { session: a.session } : {}),
        ...(a.name ? { name: a.name } : {}),
        ...(a.interface ? { interface: a.interface } : {}),
      });
      if (r && a.json) printJson(out, r);
      if (r) {
        ctx.out.print(`REPORT ${JSON.stringify(r.report)}`);
        ctx.out.print(`clone verified: ${r.imageId} on ${r.target}`);
      }
    },
  });
}

/** `zshield clone send|receive`: multicast cloning over udpcast. */
export function cloneCommand(kit: CommandKit) {
  return group({
    command: 'clone',
    describe:
      'write a golden image to many boxes at once over multicast (udpcast), verified, failed ones repaired',
    builder: (y) =>
      y
        .command(sendCommand(kit))
        .command(receiveCommand(kit))
        .demandCommand(1, 'say which: clone send | clone receive'),
  });
}
