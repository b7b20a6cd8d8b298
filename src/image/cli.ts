import type { Argv, CommandModule } from 'yargs';
import type { CommandArgs, CommandKit } from '../context.js';
import { JSON_OPTION, jsonOutput, printJson, wantsJson } from '../output.js';

// The implementations are loaded when an image command runs, not at every start of the binary.

type Args = CommandArgs;

export function imageCommand(kit: CommandKit): CommandModule {
  return {
    command: 'image',
    describe: 'verified, restorable images of the system (lv-root), taken from a snapshot',
    builder: (y: Argv) =>
      y
        .command(createCommand(kit))
        .command(listCommand(kit))
        .command(verifyCommand(kit))
        .command(pruneCommand(kit))
        .command(restoreCommand(kit))
        .demandCommand(1, 'say which: image create | list | verify | prune | restore'),
    handler: () => {},
  };
}

function createCommand(kit: CommandKit): CommandModule {
  return {
    command: 'create',
    describe:
      'make an image now: copy the file system from a snapshot, compressed; verify it; keep image.keep',
    builder: (y: Argv) =>
      y
        .option('source', {
          requiresArg: true,
          choices: ['temporary', 'snap0'],
          describe: 'read a temporary snapshot made for the job, or snap0 (wins over image.source)',
        })
        .option('hostname', {
          requiresArg: true,
          type: 'string',
          describe:
            "give the image another host name (a standby brought up beside this box); written into the job's own snapshot, never into lv-root or snap0",
        })
        .option('ip', {
          requiresArg: true,
          type: 'string',
          describe:
            'with --hostname: the static IPv4 address (a.b.c.d[/prefix]) of the image, in its /etc/network/interfaces',
        })
        .option('wait', kit.waitOption)
        .option('json', JSON_OPTION),
    handler: async (a) => {
      const args = a as unknown as Args;
      const { parseIdentity } = await import('./identity.js');
      const identity = parseIdentity(args['hostname'], args['ip']);
      const ctx = await kit.context(args);
      const waitMs = kit.waitMs(args);
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
  };
}

function listCommand(kit: CommandKit): CommandModule {
  return {
    command: 'list',
    describe: 'list the images in image.dir',
    builder: (y: Argv) => y.option('json', JSON_OPTION),
    handler: async (a) => {
      const args = a as unknown as Args;
      const ctx = await kit.context(args, { quietConsole: true });
      const { formatImageList, listedImages } = await import('./prune.js');
      const images = listedImages(ctx.config.image.dir);
      ctx.out.print(
        args['json'] ? JSON.stringify(images, null, 2) : formatImageList(ctx.config.image.dir, images),
      );
    },
  };
}

function verifyCommand(kit: CommandKit): CommandModule {
  return {
    command: 'verify <file>',
    describe: 'check an image: its checksum and manifest, then its file system (unpacked to a sparse copy)',
    builder: (y: Argv) =>
      y
        .positional('file', { type: 'string', describe: 'the .img.zst file' })
        .option('quick', {
          type: 'boolean',
          default: false,
          describe: 'the checksum and manifest only',
        })
        .option('json', JSON_OPTION),
    handler: async (a) => {
      const args = a as unknown as Args;
      const ctx = await kit.context(args, { quietConsole: wantsJson(args) });
      const out = jsonOutput(ctx, wantsJson(args));
      const { runImageVerify } = await import('./verify.js');
      const r = await runImageVerify(ctx, String(args['file']), { quick: Boolean(args['quick']) });
      if (wantsJson(args)) printJson(out, r);
      ctx.out.print(
        `image verified: ${r.file} (SHA-256 ${r.sha256}${r.content ? `, file system ${r.content.fsck}, holds ${r.content.contains.join(', ')}` : ', checksum only'})`,
      );
    },
  };
}

function pruneCommand(kit: CommandKit): CommandModule {
  return {
    command: 'prune',
    describe:
      "keep the newest N images of this host in image.dir; delete the older ones (only zshield's own files)",
    builder: (y: Argv) =>
      y
        .option('keep', {
          requiresArg: true,
          type: 'number',
          describe: 'images to keep (wins over image.keep)',
        })
        .option('host', {
          requiresArg: true,
          type: 'string',
          describe: "prune another host's images (the host part of their names)",
        })
        .option('json', JSON_OPTION),
    handler: async (a) => {
      const args = a as unknown as Args;
      const ctx = await kit.context(args);
      const { runImagePrune } = await import('./prune.js');
      await runImagePrune(ctx, {
        json: Boolean(args['json']),
        ...(args['keep'] !== undefined ? { keep: Number(args['keep']) } : {}),
        ...(args['host'] ? { kind: String(args['host']) } : {}),
      });
    },
  };
}

function restoreCommand(kit: CommandKit): CommandModule {
  return {
    command: 'restore <file>',
    describe: 'write an image into lv-root (from the golden medium), check it, take a new snap0',
    builder: (y: Argv) =>
      y
        .positional('file', { type: 'string', describe: 'the .img.zst file' })
        .option('yes', { type: 'boolean', default: false, describe: 'confirm: replace lv-root' })
        .option('json', JSON_OPTION)
        .option('wait', kit.waitOption),
    handler: async (a) => {
      const args = a as unknown as Args;
      const ctx = await kit.context(args);
      const waitMs = kit.waitMs(args);
      const { runImageRestore } = await import('./restore.js');
      await runImageRestore(ctx, String(args['file']), {
        confirm: args['yes'] ? 'yes' : 'ask',
        json: Boolean(args['json']),
        waitMs,
      });
    },
  };
}
