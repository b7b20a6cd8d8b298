import type { CommandKit } from '../context.js';
import {
  command,
  confirmOf,
  group,
  jsonOutput,
  printJson,
  waitMs,
  withJson,
  withWait,
  withYes,
} from '../output.js';

// The implementations are loaded when an image command runs, not at every start of the binary.

export function imageCommand(kit: CommandKit) {
  return group({
    command: 'image',
    describe: 'verified, restorable images of the system (lv-root), taken from a snapshot',
    builder: (y) =>
      y
        .command(createCommand(kit))
        .command(listCommand(kit))
        .command(verifyCommand(kit))
        .command(pruneCommand(kit))
        .command(restoreCommand(kit))
        .demandCommand(1, 'say which: image create | list | verify | prune | restore'),
  });
}

function createCommand(kit: CommandKit) {
  return command({
    command: 'create',
    describe:
      'make an image now: copy the file system from a snapshot, compressed; verify it; keep image.keep',
    builder: (y) =>
      withJson(
        withWait(
          y
            .option('source', {
              requiresArg: true,
              choices: ['temporary', 'snap0'] as const,
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
            }),
        ),
      ),
    handler: async (a) => {
      const { parseIdentity } = await import('./identity.js');
      const identity = parseIdentity(a.hostname, a.ip);
      const ctx = await kit.context(a);
      const wait = waitMs(a);
      const { runImageCreate } = await import('./create.js');
      const outcome = await runImageCreate(ctx, {
        waitMs: wait,
        identity,
        json: a.json,
        ...(a.source ? { source: a.source } : {}),
      });
      if (outcome) {
        ctx.out.print(
          `image made and verified: ${outcome.image}${outcome.tries > 1 ? ` (attempt ${outcome.tries})` : ''}${outcome.pruned.length ? `; ${outcome.pruned.length} old file(s) pruned` : ''}`,
        );
      }
    },
  });
}

function listCommand(kit: CommandKit) {
  return command({
    command: 'list',
    describe: 'list the images in image.dir',
    builder: (y) => withJson(y),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: true });
      const { formatImageList, listedImages } = await import('./prune.js');
      const images = listedImages(ctx.config.image.dir);
      ctx.out.print(a.json ? JSON.stringify(images, null, 2) : formatImageList(ctx.config.image.dir, images));
    },
  });
}

function verifyCommand(kit: CommandKit) {
  return command({
    command: 'verify <file>',
    describe: 'check an image: its checksum and manifest, then its file system (unpacked to a sparse copy)',
    builder: (y) =>
      withJson(
        y.positional('file', { type: 'string', describe: 'the .img.zst file' }).option('quick', {
          type: 'boolean',
          default: false,
          describe: 'the checksum and manifest only',
        }),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runImageVerify } = await import('./verify.js');
      const r = await runImageVerify(ctx, String(a.file), { quick: a.quick });
      if (a.json) printJson(out, r);
      ctx.out.print(
        `image verified: ${r.file} (SHA-256 ${r.sha256}${r.content ? `, file system ${r.content.fsck}, holds ${r.content.contains.join(', ')}` : ', checksum only'})`,
      );
    },
  });
}

function pruneCommand(kit: CommandKit) {
  return command({
    command: 'prune',
    describe:
      "keep the newest N images of this host in image.dir; delete the older ones (only zshield's own files)",
    builder: (y) =>
      withJson(
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
          }),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a);
      const { runImagePrune } = await import('./prune.js');
      await runImagePrune(ctx, {
        json: a.json,
        ...(a.keep !== undefined ? { keep: Number(a.keep) } : {}),
        ...(a.host ? { kind: a.host } : {}),
      });
    },
  });
}

function restoreCommand(kit: CommandKit) {
  return command({
    command: 'restore <file>',
    describe: 'write an image into lv-root (from the golden medium), check it, take a new snap0',
    builder: (y) =>
      withWait(
        withJson(
          withYes(
            y.positional('file', { type: 'string', describe: 'the .img.zst file' }),
            'confirm: replace lv-root',
          ),
        ),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a);
      const wait = waitMs(a);
      const { runImageRestore } = await import('./image-restore.js');
      await runImageRestore(ctx, String(a.file), {
        confirm: confirmOf(a),
        json: a.json,
        waitMs: wait,
      });
    },
  });
}
