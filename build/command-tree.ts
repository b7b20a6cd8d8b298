// The command tree, read from the yargs modules (src/cli/main.ts wires them) without running a
// handler: the README's command tables (build/docs.ts) and the command contract suite
// (test/contract) are generated from this one walk, so a new command is documented and tested
// without anyone listing it.
import type { CommandModule, Options } from 'yargs';
import { commandModules } from '../src/cli/main.js';
import type { CommandKit } from '../src/context.js';

export interface OptionDoc {
  name: string;
  alias?: string;
  def: Options;
  positional: boolean;
}
export interface CommandDoc {
  /** "image verify <file>" */
  command: string;
  describe: string;
  options: OptionDoc[];
  /** Has subcommands: documented by its children, not as a row of its own. */
  group: boolean;
}

/**
 * Runs a command module's builder against a stand-in for yargs' Argv that records what it declares.
 * Methods that declare nothing the tables show (demandCommand, check, ...) are accepted and ignored.
 */
function record(prefix: string, cmd: string, describe: string, builder: unknown): CommandDoc[] {
  const doc: CommandDoc = { command: `${prefix}${cmd}`.trim(), describe, options: [], group: false };
  const children: CommandDoc[] = [];
  const name = cmd.split(' ')[0]!;
  const argv: Record<string, unknown> = new Proxy(
    {},
    {
      get:
        (_t, method: string) =>
        (...args: unknown[]) => {
          if (method === 'option' || method === 'positional') {
            doc.options.push({
              name: args[0] as string,
              def: args[1] as Options,
              positional: method === 'positional',
            });
          } else if (method === 'command') {
            doc.group = true;
            // yargs takes (name, describe, builder), one module, or an array of modules.
            const modules: CommandModule[] =
              typeof args[0] === 'string'
                ? [
                    {
                      command: args[0],
                      describe: args[1] as string,
                      builder: args[2] as never,
                      handler: () => {},
                    },
                  ]
                : ([] as CommandModule[]).concat(args[0] as CommandModule | CommandModule[]);
            for (const m of modules) {
              children.push(...record(`${prefix}${name} `, String(m.command), String(m.describe), m.builder));
            }
          }
          return argv;
        },
    },
  );
  if (typeof builder === 'function') builder(argv);
  return [doc, ...children];
}

export function commandDocs(): CommandDoc[] {
  // The modules only call the kit in their handlers, which never run here.
  const kit: CommandKit = { context: () => Promise.reject(new Error('docs: no context')) };
  const docs = commandModules(kit, { defaultReason: 'manual' }).flatMap((m) =>
    record('', String(m.command), String(m.describe), m.builder),
  );
  // A declaration this recorder does not understand must fail here, not print "undefined".
  const bad = docs.find((d) => /\bundefined\b/.test(`${d.command} ${d.describe}`));
  if (bad) throw new Error(`docs: a command the recorder could not read: "${bad.command}: ${bad.describe}"`);
  return docs;
}
