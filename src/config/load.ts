import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { DEFAULT_CONFIG_PATH } from './paths.js';
import { type Config, configSchema } from './schema.js';

export interface LoadedConfig {
  config: Config;
  /** The file read, or null when none exists at the default path and defaults are used. */
  file: string | null;
  warnings: ConfigProblem[];
}

/**
 * Read and validate the config. A missing file at the default path means "all defaults" (the
 * appliance layout the defaults describe); a missing file that was named explicitly is an error. Every problem is reported at once.
 */
export async function loadConfig(file: string | undefined): Promise<LoadedConfig> {
  const target = file ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = await readFile(target, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && file === undefined)
      return { config: configSchema.parse({}), file: null, warnings: [] };
    throw new ConfigError([{ where: target, message: `cannot read: ${code ?? String(err)}` }]);
  }
  return { ...parseConfigText(text, target), file: target };
}

export function parseConfigText(text: string, where: string): { config: Config; warnings: ConfigProblem[] } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(
      [{ where: jsonErrorLocation(text, where, err as Error), message: jsonErrorMessage(err as Error) }],
      {
        hint: 'the config is JSON; see rc/zshield.conf.example',
      },
    );
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([{ where, message: 'must be a JSON object' }]);
  }
  const problems: ConfigProblem[] = retiredSettings(raw as Record<string, unknown>, where);
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success)
    throw new ConfigError([...problems, ...parsed.error.issues.map((i) => issueToProblem(i, where))]);
  const config = parsed.data;
  const warnings: ConfigProblem[] = [];
  // Rules that need more than one field.
  if (config.lvm.snapshot === config.lvm.rootLv) {
    problems.push({ where: `${where}: lvm.snapshot`, message: 'must differ from lvm.rootLv' });
  }
  if (config.snapshot.warnPercent >= config.snapshot.errorPercent) {
    problems.push({
      where: `${where}: snapshot.warnPercent`,
      message: 'must be below snapshot.errorPercent',
    });
  }
  if (config.snapshot.size.kind === 'percent' && config.snapshot.size.percent < 5) {
    warnings.push({
      where: `${where}: snapshot.size`,
      message: 'under 5% of lv-root: a busy day can overflow the snapshot and invalidate the backup',
    });
  }
  const vols = config.layout.volumes;
  const root = vols.find((v) => v.name === config.lvm.rootLv);
  if (!root) {
    problems.push({
      where: `${where}: layout.volumes`,
      message: `must include lvm.rootLv (${config.lvm.rootLv})`,
    });
  } else if (root.mount !== '/') {
    problems.push({
      where: `${where}: layout.volumes`,
      message: `${config.lvm.rootLv} must be mounted at /`,
    });
  }
  const seen = new Set<string>();
  vols.forEach((v, i) => {
    if (seen.has(v.name))
      problems.push({ where: `${where}: layout.volumes.${i}.name`, message: `duplicate volume ${v.name}` });
    seen.add(v.name);
    if (v.name === config.lvm.snapshot || v.name === `${config.lvm.snapshot}-next`) {
      problems.push({
        where: `${where}: layout.volumes.${i}.name`,
        message: 'clashes with the snapshot name',
      });
    }
  });
  const pct = vols.reduce((n, v) => n + (v.size.kind === 'percent' ? v.size.percent : 0), 0);
  const rootPct = root?.size.kind === 'percent' ? root.size.percent : 0;
  const snapPct =
    config.snapshot.size.kind === 'percent' ? (rootPct * config.snapshot.size.percent) / 100 : 0;
  if (pct + snapPct > 100) {
    problems.push({
      where: `${where}: layout.volumes`,
      message: `the volumes take ${pct}% of the VG and the snapshot ${snapPct.toFixed(1)}%: more than 100%`,
    });
  }
  problems.push(...machineClashes(config, where));
  if (problems.length) throw new ConfigError(problems);
  return { config, warnings };
}

/**
 * Settings that were replaced: named with their successor (a bare "unknown setting" would leave
 * the operator guessing), and removed from what the schema sees so it does not say it again.
 */
function retiredSettings(raw: Record<string, unknown>, where: string): ConfigProblem[] {
  const clone = raw['clone'];
  if (clone === null || typeof clone !== 'object' || !('power' in clone)) return [];
  delete (clone as Record<string, unknown>)['power'];
  return [
    {
      where: `${where}: clone.power`,
      message:
        'replaced by clone.machines (per box: name, mac, disk, power.status/on/cycle argv, password file or variable); see Cloning in the README',
    },
  ];
}

/** Two machines with one name or one MAC: the table and dnsmasq's dhcp-host lines need them unique. */
function machineClashes(config: Config, where: string): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const names = new Set<string>();
  const macs = new Set<string>();
  config.clone.machines.forEach((m, i) => {
    if (names.has(m.name))
      out.push({ where: `${where}: clone.machines.${i}.name`, message: `duplicate machine ${m.name}` });
    if (macs.has(m.mac))
      out.push({ where: `${where}: clone.machines.${i}.mac`, message: `${m.mac} is listed twice` });
    names.add(m.name);
    macs.add(m.mac);
  });
  return out;
}

function issueToProblem(issue: z.core.$ZodIssue, file: string): ConfigProblem {
  const at = issue.path.length ? issue.path.join('.') : '(top level)';
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') message = `unknown setting(s): ${issue.keys.join(', ')}`;
  return { where: `${file}: ${at}`, message };
}

function jsonErrorMessage(err: Error): string {
  return (
    err.message
      .replace(/\s*(in JSON )?at position \d+.*$/s, '')
      .replace(/^JSON\.parse: /, '')
      // V8 quotes the text itself for "Unexpected token" (`, "# my con"... is not valid JSON`): the
      // file's content, newlines and all, does not belong in a one-line error.
      .replace(/, ".*"(\.\.\.)? is not valid JSON$/s, '')
  );
}

function jsonErrorLocation(text: string, file: string, err: Error): string {
  const m = /position (\d+)/.exec(err.message);
  const lc = /line (\d+) column (\d+)/.exec(err.message);
  if (!m && lc) return `${file}:${lc[1]}:${lc[2]}`;
  const pos = m ? Number(m[1]) : firstBadOffset(text);
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const col = pos - before.lastIndexOf('\n');
  return `${file}:${line}:${col}`;
}

/**
 * V8 gives no position for "Unexpected token" (a `#` comment, an unquoted `yes`) nor for
 * "Unexpected end of JSON input". Find it: the shortest prefix that fails anywhere but at its own
 * end (bisection; a prefix of the text before the bad character is the start of valid JSON).
 */
function firstBadOffset(text: string): number {
  const failsInside = (len: number): boolean => {
    try {
      JSON.parse(text.slice(0, len));
      return false;
    } catch (err) {
      const p = /position (\d+)/.exec((err as Error).message);
      return p ? Number(p[1]) < len : !/end of JSON/i.test((err as Error).message);
    }
  };
  if (!failsInside(text.length)) return text.length;
  let lo = 0;
  let hi = text.length;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (failsInside(mid)) hi = mid;
    else lo = mid;
  }
  return hi - 1;
}
