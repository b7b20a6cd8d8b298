import type { Argv } from 'yargs';
import type { CommandKit, Context } from '../context.js';
import { UsageError } from '../errors.js';
import { keyOption, targetOf, targetOptions, whole } from '../golden/index.js';
import { command, group, jsonOutput, printJson, withJson } from '../output.js';
import { rescueCommand } from './rescue/cli.js';

// The implementations are loaded when a clone command runs.

// Options several subcommands share, declared once.
const interfaceOption = { type: 'string', describe: 'network interface (else clone.interface)' } as const;

/** clone send's --netboot and the options that go with it. */
function netbootOptions<T>(y: Argv<T>) {
  return y
    .option('netboot', {
      type: 'boolean',
      default: false,
      describe:
        'the whole session: power the boxes of clone.machines, network-boot them into the rescue (dnsmasq, HTTP), send, cycle them into their new system',
    })
    .option('rescue', {
      type: 'string',
      describe: 'with --netboot: the folder clone rescue make wrote',
    })
    .option('dhcp-range', {
      type: 'string',
      describe: 'with --netboot: START,END addresses for the listed boxes (nobody else gets DHCP)',
    })
    .option('http-port', { type: 'number', default: 8067, describe: 'with --netboot: HTTP port' })
    .option('rescue-args', {
      type: 'string',
      default: 'console=tty0 console=ttyS0,115200',
      describe: "with --netboot: the rescue kernel's arguments",
    })
    .option('after', {
      choices: ['poweroff', 'reboot'] as const,
      default: 'poweroff' as const,
      describe: 'with --netboot: what a rescue does when its receive ended',
    })
    .option('boot-timeout', {
      type: 'number',
      default: 600,
      describe: 'with --netboot: seconds for a verified box to come back and boot from its disk',
    });
}

function sendCommand(kit: CommandKit) {
  return command({
    command: 'send <image>',
    describe: 'send a golden image to the receivers on this LAN; repair failed ones; print a table',
    builder: (yy) =>
      withJson(
        netbootOptions(yy)
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
        ...(a.netboot ? { extend: await netbootOf(ctx, a) } : {}),
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
        .option('interface', interfaceOption)
        .option('instructions', {
          type: 'string',
          describe:
            "in the network rescue: the netboot server's URL for this box (disk, session, name, interface from there)",
        })
        .conflicts('instructions', ['target', 'target-file', 'session', 'name', 'interface']),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runReceive } = await import('./receive.js');
      const given = a.instructions ? await fromInstructions(a.instructions, ctx.signal) : null;
      // Without --yes the plan is shown and checked, then refused (exit 6), as golden image write.
      const r = await runReceive(ctx, {
        yes: a.yes,
        ...(given ?? { target: targetOf(a) }),
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

/** clone send --netboot: on an interface the operator names, with the rescue and the range given. */
async function netbootOf(
  ctx: Context,
  a: {
    interface?: string | undefined;
    rescue?: string | undefined;
    'dhcp-range'?: string | undefined;
    'http-port': number;
    'rescue-args': string;
    after: 'poweroff' | 'reboot';
    'boot-timeout': number;
    key?: string | undefined;
  },
) {
  if (!a.interface) throw new UsageError('--netboot needs --interface: the LAN of the boxes, named');
  if (!a.rescue) throw new UsageError('--netboot needs --rescue DIR (zshield clone rescue make DIR)');
  if (!a['dhcp-range']) throw new UsageError('--netboot needs --dhcp-range START,END');
  const { netbootExtension } = await import('./netboot/session.js');
  return netbootExtension(ctx, {
    rescue: a.rescue,
    dhcpRange: a['dhcp-range'],
    httpPort: whole('http-port', a['http-port'], 1) ?? 8067,
    kernelArgs: a['rescue-args'],
    after: a.after,
    bootTimeoutSeconds: whole('boot-timeout', a['boot-timeout'], 1) ?? 600,
    keyFile: a.key ?? ctx.config.clone.signingKey,
  });
}

/** The receive's settings from the netboot server (the network rescue's receive). */
async function fromInstructions(url: string, signal: AbortSignal) {
  const { fetchInstructions, interfaceWithMac } = await import('./rescue/instructions.js');
  const i = await fetchInstructions(url, signal);
  return {
    target: { serial: i.disk },
    session: i.session,
    name: i.name,
    interface: interfaceWithMac(i.mac),
    portbase: i.portbase,
  };
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
        .command(rescueCommand(kit))
        .demandCommand(1, 'say which: clone send | clone receive | clone rescue'),
  });
}
