import * as z from 'zod';
import { parseSize, type SizeSpec } from './size.js';
import { remoteSchema } from './remote.js';
import { imageSchema } from './image.js';
import { historySchema } from './history.js';
import { cloneSchema } from './clone.js';

// LVM's own rule for VG and LV names (lvm(8) "VALID NAMES").
const lvmName = z
  .string()
  .regex(
    /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$/,
    'not a valid LVM name (letters, digits, + _ . -; not starting with -)',
  )
  .refine((s) => s !== '.' && s !== '..' && s.length <= 127, 'not a valid LVM name');

const absPath = z.string().startsWith('/', 'must be an absolute path');

const size = (allowPercent: boolean) =>
  z
    .union([z.string(), z.number()])
    .transform((v, ctx): SizeSpec => {
      const r = parseSize(v, allowPercent);
      if (typeof r === 'string') {
        ctx.addIssue({ code: 'custom', message: r });
        return z.NEVER;
      }
      return r;
    })
    // The README's type column (build/docs.ts): the JSON schema of a transform shows only string | number.
    .meta({ format: allowPercent ? 'size or percent' : 'size' });

const clockTime = z
  .string()
  .regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be a time of day as HH:MM (24 h)')
  .transform((s) => {
    const [h, m] = s.split(':').map(Number);
    return { hour: h!, minute: m!, text: s };
  });

export const configSchema = z
  .object({
    lvm: z
      .object({
        vg: lvmName.default('vgroup').describe('the volume group on the system disk'),
        rootLv: lvmName
          .default('lv-root')
          .describe("the root file system's logical volume: the only one snapshotted and restored"),
        snapshot: lvmName
          .default('snap0')
          .describe('the restore point, a snapshot of rootLv (a rotation makes `<name>-next` beside it)'),
      })
      .strict()
      .prefault({}),
    snapshot: z
      .object({
        size: size(true)
          .default({ kind: 'percent', percent: 20 })
          .describe(
            'size of the snapshot\'s copy-on-write store: a share of lv-root ("20%") or absolute ("10G")',
          ),
        rotation: z
          .enum(['auto', 'create-first'])
          .default('auto')
          .describe(
            'auto: make the new snapshot before dropping the old when the VG has room for both, else drop the old first (space is checked before either); create-first: refuse unless both fit',
          ),
        warnPercent: z
          .number()
          .min(1)
          .max(99)
          .default(80)
          .describe('snapshot fill level (%) at which the daemon warns; below errorPercent'),
        errorPercent: z
          .number()
          .min(1)
          .max(100)
          .default(95)
          .describe('fill level (%) at which the daemon reports an error: at 100 % the snapshot is invalid'),
      })
      .strict()
      .prefault({}),
    boot: z
      .object({
        capture: z
          .boolean()
          .default(true)
          .describe(
            'copy /boot into lv-root before each snapshot, so a restore can put the matching kernel back',
          ),
        dir: absPath.default('/boot').describe('the /boot that is captured and put back'),
      })
      .strict()
      .prefault({}),
    daemon: z
      .object({
        dailyAt: clockTime
          .default({ hour: 3, minute: 0, text: '03:00' })
          .describe('time of the daily backup, HH:MM (24 h, local time)'),
        catchUp: z
          .boolean()
          .default(true)
          .describe('take the daily backup at start when the box was off at dailyAt'),
        checkEverySeconds: z
          .number()
          .int()
          .min(1)
          .max(3600)
          .default(60)
          .describe("how often the daemon wakes to check the schedule and the snapshot's fill level"),
      })
      .strict()
      .prefault({}),
    paths: z
      .object({
        stateDir: absPath
          .default('/var/lib/zshield')
          .describe(
            'state that belongs with the root it describes (the /boot captured for a restore): in lv-root, so a restore rolls it back; also a fallback copy of the last backup result',
          ),
        runDir: absPath
          .default('/run/zshield')
          .describe('lock and pid files: on a tmpfs, so a reboot clears them'),
        eventLog: absPath
          .default('/boot/zshield/events.jsonl')
          .describe(
            "recovery events (restores, factory resets), on the system disk's /boot partition: outside lv-root, so a rollback does not erase the record of itself; the last backup result (last-backup.json) is kept beside it",
          ),
      })
      .strict()
      .prefault({}),
    disks: z
      .object({
        // The system disk, by identity. Unset: the one eligible disk found by probing (refused if not exactly one).
        system: z
          .object({
            serial: z
              .string()
              .min(1)
              .nullable()
              .default(null)
              .describe(
                'serial number of the system disk (a factory reset targets it); null: the only eligible disk (refused if not exactly one)',
              ),
            wwn: z
              .string()
              .min(1)
              .nullable()
              .default(null)
              .describe('WWN of the system disk, instead of or besides the serial'),
            minSize: size(false)
              .default({ kind: 'bytes', bytes: 4 * 1024 ** 3 })
              .describe('a candidate system disk smaller than this is refused'),
          })
          .strict()
          .prefault({}),
        golden: z
          .object({
            serial: z
              .string()
              .min(1)
              .nullable()
              .default(null)
              .describe(
                'serial number of the golden medium: what `golden prepare` writes, and never a factory reset target',
              ),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    layout: z
      .object({
        bootSize: size(false)
          .default({ kind: 'bytes', bytes: 512 * 1024 ** 2 })
          .describe(
            "the /boot partition a factory reset makes at the start of the system disk (after 1 MiB left for GRUB's core image)",
          ),
        volumes: z
          .array(
            z
              .object({
                name: lvmName.describe('LV name; one of them must be lvm.rootLv, mounted at /'),
                size: size(true).describe('absolute ("20G") or a share of the VG ("50%")'),
                mount: z
                  .union([absPath, z.null()])
                  .default(null)
                  .describe('where it is mounted (written to the new fstab); null: not mounted'),
                fs: z.enum(['ext4']).default('ext4').describe('file system made on it'),
              })
              .strict(),
          )
          .min(1)
          .default([
            { name: 'lv-root', size: { kind: 'percent', percent: 45 }, mount: '/', fs: 'ext4' },
            { name: 'lv-data', size: { kind: 'percent', percent: 20 }, mount: '/data', fs: 'ext4' },
            { name: 'lv-audit', size: { kind: 'percent', percent: 10 }, mount: '/var/log/audit', fs: 'ext4' },
          ])
          .describe('the logical volumes a factory reset makes; a restore touches only lvm.rootLv'),
      })
      .strict()
      .prefault({}),
    recovery: z
      .object({
        countdownSeconds: z
          .number()
          .int()
          .min(0)
          .max(600)
          .default(10)
          .describe(
            'seconds the console shows the plan before a boot-time recovery starts; typing c + Enter cancels',
          ),
        reboot: z
          .boolean()
          .default(true)
          .describe('reboot into the system disk after a successful boot-time recovery'),
        hooksDir: absPath
          .default('/etc/zshield/hooks.d')
          .describe(
            "executables run after a factory reset and after a restore (e.g. the OEM's factory test)",
          ),
        exclude: z
          .array(z.string().min(1))
          .default([])
          .describe(
            "paths (rsync patterns) left out of the golden root's copy, besides the system mount points",
          ),
      })
      .strict()
      .prefault({}),
    hooks: z
      .object({
        aptBackup: z
          .boolean()
          .default(true)
          .describe(
            "take a restore point (reason pre-upgrade) before every apt run that changes packages (the package's apt hook, `zshield apt-hook`); false: the hook does nothing",
          ),
        aptRequireBackup: z
          .boolean()
          .default(false)
          .describe(
            'true: a failed pre-upgrade backup stops the apt run; false: the upgrade goes on and the failure is logged and shown',
          ),
        aptMinIntervalMinutes: z
          .number()
          .int()
          .min(0)
          .max(10080)
          .default(60)
          .describe(
            'no new pre-upgrade backup when the restore point is younger than this (two apt runs in a row make one restore point); 0: always',
          ),
        aptTimeoutSeconds: z
          .number()
          .int()
          .min(10)
          .max(3600)
          .default(300)
          .describe(
            "the apt hook's time limit for its backup, the wait for another zshield's lock included; past it the backup counts as failed",
          ),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        textfile: z
          .union([absPath, z.null()])
          .default('/var/lib/prometheus/node-exporter/zshield.prom')
          .describe(
            "Prometheus text file written after every job and the daemon's health check (node_exporter's textfile collector folder: Debian's default); a missing folder skips it; null: none",
          ),
      })
      .strict()
      .prefault({}),
    remote: remoteSchema.prefault({}),
    image: imageSchema.prefault({}),
    history: historySchema.prefault({}),
    clone: cloneSchema.prefault({}),
    log: z
      .object({
        file: z
          .union([absPath, z.null()])
          .default('/var/log/zshield/zshield.log')
          .describe('log file (lines with time and pid; secrets never written); null: the terminal only'),
        level: z
          .enum(['error', 'warn', 'info', 'debug'])
          .default('info')
          .describe('level written to the log file (the terminal follows --verbose / --quiet)'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.output<typeof configSchema>;

export function defaultConfig(): Config {
  return configSchema.parse({});
}
