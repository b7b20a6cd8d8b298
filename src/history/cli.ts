import type { Argv } from 'yargs';
import type { CommandKit } from '../context.js';
import { RefusedError, UsageError } from '../errors.js';
import {
  allowUncatalogedOption,
  type CliCommand,
  type GlobalArgs,
  command,
  fromTargetOption,
  group,
  jsonOutput,
  printJson,
  withJson,
  withYes,
} from '../output.js';
import { catalogCommand } from './catalog-cli.js';
import { readStdinLine, target, targetsOf } from './cli-options.js';
import { historyTargetCommand } from './target-cli.js';

// The implementations (restic driving, ssh2) are loaded when a history command runs.

function historyInitCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'init',
    describe:
      'make the local repository, its encrypted password, the catalog and its signing key (only what is missing)',
    builder: (yy) =>
      withJson(
        yy.option('password-stdin', {
          type: 'boolean',
          default: false,
          describe: 'read the repository password from stdin (else one is generated)',
        }),
      ),
    handler: async (a) => {
      const password = a['password-stdin'] ? await readStdinLine() : undefined;
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runHistoryInit } = await import('./init.js');
      const r = await runHistoryInit(ctx, password === undefined ? {} : { password });
      if (a.json) printJson(out, r);
    },
  });
}

function historyTakeCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'take',
    describe:
      "back up lv-root's tree (from a snapshot mounted read-only) into the repository; record its fingerprint",
    builder: (yy) =>
      withJson(
        yy
          .option('reason', { type: 'string', default: 'manual', describe: 'why: tagged and cataloged' })
          .option('device', {
            type: 'string',
            describe: 'read this block device or file system image instead of a snapshot of lv-root',
          })
          .option('replicate', {
            type: 'boolean',
            default: false,
            describe: 'then replicate to every target',
          }),
      ),
    handler: async (a) => {
      if (!/^[A-Za-z0-9_.-]{1,32}$/.test(String(a.reason)))
        throw new UsageError('--reason must be a short word (letters, digits, _ . -)');
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runHistoryTake } = await import('./take.js');
      const r = await runHistoryTake(ctx, {
        reason: String(a.reason),
        replicate: Boolean(a.replicate),
        ...(a.device !== undefined ? { device: String(a.device) } : {}),
      });
      if (a.json && r) printJson(out, r);
    },
  });
}

function historyReplicateCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'replicate',
    describe:
      'give every target the repository files it lacks (verified, resumable), then check a share of its files',
    builder: (yy) =>
      withJson(
        yy
          .option('target', target)
          .option('verify-all', {
            type: 'boolean',
            default: false,
            describe: 'check every file on the targets by hash',
          })
          .option('bwlimit', { type: 'number', describe: 'upload bandwidth cap in KiB/s' }),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runReplicate } = await import('./replicate.js');
      const only = targetsOf(a.target);
      const kib = a.bwlimit === undefined ? undefined : Number(a.bwlimit);
      if (kib !== undefined && !(Number.isFinite(kib) && kib > 0))
        throw new UsageError('--bwlimit must be a number of KiB/s > 0');
      const r = await runReplicate(ctx, {
        verifyAll: Boolean(a['verify-all']),
        ...(only ? { only } : {}),
        ...(kib ? { bandwidthKiBps: kib } : {}),
      });
      if (a.json) printJson(out, r);
    },
  });
}

function historyPruneCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'prune',
    describe: 'forget snapshots past history.keep (never one a target lacks), prune, then replicate',
    builder: (yy) =>
      withJson(yy.option('replicate', { type: 'boolean', default: true, describe: 'replicate afterwards' })),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runHistoryPrune } = await import('./prune.js');
      const r = await runHistoryPrune(ctx, { replicate: Boolean(a.replicate) });
      if (a.json) printJson(out, r);
    },
  });
}

function historyVerifyCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'verify',
    describe: "check the targets' files by their hash (this run's share, or --all); repairs nothing",
    builder: (yy) => withJson(yy.option('target', target).option('all', { type: 'boolean', default: false })),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runTargetVerify, verifySummary } = await import('./verify-targets.js');
      const only = targetsOf(a.target);
      const r = await runTargetVerify(ctx, { all: Boolean(a.all), ...(only ? { only } : {}) });
      if (a.json) printJson(out, r);
      ctx.out.print(verifySummary(r));
    },
  });
}

function historyStatusCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'status',
    describe:
      'the catalog (checked), its public key, and each target: newest fingerprint, bytes behind, last success and error',
    builder: (yy) => withJson(yy),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: true });
      const { formatHistoryStatus, gatherHistoryStatus, statusFailure } = await import('./status.js');
      const s = gatherHistoryStatus(ctx);
      ctx.out.print(a.json ? JSON.stringify(s, null, 2) : formatHistoryStatus(s));
      const failure = statusFailure(s);
      if (failure) throw failure;
    },
  });
}

function historyListCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'list',
    describe: 'the backups in the catalog: fingerprint, time, host, reason, size, targets',
    builder: (yy) => withJson(yy),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: true });
      const { catalogView, verifyCatalog } = await import('./catalog.js');
      const view = catalogView(verifyCatalog(ctx.config.history.dir, ctx.config.history.publicKey).entries);
      ctx.out.print(
        a.json
          ? JSON.stringify(view, null, 2)
          : view
              .map(
                (v) =>
                  `${v.fingerprint}  ${v.time}  ${v.host}  ${v.reason}  ${v.sizes.files} files  ${v.forgotten ? 'forgotten' : `on: ${v.targets.join(', ') || 'local only'}`}`,
              )
              .join('\n') || 'no backups in the catalog',
      );
    },
  });
}

function historyRestoreCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'restore <fingerprint> <dir>',
    describe:
      "write a fingerprint's tree into an empty directory (from the local repository, else fetched from a target)",
    builder: (yy) =>
      withJson(
        yy
          .positional('fingerprint', { type: 'string', describe: 'the 64-hex fingerprint (history list)' })
          .positional('dir', { type: 'string', describe: 'an empty directory' })
          .option('from', fromTargetOption)
          .option('allow-uncataloged', allowUncatalogedOption),
      ),
    handler: async (a) => {
      const ctx = await kit.context(a, { quietConsole: a.json });
      const out = jsonOutput(ctx, a.json);
      const { runTreeRestore } = await import('./tree-restore.js');
      const fingerprint = String(a.fingerprint);
      const dir = String(a.dir);
      await runTreeRestore(ctx, fingerprint, dir, {
        allowUncataloged: Boolean(a['allow-uncataloged']),
        ...(a.from !== undefined ? { from: String(a.from) } : {}),
      });
      if (a.json) printJson(out, { fingerprint, dir, restored: !ctx.dryRun });
    },
  });
}

function historyPasswordCommand(kit: CommandKit): CliCommand {
  return command({
    command: 'password',
    describe: 'print the repository password (keep a copy off the box: a disaster restore asks for it)',
    builder: (yy) => withYes(yy, 'print it even when stdout is not a terminal'),
    handler: async (a) => {
      if (!process.stdout.isTTY && !a.yes)
        throw new RefusedError('refusing to print the repository password into a pipe or file', {
          hint: 'add --yes if that is what you want',
        });
      const ctx = await kit.context(a, { quietConsole: true });
      const { repositoryPassword } = await import('./repo.js');
      process.stdout.write(`${repositoryPassword(ctx)}\n`);
    },
  });
}

function historyBuilder(kit: CommandKit) {
  return (y: Argv<GlobalArgs>) =>
    y
      .command(historyInitCommand(kit))
      .command(historyTakeCommand(kit))
      .command(historyReplicateCommand(kit))
      .command(historyPruneCommand(kit))
      .command(historyVerifyCommand(kit))
      .command(historyStatusCommand(kit))
      .command(historyListCommand(kit))
      .command(historyRestoreCommand(kit))
      .command(historyPasswordCommand(kit))
      .command(historyTargetCommand(kit))
      .demandCommand(
        1,
        'say which: history init | take | replicate | prune | verify | status | list | restore | password | target',
      );
}

export function historyCommand(kit: CommandKit): CliCommand {
  return group({
    command: 'history',
    describe: 'a deduplicating history of the system (restic), replicated to several targets',
    builder: historyBuilder(kit),
  });
}

export function historyCommands(kit: CommandKit): CliCommand[] {
  return [historyCommand(kit), catalogCommand(kit)];
}
