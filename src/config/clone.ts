import { z } from 'zod';

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
    power: z
      .array(
        z
          .object({
            name: z.string().min(1).describe("the box's name, as the sender's table shows it"),
            command: z
              .array(z.string())
              .min(1)
              .describe('the argument array run through the Runner (no shell)'),
          })
          .strict(),
      )
      .default([])
      .describe(
        "optional, untested on real hardware: per box an argv that reboots it into receive mode (ipmitool, amttool); passwords in the tool's environment or file option, never here",
      ),
  })
  .strict();

export type CloneConfig = z.output<typeof cloneSchema>;
