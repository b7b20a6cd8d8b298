import type { CommandKit } from '../../context.js';
import { command, group, jsonOutput, printJson, withJson } from '../../output.js';

const list = (v: unknown): string[] => (v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String));

function makeCommand(kit: CommandKit) {
  return command({
    command: 'make <out>',
    describe:
      'build a network rescue (kernel + initramfs) for clone send --netboot: drivers, udp-receiver, the trusted keys; zshield fetched after boot, checked by hash',
    builder: (yy) =>
      withJson(
        yy
          .positional('out', { type: 'string', describe: 'a new or empty folder' })
          .option('key', {
            type: 'string',
            array: true,
            demandOption: true,
            describe: 'a trusted public key (ed25519:...) or a file holding one; repeat for several',
          })
          .option('kernel', {
            type: 'string',
            demandOption: true,
            describe:
              'a kernel version installed here (/boot/vmlinuz-V), or a folder with boot/ and lib/modules/ (an unpacked kernel package)',
          })
          .option('zshield', {
            type: 'string',
            describe: 'the zshield binary the rescue runs (default: this single executable)',
          })
          .option('module', {
            type: 'string',
            array: true,
            describe: 'another driver to load (NIC, disk controller), with its dependencies; repeat',
          }),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runRescueMake } = await import('./make.js');
      const m = await runRescueMake(ctx, {
        out: String(a.out),
        keys: list(a.key),
        kernel: String(a.kernel),
        ...(a.zshield ? { zshield: a.zshield } : {}),
        modules: list(a.module),
      });
      if (m && a.json) printJson(out, { out: a.out, ...m });
    },
  });
}

/** `zshield clone rescue make`: what a box network-boots to be written. */
export function rescueCommand(kit: CommandKit) {
  return group({
    command: 'rescue',
    describe: 'the network rescue a box boots from clone send --netboot to receive the image',
    builder: (y) => y.command(makeCommand(kit)).demandCommand(1, 'say which: clone rescue make'),
  });
}
