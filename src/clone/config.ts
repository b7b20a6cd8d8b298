import { z } from 'zod';

/**
 * The `clone` section: golden images as signed artefacts and multicast cloning (the seed's
 * net-flash over udpcast). The defaults suit a production line on one switch.
 */

const absPath = z.string().startsWith('/', 'must be an absolute path');

const publicKey = z.string().regex(/^ed25519:[A-Za-z0-9+/]{43}=$/, 'must be ed25519:<base64 of 32 bytes>');

// udpcast's own syntax for --max-bitrate: bits per second, or with k or m.
const bitrate = z.string().regex(/^\d+[km]?$/, 'a bit rate like 500m, 80000k or 1000000 (bits per second)');

export const cloneSchema = z
  .object({
    /** Vendor public keys: a golden image manifest or a clone stream signed by any other key is refused. */
    trustedKeys: z.array(publicKey).default([]),
    /** The vendor's private key (0600), on the machine that packages and sends images. */
    signingKey: z.union([absPath, z.null()]).default(null),
    /** Network interface udpcast binds to (the seed's "smarter interface binding": named, not the first one). */
    interface: z.string().min(1).default('eth0'),
    /** udpcast's port base (it uses this port and the next); sessions on one LAN differ here. */
    portbase: z
      .number()
      .int()
      .min(1024)
      .max(65534)
      .refine((n) => n % 2 === 0, 'must be even (udpcast uses it and the next port)')
      .default(9000),
    /** TCP port of the sender's repair server (failed receivers fetch their bad chunks here). */
    repairPort: z.number().int().min(1024).max(65535).default(9780),
    /** A receiver only accepts a stream whose session name is this (null: any session of a trusted signer). */
    session: z.string().min(1).nullable().default(null),
    send: z
      .object({
        /** The sender starts when this many receivers have joined... */
        minReceivers: z.number().int().min(1).max(1000).default(1),
        /** ...or this many seconds after the first one joined. */
        maxWaitSeconds: z.number().int().min(0).max(86400).default(60),
        /** Gives up when no receiver joins at all in this time. */
        startTimeoutSeconds: z.number().int().min(1).max(86400).default(600),
        /** Cap on the multicast bit rate (null: no cap); keep it below what the slowest disk writes. */
        maxBitrate: bitrate.nullable().default(null),
        /** A receiver that does not answer this many retransmission requests is dropped (and repaired later). */
        retriesUntilDrop: z.number().int().min(1).max(10000).default(30),
        /** After the stream, how long the repair server waits for every receiver's report. */
        repairWindowSeconds: z.number().int().min(1).max(86400).default(900),
      })
      .strict()
      .prefault({}),
    receive: z
      .object({
        /** Gives up when no sender starts a stream in this time. */
        startTimeoutSeconds: z.number().int().min(1).max(86400).default(3600),
        /** Ends a stream that stops (the sender dropped this box, or died); the repair path follows. */
        receiveTimeoutSeconds: z.number().int().min(1).max(3600).default(30),
      })
      .strict()
      .prefault({}),
    /**
     * Optional: a command per box that reboots it into receive mode (ipmitool, amttool), as the
     * seed did with AMT. Argument arrays; a password belongs in the tool's environment or file
     * option, never here. Not tested on real hardware.
     */
    power: z
      .array(z.object({ name: z.string().min(1), command: z.array(z.string()).min(1) }).strict())
      .default([]),
  })
  .strict();

export type CloneConfig = z.output<typeof cloneSchema>;
