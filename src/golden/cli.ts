import path from 'node:path';
import type { CommandKit } from '../context.js';
import { formatBytes } from '../config/size.js';
import { UsageError, VerifyError } from '../errors.js';
import { command, confirmOf, group, jsonOutput, printJson, withJson, withYes } from '../output.js';
import { keyOption, signingKeyFile, targetOf, targetOptions, whole } from './cli-options.js';

// The implementations are loaded when a golden command runs.

export function goldenCommand(kit: CommandKit) {
  return group({
    command: 'golden',
    describe: 'the golden medium',
    builder: (y) =>
      y
        .command(
          'prepare',
          'write a golden medium from this (prototype) system: GRUB, read-only root, recovery entries, boot hook',
          (yy) =>
            withJson(
              withYes(
                yy
                  .option('target', {
                    requiresArg: true,
                    type: 'string',
                    describe: 'serial or WWN of the medium (else disks.golden.serial)',
                  })
                  .option('package', {
                    requiresArg: true,
                    type: 'string',
                    describe:
                      "zshield's Debian package: installed into this prototype first (dpkg -i); the medium then uses its units and grub.d script",
                  }),
                'confirm: erase the medium',
              ),
            ),
          async (a) => {
            const ctx = await kit.context(a);
            const { runGoldenPrepare } = await import('./prepare-run.js');
            await runGoldenPrepare(ctx, {
              confirm: confirmOf(a),
              json: a.json,
              ...(a.target ? { target: a.target } : {}),
              ...(a.package ? { packageFile: a.package } : {}),
            });
          },
        )
        .command(goldenImageCommand(kit))
        .command(goldenUpdateCommand(kit))
        .demandCommand(1, 'say which: golden prepare | golden image | golden update'),
  });
}

function makeCommand(kit: CommandKit) {
  return command({
    command: 'make <source> <out>',
    describe: 'make a golden image file from a golden medium (device) or a raw image file',
    builder: (yy) =>
      withJson(
        yy
          .positional('source', {
            type: 'string',
            describe: 'the golden medium device or a raw image file',
          })
          .positional('out', {
            type: 'string',
            describe: 'the image file to write (.img.zst); the manifest goes beside it',
          })
          .option('name', {
            type: 'string',
            demandOption: true,
            describe: 'what the image is of (e.g. the appliance model)',
          })
          .option('image-version', {
            type: 'string',
            demandOption: true,
            describe: 'the release version of the image',
          })
          .option('key', keyOption)
          .option('force', {
            type: 'boolean',
            default: false,
            describe: 'replace a released image (OUT or its manifest exists); refused without it',
          }),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const stdout = jsonOutput(ctx, a.json);
      const { runGoldenMake } = await import('./golden-make.js');
      const { manifestPathOf } = await import('./golden-image.js');
      const out = path.resolve(String(a.out));
      const m = await runGoldenMake(ctx, {
        source: String(a.source),
        out,
        name: a.name,
        version: a['image-version'],
        keyFile: signingKeyFile(ctx, a),
        force: a.force,
      });
      if (m && a.json) printJson(stdout, { image: out, manifest: manifestPathOf(out), ...m });
      if (m)
        ctx.out.print(
          `golden image made: ${out} (${formatBytes(m.size)} raw, ${formatBytes(m.compressedSize)} compressed, ${m.chunks.length} chunks, SHA-256 ${m.sha256})`,
        );
    },
  });
}

/** `zshield golden image ...`: the golden image as a signed, released artefact. */
export function goldenImageCommand(kit: CommandKit) {
  return group({
    command: 'image',
    describe: 'golden images as released artefacts: make (zstd, signed manifest), verify, write',
    builder: (y) =>
      y
        .command(makeCommand(kit))
        .command(verifyCommand(kit))
        .command(writeCommand(kit))
        .command(keyCommand(kit))
        .demandCommand(1, 'say which: golden image make | verify | write | key'),
  });
}

function verifyCommand(kit: CommandKit) {
  return command({
    command: 'verify <image>',
    describe:
      'check a golden image: the manifest signature against clone.trustedKeys, every chunk, the whole SHA-256; with --target, a disk written with it',
    builder: (yy) =>
      withJson(
        yy.positional('image', { type: 'string' }).option('target', {
          type: 'string',
          describe:
            "a disk written earlier (device, file, or serial/WWN): checked against the image's manifest instead of the image",
        }),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { imageIdOf } = await import('./golden-image.js');
      if (a.target !== undefined) {
        const { verifyWrittenDisk } = await import('./verify-disk.js');
        const d = await verifyWrittenDisk(ctx, String(a.image), a.target);
        if (d.badChunks.length > 0) {
          throw new VerifyError(
            `${d.device}: chunk(s) ${d.badChunks.join(', ')} of ${d.manifest.chunks.length} do not match ${imageIdOf(d.manifest)}'s manifest`,
          );
        }
        if (a.json)
          printJson(out, {
            device: d.device,
            imageId: imageIdOf(d.manifest),
            chunks: d.manifest.chunks.length,
            keyId: d.keyId,
            badChunks: d.badChunks,
          });
        ctx.out.print(
          `disk verified: ${d.device} holds ${imageIdOf(d.manifest)} (${d.manifest.chunks.length} chunks match the manifest signed by key ${d.keyId})`,
        );
        return;
      }
      const { verifyImageFile } = await import('./verify-disk.js');
      const r = await verifyImageFile(ctx, String(a.image));
      if (r.badChunks.length > 0) {
        throw new VerifyError(`${a.image}: chunk(s) ${r.badChunks.join(', ')} do not match the manifest`);
      }
      if (a.json) printJson(out, { image: a.image, imageId: imageIdOf(r.manifest), ...r });
      ctx.out.print(
        `golden image verified: ${imageIdOf(r.manifest)}, ${r.manifest.chunks.length} chunks, SHA-256 ${r.manifest.sha256}, signed by key ${r.keyId}`,
      );
    },
  });
}

function writeCommand(kit: CommandKit) {
  return command({
    command: 'write <image>',
    describe:
      'write a golden image onto a disk (the production line): checked, verified by reading back, first MiB last',
    builder: (yy) => targetOptions(yy.positional('image', { type: 'string' })),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runGoldenWrite } = await import('./image-write.js');
      const r = await runGoldenWrite(ctx, { image: String(a.image), target: targetOf(a), yes: a.yes });
      if (r && a.json) printJson(out, r);
      if (r) ctx.out.print(`written and verified: ${r.imageId} on ${r.target} (${r.chunks} chunks)`);
    },
  });
}

function keyCommand(kit: CommandKit) {
  return command({
    command: 'key <file>',
    describe: 'make a new vendor signing key (private key 0600, public key beside it as <file>.pub)',
    builder: (yy) => withJson(yy.positional('file', { type: 'string' })),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runGoldenKey } = await import('./golden-make.js');
      const file = path.resolve(String(a.file));
      const publicText = await runGoldenKey(ctx, file);
      // The public half only: the private key never reaches stdout.
      if (publicText && a.json) printJson(out, { file, publicFile: `${file}.pub`, publicKey: publicText });
      else if (publicText) process.stdout.write(`${publicText}\n`);
    },
  });
}

/**
 * The command to run in the image: the words after `--` (yargs leaves them in `_`, after the
 * command path `golden update`), after any given before it.
 */
export function updateArgv(a: { _?: (string | number)[]; command?: string[] | undefined }): string[] {
  const rest = (a._ ?? []).map(String);
  const at = rest.indexOf('update');
  const given = (a.command ?? []).map(String);
  return [...given, ...(at < 0 ? [] : rest.slice(at + 1))];
}

/** `zshield golden update IMAGE -- COMMAND...`: run a command in the image in QEMU, prove it, re-sign. */
export function goldenUpdateCommand(kit: CommandKit) {
  return command({
    command: 'update <image> [command..]',
    describe:
      'update a golden image offline: run a command in it in QEMU, boot it through its GRUB as proof, write a new signed image beside the old',
    builder: (y) =>
      withJson(
        y
          .positional('image', { type: 'string', describe: 'the golden image (.img.zst with its manifest)' })
          .positional('command', {
            type: 'string',
            array: true,
            describe: 'after --: the command to run as root in the image',
          })
          .option('script', {
            type: 'string',
            describe: 'a shell script file to run in the image instead of a command',
          })
          .option('image-version', {
            type: 'string',
            describe: 'version of the new image (default: old version +update.<time>)',
          })
          .option('out', {
            type: 'string',
            describe: 'the new image file (default: <name>-<version>.img.zst beside the old)',
          })
          .option('work-dir', {
            type: 'string',
            describe: 'where the raw working copy goes (default: beside the image)',
          })
          .option('timeout', {
            type: 'number',
            default: 1800,
            describe: 'seconds the command may run (each boot gets 120 more)',
          })
          .option('accel', {
            choices: ['auto', 'kvm', 'tcg'] as const,
            default: 'auto' as const,
            describe: 'QEMU accelerator (auto: KVM only if a trial boot with it works)',
          })
          .option('entry', {
            type: 'string',
            array: true,
            describe: 'GRUB menu titles the proof boot must show (default: the two recovery entries)',
          })
          .option('key', keyOption),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runGoldenUpdate, DEFAULT_ENTRIES } = await import('./update.js');
      const argv = updateArgv(a);
      const scriptFile = a.script;
      if (argv.length > 0 === (scriptFile !== undefined))
        throw new UsageError('golden update: give a command after -- or --script FILE (one of them)');
      const timeoutSeconds = whole('timeout', a.timeout, 1) ?? 1800;
      const { readFile } = await import('node:fs/promises');
      const r = await runGoldenUpdate(ctx, {
        image: String(a.image),
        ...(scriptFile !== undefined ? { script: await readFile(scriptFile, 'utf8') } : { argv }),
        keyFile: signingKeyFile(ctx, a),
        ...(a['image-version'] ? { version: a['image-version'] } : {}),
        ...(a.out ? { out: path.resolve(a.out) } : {}),
        ...(a['work-dir'] ? { workDir: path.resolve(a['work-dir']) } : {}),
        timeoutSeconds,
        accel: a.accel,
        entries: a.entry ?? DEFAULT_ENTRIES,
      });
      if (r && a.json) printJson(out, r);
      if (r)
        ctx.out.print(
          `golden image updated and proven (${r.accel}): ${r.out} (${r.manifest.name}@${r.manifest.version}, SHA-256 ${r.manifest.sha256})`,
        );
    },
  });
}
