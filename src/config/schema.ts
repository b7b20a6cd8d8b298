import { z } from 'zod';
import { parseSize, type SizeSpec } from './size.js';
import { remoteSchema } from '../remote/config.js';
import { imageSchema } from './image.js';
import { historySchema } from './history.js';

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
  z.union([z.string(), z.number()]).transform((v, ctx): SizeSpec => {
    const r = parseSize(v, allowPercent);
    if (typeof r === 'string') {
      ctx.addIssue({ code: 'custom', message: r });
      return z.NEVER;
    }
    return r;
  });

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
        vg: lvmName.default('vgroup'),
        rootLv: lvmName.default('lv-root'),
        snapshot: lvmName.default('snap0'),
      })
      .strict()
      .prefault({}),
    snapshot: z
      .object({
        /** Size of snap0's copy-on-write store: a share of lv-root ("20%") or absolute ("10G"). */
        size: size(true).default({ kind: 'percent', percent: 20 }),
        /**
         * auto: make the new snapshot before dropping the old when the VG has room for both, else
         * drop first (space is checked before either). create-first: refuse unless both fit.
         */
        rotation: z.enum(['auto', 'create-first']).default('auto'),
        warnPercent: z.number().min(1).max(99).default(80),
        errorPercent: z.number().min(1).max(100).default(95),
      })
      .strict()
      .prefault({}),
    boot: z
      .object({
        /** Copy /boot into lv-root before each snapshot, so a restore can put the matching kernel back. */
        capture: z.boolean().default(true),
        dir: absPath.default('/boot'),
      })
      .strict()
      .prefault({}),
    daemon: z
      .object({
        dailyAt: clockTime.default({ hour: 3, minute: 0, text: '03:00' }),
        /** Take the daily backup at start when the box was off at dailyAt. */
        catchUp: z.boolean().default(true),
        /** How often the daemon wakes to check the schedule and the snapshot's fill level. */
        checkEverySeconds: z.number().int().min(1).max(3600).default(60),
      })
      .strict()
      .prefault({}),
    paths: z
      .object({
        /**
         * State that belongs with the root it describes (the /boot captured for a restore): lives in
         * lv-root, so a restore rolls it back. It also holds a fallback copy of the last backup result.
         */
        stateDir: absPath.default('/var/lib/zshield'),
        /** Lock and pid files: a tmpfs, so a reboot clears them. */
        runDir: absPath.default('/run/zshield'),
        /**
         * Recovery events (restores, factory resets), on the system disk's /boot partition: outside
         * lv-root, so a rollback does not erase the record of itself. The last backup result is kept
         * beside it (last-backup.json) for the same reason.
         */
        eventLog: absPath.default('/boot/zshield/events.jsonl'),
      })
      .strict()
      .prefault({}),
    disks: z
      .object({
        /** The system disk, by identity. Unset: the one eligible disk found by probing (refused if not exactly one). */
        system: z
          .object({
            serial: z.string().min(1).nullable().default(null),
            wwn: z.string().min(1).nullable().default(null),
            /** A candidate smaller than this is refused. */
            minSize: size(false).default({ kind: 'bytes', bytes: 4 * 1024 ** 3 }),
          })
          .strict()
          .prefault({}),
        /** The golden medium, by identity (for `golden prepare` and to never pick it as a target). */
        golden: z
          .object({ serial: z.string().min(1).nullable().default(null) })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    layout: z
      .object({
        /** The /boot partition at the start of the system disk (after 1 MiB left for GRUB's core image). */
        bootSize: size(false).default({ kind: 'bytes', bytes: 512 * 1024 ** 2 }),
        /** Logical volumes made by a factory reset; sizes are absolute or a share of the VG ("50%"). */
        volumes: z
          .array(
            z
              .object({
                name: lvmName,
                size: size(true),
                mount: z.union([absPath, z.null()]).default(null),
                fs: z.enum(['ext4']).default('ext4'),
              })
              .strict(),
          )
          .min(1)
          .default([
            { name: 'lv-root', size: { kind: 'percent', percent: 45 }, mount: '/', fs: 'ext4' },
            { name: 'lv-data', size: { kind: 'percent', percent: 20 }, mount: '/data', fs: 'ext4' },
            { name: 'lv-audit', size: { kind: 'percent', percent: 10 }, mount: '/var/log/audit', fs: 'ext4' },
          ]),
      })
      .strict()
      .prefault({}),
    recovery: z
      .object({
        /** Seconds the console shows the plan before a boot-time recovery starts; the operator can cancel. */
        countdownSeconds: z.number().int().min(0).max(600).default(10),
        /** Reboot into the system disk after a successful boot-time recovery. */
        reboot: z.boolean().default(true),
        /** Executables run after a factory reset and after a restore (the OEM's factory test). */
        hooksDir: absPath.default('/etc/zshield/hooks.d'),
        /** Paths left out of the golden root's copy (besides the system mount points). */
        exclude: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .prefault({}),
    remote: remoteSchema.prefault({}),
    image: imageSchema.prefault({}),
    history: historySchema.prefault({}),
    log: z
      .object({
        file: z.union([absPath, z.null()]).default('/var/log/zshield/zshield.log'),
        level: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.output<typeof configSchema>;

export function defaultConfig(): Config {
  return configSchema.parse({});
}
