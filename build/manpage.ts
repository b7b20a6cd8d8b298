// The man page zshield(8) and the bash completion, generated from the command tree (the same walk
// of the yargs modules build/docs.ts does for the README's tables), so neither drifts from the code.
//   tsx build/manpage.ts OUTDIR      writes OUTDIR/zshield.8 and OUTDIR/zshield.bash-completion
// build/package.sh puts them into the Debian package.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Options } from 'yargs';
import { GLOBAL_OPTIONS } from '../src/cli/global.js';
import { type CommandDoc, type OptionDoc, commandDocs } from './command-tree.js';
import { defaultText, synopsis, valueText } from './docs.js';

// ---- man page ------------------------------------------------------------------------------

/** Text as roff reads it: backslashes escaped, a line never starting with a control character. */
function roff(s: string): string {
  return s
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/`/g, '')
    .replace(/^([.'])/gm, '\\&$1');
}

function optionItem(o: OptionDoc): string[] {
  const d = o.def;
  const alias = d.alias ? `, \\-${roff(String(d.alias))}` : '';
  const name = o.positional ? roff(o.name.toUpperCase()) : `\\-\\-${roff(o.name)}`;
  const value =
    d.type === 'boolean' || o.positional ? '' : ` \\fI${roff(valueText(d).replace(/`/g, ''))}\\fR`;
  const dflt = defaultText(d).replace(/`/g, '');
  return [
    '.TP',
    `.B ${name}${alias}${value}`,
    `${roff(String(d.describe ?? ''))}${dflt ? ` (default: ${roff(dflt)})` : ''}`,
  ];
}

export function manPage(docs: CommandDoc[], version: string): string {
  const lines = [
    `.TH ZSHIELD 8 "" "zshield ${roff(version)}" "System Administration"`,
    '.SH NAME',
    'zshield, zshield_backup \\- on\\-device recovery agent: restore points of the root file system, factory reset, restore',
    '.SH SYNOPSIS',
    '.B zshield',
    '.I command',
    '[\\fIoptions\\fR]',
    '.br',
    '.B zshield_backup',
    '[\\fIoptions\\fR]',
    '.SH DESCRIPTION',
    'zshield keeps an appliance recoverable: a daily restore point (an LVM snapshot of lv\\-root),',
    'restore of it or a factory reset from the read\\-only golden medium chosen in the GRUB menu,',
    'image backups and copies off the box.',
    '.B zshield_backup',
    '(the same program under another name) takes a backup now, with the reason pre\\-upgrade;',
    "the package's apt hook runs it before every apt run that changes packages.",
    '.SH COMMANDS',
  ];
  for (const c of docs.filter((d) => !d.group)) {
    lines.push('.TP', `.B ${roff(synopsis(c).replace(/^zshield /, 'zshield '))}`, roff(c.describe));
    const opts = c.options;
    if (opts.length) {
      lines.push('.RS');
      for (const o of opts) lines.push(...optionItem(o));
      lines.push('.RE');
    }
  }
  lines.push('.SH GLOBAL OPTIONS');
  for (const [name, def] of Object.entries(GLOBAL_OPTIONS))
    lines.push(...optionItem({ name, def: def as Options, positional: false }));
  lines.push(
    '.TP',
    '.B \\-\\-help, \\-h',
    'show the help of a command',
    '.TP',
    '.B \\-\\-version',
    'print the version',
    '.SH FILES',
    '.TP',
    '.I /etc/zshield/zshield.conf',
    'the configuration (JSON); zshield config show prints the effective one',
    '.TP',
    '.I /etc/default/zshield\\-grub',
    'the settings of the GRUB recovery entries (/etc/grub.d/40_zshield)',
    '.TP',
    '.I /etc/apt/apt.conf.d/80zshield',
    'the apt hook: a backup before every apt run that changes packages (hooks.* settings)',
    '.TP',
    '.I /var/lib/zshield',
    'state that belongs with the root (kept when the package is removed)',
    '.TP',
    '.I /var/log/zshield/zshield.log',
    'the log',
    '.SH EXIT STATUS',
    '0 on success; the README (/usr/share/doc/zshield/README.md.gz) lists the others by class.',
    '.SH SEE ALSO',
    '.BR lvm (8),',
    '.BR lvconvert (8),',
    '.BR grub\\-mkconfig (8)',
    '',
  );
  return lines.join('\n');
}

// ---- bash completion -----------------------------------------------------------------------

/**
 * A static completion: for each command path ("", "image", "image verify") the words that may
 * follow it (subcommands, then options). Static rather than yargs' `--get-yargs-completions`,
 * which would start the whole binary on every TAB.
 */
export function bashCompletion(docs: CommandDoc[]): string {
  const globals = [...Object.keys(GLOBAL_OPTIONS).map((k) => `--${k}`), '--help'];
  const words = new Map<string, string[]>();
  const add = (key: string, w: string[]) => words.set(key, [...(words.get(key) ?? []), ...w]);
  add('', ['--version']);
  for (const c of docs) {
    const parts = c.command.split(' ').filter((w) => !/^[<[]/.test(w));
    const key = parts.join(' ');
    add(parts.slice(0, -1).join(' '), [parts.at(-1)!]);
    add(
      key,
      c.options.filter((o) => !o.positional).map((o) => `--${o.name}`),
    );
  }
  const cases = [...words.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, w]) => `    '${k}') words='${[...new Set([...w, ...globals])].join(' ')}' ;;`);
  return [
    '# bash completion for zshield (generated by build/manpage.ts from the command tree)',
    '_zshield() {',
    '  local cur path="" w i words',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: bash's own ${...}, not a template
    '  cur=${COMP_WORDS[COMP_CWORD]}',
    '  # The command path: the words before the cursor that name a (sub)command.',
    '  for ((i = 1; i < COMP_CWORD; i++)); do',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: bash's own ${...}, not a template
    '    w=${COMP_WORDS[i]}',
    '    case $w in -*) continue ;; esac',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: bash's own ${...}, not a template
    '    if _zshield_known "${path:+$path }$w"; then path=${path:+$path }$w; fi',
    '  done',
    '  case $path in',
    ...cases,
    "    *) words='' ;;",
    '  esac',
    '  # An option that takes a file or a value: complete file names.',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: bash's own ${...}, not a template
    '  case ${COMP_WORDS[COMP_CWORD - 1]} in',
    '    --config | -c | --*-file | --file | --package | --key | --dir) COMPREPLY=($(compgen -f -- "$cur")); return ;;',
    '  esac',
    '  COMPREPLY=($(compgen -W "$words" -- "$cur"))',
    '}',
    '_zshield_known() {',
    '  case $1 in',
    `    ${[...words.keys()]
      .filter(Boolean)
      .map((k) => `'${k}'`)
      .join(' | ')}) return 0 ;;`,
    '  esac',
    '  return 1',
    '}',
    'complete -F _zshield zshield',
    '# zshield_backup is the backup command under another name.',
    '_zshield_backup() {',
    `  COMPREPLY=($(compgen -W '${[...new Set([...(words.get('backup') ?? []), ...globals])].join(' ')}' -- "\${COMP_WORDS[COMP_CWORD]}"))`,
    '}',
    'complete -F _zshield_backup zshield_backup',
    '',
  ].join('\n');
}

/** The version the package carries: package.json's (build/build.sh builds the binary with it). */
function version(): string {
  const pkg = path.resolve(import.meta.dirname, '../package.json');
  return String((JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version);
}

function main(): number {
  const out = process.argv[2];
  if (!out) {
    console.error('usage: tsx build/manpage.ts OUTDIR');
    return 2;
  }
  const docs = commandDocs();
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'zshield.8'), manPage(docs, version()));
  writeFileSync(path.join(out, 'zshield.bash-completion'), bashCompletion(docs));
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) process.exitCode = main();
