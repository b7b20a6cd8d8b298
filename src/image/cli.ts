import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../errors.js';
import type { Setup, SetupArgs } from '../remote/cli.js';

// The implementations are loaded when an image command runs, not at every start of the binary.

type Args = SetupArgs & Record<string, unknown>;

function seconds(v: unknown): number {
  const n = Number(v ?? 0);
  if (!Number.isFinite(n) || n < 0) throw new UsageError('--wait must be a number of seconds >= 0');
  return n * 1000;
}

export function imageCommand(setup: Setup): CommandModule {
  const wait = {
    type: 'number',
    default: 0,
    describe: 'seconds to wait for another zshield holding the LVM lock',
  } as const;
  return {
    command: 'image',
    describe: 'verified, restorable images of the system (lv-root), taken from a snapshot',
    builder: (y: Argv) =>
      y
        .command(
          'create',
          'make an image now: copy the file system from a snapshot, compressed; verify it; keep image.keep',
          (yy: Argv) =>
            yy
              .option('source', {
                choices: ['temporary', 'snap0'],
                describe: 'read a temporary snapshot made for the job, or snap0 (wins over image.source)',
              })
              .option('hostname', {
                type: 'string',
                describe:
                  "give the image another host name (a standby brought up beside this box); written into the job's own snapshot, never into lv-root or snap0",
              })
              .option('ip', {
                type: 'string',
                describe:
                  'with --hostname: the static IPv4 address (a.b.c.d[/prefix]) of the image, in its /etc/network/interfaces',
              })
              .option('wait', wait)
              .option('json', {
                type: 'boolean',
                default: false,
                describe: 'with --dry-run: the plan as JSON',
              }),
          async (a) => {
            const args = a as unknown as Args;
            const { parseIdentity } = await import('./identity.js');
            const identity = parseIdentity(args['hostname'], args['ip']);
            const ctx = await setup(args);
            const waitMs = seconds(args['wait']);
            const { runImageCreate } = await import('./create.js');
            const outcome = await runImageCreate(ctx, {
              waitMs,
              identity,
              json: Boolean(args['json']),
              ...(args['source'] ? { source: args['source'] as 'temporary' | 'snap0' } : {}),
            });
            if (outcome) {
              ctx.out.print(
                `image made and verified: ${outcome.image}${outcome.tries > 1 ? ` (attempt ${outcome.tries})` : ''}${outcome.pruned.length ? `; ${outcome.pruned.length} old file(s) pruned` : ''}`,
              );
            }
          },
        )
        .command(
          'list',
          'list the images in image.dir',
          (yy: Argv) =>
            yy.option('json', { type: 'boolean', default: false, describe: 'machine-readable output' }),
          async (a) => {
            const args = a as unknown as Args;
            const ctx = await setup(args, true);
            const { formatImageList, listedImages } = await import('./prune.js');
            const images = listedImages(ctx.config.image.dir);
            ctx.out.print(
              args['json'] ? JSON.stringify(images, null, 2) : formatImageList(ctx.config.image.dir, images),
            );
          },
        )
        .command(
          'verify <file>',
          'check an image: its checksum and manifest, then its file system (unpacked to a sparse copy)',
          (yy: Argv) =>
            yy.positional('file', { type: 'string', describe: 'the .img.zst file' }).option('quick', {
              type: 'boolean',
              default: false,
              describe: 'the checksum and manifest only',
            }),
          async (a) => {
            const args = a as unknown as Args;
            const ctx = await setup(args);
            const { runImageVerify } = await import('./verify.js');
            const r = await runImageVerify(ctx, String(args['file']), { quick: Boolean(args['quick']) });
            ctx.out.print(
              `image verified: ${r.file} (SHA-256 ${r.sha256}${r.content ? `, file system ${r.content.fsck}, holds ${r.content.contains.join(', ')}` : ', checksum only'})`,
            );
          },
        )
        .command(
          'prune',
          "keep the newest N images of this host in image.dir; delete the older ones (only zshield's own files)",
          (yy: Argv) =>
            yy
              .option('keep', { type: 'number', describe: 'images to keep (wins over image.keep)' })
              .option('host', {
                type: 'string',
                describe: "prune another host's images (the host part of their names)",
              })
              .option('json', { type: 'boolean', default: false, describe: 'print the plan as JSON' }),
          async (a) => {
            const args = a as unknown as Args;
            const ctx = await setup(args);
            const { runImagePrune } = await import('./prune.js');
            await runImagePrune(ctx, {
              json: Boolean(args['json']),
              ...(args['keep'] !== undefined ? { keep: Number(args['keep']) } : {}),
              ...(args['host'] ? { kind: String(args['host']) } : {}),
            });
          },
        )
        .command(
          'restore <file>',
          'write an image into lv-root (from the golden medium), check it, take a new snap0',
          (yy: Argv) =>
            yy
              .positional('file', { type: 'string', describe: 'the .img.zst file' })
              .option('yes', { type: 'boolean', default: false, describe: 'confirm: replace lv-root' })
              .option('json', { type: 'boolean', default: false, describe: 'print the plan as JSON' })
              .option('wait', wait),
          async (a) => {
            const args = a as unknown as Args;
            const ctx = await setup(args);
            const waitMs = seconds(args['wait']);
            const { runImageRestore } = await import('./restore.js');
            await runImageRestore(ctx, String(args['file']), {
              confirm: args['yes'] ? 'yes' : 'ask',
              json: Boolean(args['json']),
              waitMs,
            });
          },
        )
        .demandCommand(1, 'say which: image create | list | verify | prune | restore'),
    handler: () => {},
  };
}
