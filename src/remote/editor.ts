import { existsSync } from 'node:fs';
import type { Logger } from '../log/logger.js';
import { type RemoteConfig, remoteSchema } from './config.js';
import { writeRemoteSection } from './config-file.js';
import { askNewPassword, askYesNo, type Prompter } from '../system/prompt.js';
import {
  checkPrivateFile,
  encryptPassword,
  newKey,
  openPassword,
  readKeyFile,
  writeKeyFile,
} from './secrets.js';

/**
 * `zshield config edit`: the seed's iniEditor for the remote settings. It shows them (the password
 * only as set / not set: the seed printed the ciphertext, we print neither), asks for each change
 * with the current value as the default, reads a new password twice without echo, validates each
 * answer as it is given and the whole config before writing, shows the result, and writes only
 * after a last yes. Nothing is written before that yes.
 */

type Field = Exclude<keyof RemoteConfig, 'password'>;

interface FieldSpec {
  key: Field;
  label: string;
  /** '-' clears it (to null, or to the default for lists). */
  clearable: boolean;
  parse(text: string): unknown;
}

const int = (t: string): unknown => (/^-?\d+$/.test(t) ? Number(t) : t);
const text = (t: string): unknown => t;
const list = (t: string): unknown =>
  t
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const bool = (t: string): unknown =>
  /^(y|yes|true|on)$/i.test(t) ? true : /^(n|no|false|off)$/i.test(t) ? false : t;

const FIELDS: FieldSpec[] = [
  { key: 'server', label: 'server', clearable: true, parse: text },
  { key: 'port', label: 'port', clearable: false, parse: int },
  { key: 'user', label: 'user', clearable: true, parse: text },
  { key: 'destination', label: 'destination', clearable: true, parse: text },
  { key: 'keyFile', label: 'keyFile', clearable: false, parse: text },
  { key: 'privateKey', label: 'privateKey', clearable: true, parse: text },
  { key: 'hostKey', label: 'hostKey', clearable: true, parse: text },
  { key: 'limit', label: 'limit', clearable: false, parse: int },
  { key: 'bandwidthKiBps', label: 'bandwidthKiBps', clearable: true, parse: int },
  { key: 'retries', label: 'retries', clearable: false, parse: int },
  { key: 'sources', label: 'sources', clearable: false, parse: list },
  { key: 'enabled', label: 'enabled', clearable: false, parse: bool },
];

function shown(key: Field, v: unknown): string {
  if (v === null) return key === 'bandwidthKiBps' ? 'unlimited' : '(none)';
  if (Array.isArray(v)) return v.join(', ');
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return String(v);
}

export function describeSettings(r: RemoteConfig): string[] {
  const pad = (s: string) => s.padEnd(15);
  const lines: string[] = [];
  for (const f of FIELDS.slice(0, 4)) lines.push(` ${pad(f.label)}: ${shown(f.key, r[f.key])}`);
  lines.push(` ${pad('password')}: ${r.password ? '(set, encrypted)' : '(not set)'}`);
  for (const f of FIELDS.slice(4)) lines.push(` ${pad(f.label)}: ${shown(f.key, r[f.key])}`);
  return lines;
}

export interface EditOutcome {
  written: boolean;
  remote: RemoteConfig;
}

export async function editRemoteSettings(opts: {
  prompter: Prompter;
  remote: RemoteConfig;
  configFile: string;
  log: Logger;
  dryRun: boolean;
}): Promise<EditOutcome> {
  const { prompter: p, configFile, log } = opts;
  const current = opts.remote;
  p.print(`#####  Current remote copy settings (${configFile})  #####`);
  p.print('');
  for (const l of describeSettings(current)) p.print(l);
  p.print('');
  if (!(await askYesNo(p, 'Would you like to edit these settings? (y/n) '))) {
    p.print('No changes.');
    return { written: false, remote: current };
  }
  p.print("Press Enter to keep the value in [brackets]; '-' clears an optional setting.");
  p.print('');
  const next: RemoteConfig = { ...current, sources: [...current.sources], after: [...current.after] };
  let newPassword: string | null | undefined;
  let hostKeyEdited = false;

  for (const f of FIELDS) {
    for (;;) {
      const answer = await p.line(` ${f.label} [${shown(f.key, next[f.key])}]: `);
      if (answer === '') break;
      let value: unknown;
      if (answer === '-') {
        if (!f.clearable) {
          p.print(`   ${f.label} cannot be cleared`);
          continue;
        }
        value = null;
      } else value = f.parse(answer);
      const r = remoteSchema.shape[f.key].safeParse(value);
      if (!r.success) {
        p.print(`   ${f.label}: ${r.error.issues[0]?.message ?? 'invalid'}; try again`);
        continue;
      }
      (next as Record<string, unknown>)[f.key] = r.data;
      if (f.key === 'hostKey') hostKeyEdited = true;
      // A key path is accepted even if the file is not there yet (it may be installed later),
      // but the operator hears now what a copy would refuse.
      if (
        (f.key === 'privateKey' || (f.key === 'keyFile' && current.password)) &&
        typeof r.data === 'string'
      ) {
        const problem = secretFileProblem(r.data, f.key === 'keyFile' ? 'key file' : 'private key');
        if (problem) p.print(`   warning: ${problem}`);
      }
      break;
    }
    if (f.key === 'destination') {
      // The password sits where the seed had it: after the destination.
      const change = await askYesNo(
        p,
        ` password [${current.password ? 'set' : 'not set'}]: change it? (y/n) `,
      );
      if (change) {
        const pw = await askNewPassword(p, '   ');
        if (pw === '') {
          if (await askYesNo(p, '   no password entered: remove the stored password? (y/n) '))
            newPassword = null;
        } else newPassword = pw;
      }
    }
  }

  if (!hostKeyEdited && current.hostKey && (next.server !== current.server || next.port !== current.port)) {
    next.hostKey = null;
    p.print(' the server changed: its pinned host key no longer applies and was cleared;');
    p.print(' after writing, check the new one and run: zshield remote trust');
  }

  // The password in clear, if it must be (re-)encrypted: a new one, or the old one moving to a
  // different key file.
  let plain: string | null = null;
  if (typeof newPassword === 'string') plain = newPassword;
  else if (newPassword === undefined && current.password && next.keyFile !== current.keyFile) {
    plain = openPassword({ ciphertext: current.password, keyFile: current.keyFile, log });
  }
  let keyToWrite: Buffer | null = null;
  if (plain !== null) {
    log.redact(plain);
    let key: Buffer;
    if (existsSync(next.keyFile)) key = readKeyFile(next.keyFile);
    else {
      key = newKey();
      keyToWrite = key;
    }
    next.password = encryptPassword(plain, key);
  } else if (newPassword === null) next.password = null;

  const changed = JSON.stringify(next) !== JSON.stringify(current);
  p.print('');
  p.print('#####  New remote copy settings  #####');
  p.print('');
  for (const l of describeSettings(next)) p.print(l);
  if (keyToWrite) p.print(` (a new key file ${next.keyFile} will be made for the password)`);
  p.print('');
  if (!changed) {
    p.print('No changes.');
    return { written: false, remote: current };
  }
  if (opts.dryRun) {
    p.print(`dry run: ${configFile} not written`);
    return { written: false, remote: next };
  }
  if (!(await askYesNo(p, `Write ${configFile}? (y/n) `))) {
    p.print('Not written.');
    return { written: false, remote: current };
  }
  // The key first: a config naming a key file that does not exist yet would be unusable.
  if (keyToWrite) writeKeyFile(next.keyFile, keyToWrite);
  writeRemoteSection(configFile, next);
  p.print(`#####  Updated ${configFile} (mode 0600)  #####`);
  log.info(`config edit: remote settings written to ${configFile}`);
  return { written: true, remote: next };
}

function secretFileProblem(file: string, what: string): string | null {
  try {
    checkPrivateFile(file, what);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}
