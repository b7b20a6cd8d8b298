import { lstatSync, readFileSync } from 'node:fs';
import type { Machine } from '../config/clone.js';
import { CommandError, ConfigError, NotFoundError, RefusedError } from '../errors.js';
import type { Runner } from '../system/runner.js';
import type { Command } from '../system/command.js';

/**
 * A box's power, through the argv its `clone.machines` entry gives per action (ipmitool against
 * its BMC, amttool, a PDU's tool). The password never goes in argv (every user sees it in `ps`,
 * and the log shows each "$ argv"): it is read from a 0600 file or zshield's own environment and
 * handed to the command in the variable the tool reads (ipmitool -E: IPMI_PASSWORD).
 */

export type PowerAction = 'status' | 'on' | 'cycle';
export type PowerState = 'on' | 'off';

/** A BMC answers in a second or two; one that does not within this is not answering. */
const POWER_TIMEOUT_MS = 60_000;

/** The environment each machine's power commands get (its password, when it has one). */
export type PowerSecrets = ReadonlyMap<string, Record<string, string>>;

/**
 * Reads every listed machine's password before anything is powered: a missing file or variable, or
 * a file others can read, fails the whole session.
 */
export function loadPowerSecrets(machines: readonly Machine[], env = process.env): PowerSecrets {
  const out = new Map<string, Record<string, string>>();
  for (const [i, m] of machines.entries()) {
    const p = m.password;
    if (!p) {
      out.set(m.name, {});
      continue;
    }
    let value: string;
    if (p.file) value = readPasswordFile(p.file, m.name);
    else {
      const v = env[p.fromEnv!];
      if (v === undefined || v === '') {
        throw new ConfigError([
          {
            where: `clone.machines.${i}.password.fromEnv`,
            message: `${p.fromEnv} is not set in zshield's environment (the password of ${m.name}'s BMC)`,
          },
        ]);
      }
      value = v;
    }
    out.set(m.name, { [p.env]: value });
  }
  return out;
}

function readPasswordFile(file: string, machine: string): string {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(file);
  } catch {
    throw new NotFoundError(`password file ${file} of ${machine} does not exist`);
  }
  if (!st.isFile()) throw new RefusedError(`password file ${file} of ${machine} is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw new RefusedError(
      `password file ${file} of ${machine} is readable by others (mode ${(st.mode & 0o777).toString(8)})`,
      { hint: `chmod 600 ${file}; if others could read it, change the BMC password` },
    );
  }
  const first = readFileSync(file, 'utf8').split('\n')[0] ?? '';
  if (first === '') throw new RefusedError(`password file ${file} of ${machine} is empty`);
  return first;
}

export function powerCommand(m: Machine, action: PowerAction, secrets: PowerSecrets): Command {
  const [file, ...args] = m.power[action];
  const env = secrets.get(m.name) ?? {};
  return {
    file: file!,
    args,
    // status only reads; on and cycle start a box that then erases its disk.
    mutates: action !== 'status',
    timeoutMs: POWER_TIMEOUT_MS,
    ...(Object.keys(env).length > 0 ? { env } : {}),
  };
}

/**
 * What a status command printed: ipmitool says "Chassis Power is on"; other tools print the word
 * alone. Anything else is not an answer (null).
 */
export function parsePowerState(stdout: string): PowerState | null {
  const m = /\b(?:power is\s+)?(on|off)\s*$/im.exec(stdout.trim());
  return m ? (m[1]!.toLowerCase() as PowerState) : null;
}

/** Runs a box's status command; a failure or an unreadable answer is an error naming the box. */
export async function powerStatus(runner: Runner, m: Machine, secrets: PowerSecrets): Promise<PowerState> {
  let res: Awaited<ReturnType<Runner['run']>>;
  try {
    res = await runner.run(powerCommand(m, 'status', secrets));
  } catch (err) {
    const why = err instanceof CommandError ? err.message : (err as Error).message;
    throw new RefusedError(`${m.name}: its power status command failed (${why}): nothing was powered`, {
      hint: `check ${m.name}'s BMC (address, user, password) with: ${m.power.status.join(' ')}`,
    });
  }
  const state = parsePowerState(res.stdout);
  if (!state) {
    throw new RefusedError(
      `${m.name}: its power status command said neither on nor off (${JSON.stringify(res.stdout.trim().slice(0, 80))}): nothing was powered`,
    );
  }
  return state;
}
