import * as z from 'zod';

/**
 * The `clone` section: golden images as signed artefacts and multicast cloning (a disk image sent
 * to many boxes at once over udpcast). The defaults suit a production line on one switch.
 */

const absPath = z.string().startsWith('/', 'must be an absolute path');

const publicKey = z.string().regex(/^ed25519:[A-Za-z0-9+/]{43}=$/, 'must be ed25519:<base64 of 32 bytes>');

// udpcast's own syntax for --max-bitrate: bits per second, or with k or m.
const bitrate = z.string().regex(/^\d+[km]?$/, 'a bit rate like 500m, 80000k or 1000000 (bits per second)');

const seconds = (min: number, max: number, def: number, what: string) =>
  z.number().int().min(min).max(max).default(def).describe(what);

const sendSchema = z
  .object({
    minReceivers: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(1)
      .describe('the stream starts when this many receivers have joined (or maxWaitSeconds after the first)'),
    maxWaitSeconds: seconds(
      0,
      86400,
      60,
      'seconds after the first receiver joined when the stream starts anyway',
    ),
    startTimeoutSeconds: seconds(1, 86400, 600, 'the sender gives up when no receiver joins in this time'),
    maxBitrate: bitrate
      .nullable()
      .default(null)
      .describe('cap on the multicast bit rate, udpcast syntax (500m, 80000k); null: none'),
    retriesUntilDrop: z
      .number()
      .int()
      .min(1)
      .max(10000)
      .default(30)
      .describe(
        'a receiver that leaves this many retransmission requests unanswered is dropped (then repaired by unicast)',
      ),
    repairWindowSeconds: seconds(
      1,
      86400,
      900,
      "after the stream, how long the repair server waits for every receiver's report",
    ),
  })
  .strict();

const receiveSchema = z
  .object({
    startTimeoutSeconds: seconds(1, 86400, 3600, 'a receiver gives up when no session starts in this time'),
    receiveTimeoutSeconds: seconds(
      1,
      3600,
      30,
      'a stream silent this long has ended (the sender dropped this box, or died): the check and repair follow',
    ),
  })
  .strict();

// A power action: one argument array run through the Runner (no shell), e.g. ipmitool ... chassis
// power cycle. A password in it would show in `ps` and in the log's "$ argv" lines.
const powerArgv = z
  .array(z.string().min(1))
  .min(1)
  .refine((argv) => !argv.some(isPasswordArg), {
    message:
      'a password in argv is visible to every user (ps) and in the log: give it in password.file or password.fromEnv (ipmitool -E reads IPMI_PASSWORD, -f a file)',
  });

/** ipmitool's -P, and --password/--passwd/--pass of other tools (with or without =value). */
export function isPasswordArg(a: string): boolean {
  return a === '-P' || /^-P./.test(a) || /^--pass(word|wd)?(=|$)/.test(a);
}

const envName = z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'an environment variable name (A-Z, 0-9, _)');

const passwordSchema = z
  .object({
    file: absPath
      .optional()
      .describe('a file (mode 0600, owned by root or the caller) whose first line is the password'),
    fromEnv: envName.optional().describe("the variable of zshield's own environment that holds it"),
    env: envName
      .default('IPMI_PASSWORD')
      .describe('the variable the power commands get it in (ipmitool -E reads IPMI_PASSWORD)'),
  })
  .strict()
  .refine((p) => (p.file === undefined) !== (p.fromEnv === undefined), {
    message: 'give exactly one of password.file and password.fromEnv',
  });

export const macAddress = z
  .string()
  .regex(/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/, 'a MAC address like 52:54:00:12:34:56')
  .transform((m) => m.toLowerCase());

const machineSchema = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, . _ - (up to 63)')
      .describe("the box's name, as the table shows it"),
    mac: macAddress.describe(
      'the MAC of the NIC the box network-boots from: only listed MACs get a DHCP answer',
    ),
    disk: z
      .string()
      .min(1)
      .describe('serial or WWN of the disk the rescue writes (it never picks a disk itself)'),
    power: z
      .object({
        status: powerArgv.describe("prints the power state; its output says 'on' or 'off'"),
        on: powerArgv.describe('powers the box on'),
        cycle: powerArgv.describe('power cycle (off, then on)'),
      })
      .strict(),
    password: passwordSchema
      .nullable()
      .default(null)
      .describe('the BMC password, handed to the power commands in their environment, never in argv'),
  })
  .strict();

export type Machine = z.output<typeof machineSchema>;

export const cloneSchema = z
  .object({
    trustedKeys: z
      .array(publicKey)
      .default([])
      .describe(
        'vendor public keys (ed25519:...): an image manifest or clone stream signed by any other key is refused',
      ),
    signingKey: z
      .union([absPath, z.null()])
      .default(null)
      .describe("the vendor's private key file (0600), on the machine that makes and sends golden images"),
    interface: z
      .string()
      .min(1)
      .default('eth0')
      .describe('network interface udpcast binds to (named, not the first one found)'),
    portbase: z
      .number()
      .int()
      .min(1024)
      .max(65534)
      .refine((n) => n % 2 === 0, 'must be even (udpcast uses it and the next port)')
      .default(9000)
      .describe("udpcast's port base (it uses this port and the next); two sessions on one LAN differ here"),
    repairPort: z
      .number()
      .int()
      .min(1024)
      .max(65535)
      .default(9780)
      .describe("TCP port of the sender's repair server (failed receivers fetch their bad chunks there)"),
    session: z
      .string()
      .min(1)
      .nullable()
      .default(null)
      .describe(
        'a receiver accepts only this session name; null: any session signed by a trusted key (a fleet should bind one: see Cloning)',
      ),
    maxSessionAgeHours: z
      .number()
      .min(0.1)
      .max(8760)
      .default(24)
      .describe(
        'a receiver refuses a session signed longer ago than this (or this far ahead of its clock): a replayed capture of an older session',
      ),
    send: sendSchema.prefault({}).describe('clone send'),
    receive: receiveSchema.prefault({}).describe('clone receive'),
    machines: z
      .array(machineSchema)
      .default([])
      .describe(
        'the boxes of a netboot session (clone send --netboot): each powered through its own BMC, network-booted into the rescue, written on the disk named here',
      ),
  })
  .strict();

export type CloneConfig = z.output<typeof cloneSchema>;
