import { existsSync } from 'node:fs';
import type { Logger } from '../log/logger.js';
import { type RemoteConfig, remoteSchema } from '../config/remote.js';
import { writeRemoteSection } from './config-file.js';
import { askNewPassword, askYesNo, type Prompter } from '../system/prompt.js';
import {
  checkPrivateFile,
  encryptPassword,
  newKey,
  openPassword,
  readKeyFile,
  writeKeyFile,
} from '../system/secrets.js';
import type { Writes } from '../system/writes.js';

/**
 * `zshield config edit`: an interactive editor for the remote settings. It shows them (the password
 * only as set / not set: never its ciphertext), asks for each change
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
  { key: 'verifyCycle', label: 'verifyCycle', clearable: false, parse: int },
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
  /** Refuses every write in a dry run (the config and key files). */
  writes: Writes;
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
  const asked = await askFields(p, current);
  const { next, keyToWrite } = sealPassword(current, asked, log);
  return confirmAndWrite({ ...opts, next, keyToWrite });
}

/** Each field in turn, the current value as default, validated as it is typed; the password after the destination. */
async function askFields(
  p: Prompter,
  current: RemoteConfig,
): Promise<{ next: RemoteConfig; newPassword: string | null | undefined }> {
  const next: RemoteConfig = { ...current, sources: [...current.sources], after: [...current.after] };
  let newPassword: string | null | undefined;
  let hostKeyEdited = false;
  for (const f of FIELDS) {
    const value = await askField(p, f, next, current);
    if (value !== undefined) {
      (next as Record<string, unknown>)[f.key] = value;
      if (f.key === 'hostKey') hostKeyEdited = true;
    }
    // The password sits where the seed had it: after the destination.
    if (f.key === 'destination') newPassword = await askPassword(p, current);
  }
  if (!hostKeyEdited && current.hostKey && (next.server !== current.server || next.port !== current.port)) {
    next.hostKey = null;
    p.print(' the server changed: its pinned host key no longer applies and was cleared;');
    p.print(' after writing, check the new one and run: zshield remote trust');
  }
  return { next, newPassword };
}

/** One field: undefined keeps it; otherwise the validated new value (null clears). */
async function askField(
  p: Prompter,
  f: FieldSpec,
  next: RemoteConfig,
  current: RemoteConfig,
): Promise<unknown> {
  for (;;) {
    const answer = await p.line(` ${f.label} [${shown(f.key, next[f.key])}]: `);
    if (answer === '') return undefined;
    if (answer === '-' && !f.clearable) {
      p.print(`   ${f.label} cannot be cleared`);
      continue;
    }
    const r = remoteSchema.shape[f.key].safeParse(answer === '-' ? null : f.parse(answer));
    if (!r.success) {
      p.print(`   ${f.label}: ${r.error.issues[0]?.message ?? 'invalid'}; try again`);
      continue;
    }
    // A key path is accepted even if the file is not there yet (it may be installed later),
    // but the operator hears now what a copy would refuse.
    if ((f.key === 'privateKey' || (f.key === 'keyFile' && current.password)) && typeof r.data === 'string') {
      const problem = secretFileProblem(r.data, f.key === 'keyFile' ? 'key file' : 'private key');
      if (problem) p.print(`   warning: ${problem}`);
    }
    return r.data;
  }
}

/** undefined: unchanged; null: remove the stored one; a string: the new password. */
async function askPassword(p: Prompter, current: RemoteConfig): Promise<string | null | undefined> {
  if (!(await askYesNo(p, ` password [${current.password ? 'set' : 'not set'}]: change it? (y/n) `)))
    return undefined;
  const pw = await askNewPassword(p, '   ');
  if (pw !== '') return pw;
  return (await askYesNo(p, '   no password entered: remove the stored password? (y/n) ')) ? null : undefined;
}

/**
 * The password encrypted for the config: a new one, or the old one moving to a different key file
 * (opened with the old key, sealed with the new). A key file that does not exist yet is made.
 */
function sealPassword(
  current: RemoteConfig,
  asked: { next: RemoteConfig; newPassword: string | null | undefined },
  log: Logger,
): { next: RemoteConfig; keyToWrite: Buffer | null } {
  const { next, newPassword } = asked;
  let plain: string | null = null;
  if (typeof newPassword === 'string') plain = newPassword;
  else if (newPassword === undefined && current.password && next.keyFile !== current.keyFile) {
    plain = openPassword({ ciphertext: current.password, keyFile: current.keyFile, log });
  }
  if (plain === null) {
    if (newPassword === null) next.password = null;
    return { next, keyToWrite: null };
  }
  log.redact(plain);
  const keyToWrite = existsSync(next.keyFile) ? null : newKey();
  next.password = encryptPassword(plain, keyToWrite ?? readKeyFile(next.keyFile));
  return { next, keyToWrite };
}

/** Show the result; write it (key file first) only after a last yes, never on a dry run. */
async function confirmAndWrite(o: {
  prompter: Prompter;
  remote: RemoteConfig;
  configFile: string;
  log: Logger;
  /** Refuses every write in a dry run (the config and key files). */
  writes: Writes;
  next: RemoteConfig;
  keyToWrite: Buffer | null;
}): Promise<EditOutcome> {
  const { prompter: p, configFile, next, keyToWrite } = o;
  const current = o.remote;
  p.print('');
  p.print('#####  New remote copy settings  #####');
  p.print('');
  for (const l of describeSettings(next)) p.print(l);
  if (keyToWrite) p.print(` (a new key file ${next.keyFile} will be made for the password)`);
  p.print('');
  if (JSON.stringify(next) === JSON.stringify(current)) {
    p.print('No changes.');
    return { written: false, remote: current };
  }
  if (o.writes.dryRun) {
    p.print(`dry run: ${configFile} not written`);
    return { written: false, remote: next };
  }
  if (!(await askYesNo(p, `Write ${configFile}? (y/n) `))) {
    p.print('Not written.');
    return { written: false, remote: current };
  }
  // The key first: a config naming a key file that does not exist yet would be unusable.
  if (keyToWrite) writeKeyFile(o.writes, next.keyFile, keyToWrite);
  writeRemoteSection(o.writes, configFile, next);
  p.print(`#####  Updated ${configFile} (mode 0600)  #####`);
  o.log.info(`config edit: remote settings written to ${configFile}`);
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
