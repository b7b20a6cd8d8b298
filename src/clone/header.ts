import { RefusedError, VerifyError } from '../errors.js';
import { type Signed, verifyDocument } from '../system/signing.js';
import { type GoldenManifest, type SignedManifest, checkManifestShape, imageIdOf } from '../golden/index.js';

/**
 * The signed header carried ahead of the multicast stream (the seed's "secure initialisation"):
 * the image's released manifest (signed when the image was made) and a session document signed by
 * the sender when the session starts. A receiver checks both against its vendor keys before it
 * opens the target: a stream from anyone else, or of another session, writes nothing.
 *
 * On the wire: MAGIC, a 4-byte big-endian length, then the JSON; the zstd stream follows.
 */

export const MAGIC = Buffer.from('ZSHIELD-CLONE/1\n');
const MAX_HEADER = 64 * 1024 * 1024;

export interface SessionInfo {
  /** The session's name: receivers configured with clone.session accept only this one. */
  session: string;
  imageId: string;
  version: string;
  size: number;
  rootHash: string;
  /** Where failed receivers fetch chunks and send their report (http://ADDRESS:PORT). */
  repairUrl: string;
  startedAt: string;
}

export interface StreamHeader {
  manifest: SignedManifest;
  session: Signed<SessionInfo>;
}

export function encodeHeader(h: StreamHeader): Buffer {
  const json = Buffer.from(JSON.stringify(h));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([MAGIC, len, json]);
}

/**
 * Reads the header from the front of a byte stream. Returns it with the bytes read past it (the
 * start of the zstd stream) and the iterator to go on with.
 */
export async function readHeader(
  source: AsyncIterator<Buffer>,
): Promise<{ header: unknown; rest: Buffer } | null> {
  let buf = Buffer.alloc(0);
  const need = async (n: number): Promise<boolean> => {
    while (buf.length < n) {
      const next = await source.next();
      if (next.done) return false;
      buf = Buffer.concat([buf, Buffer.from(next.value)]);
    }
    return true;
  };
  if (!(await need(MAGIC.length + 4))) return null;
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new VerifyError('the stream does not start with a zshield clone header (not a zshield session)');
  }
  const len = buf.readUInt32BE(MAGIC.length);
  if (len > MAX_HEADER) throw new VerifyError(`clone header of ${len} bytes: too large, refused`);
  const end = MAGIC.length + 4 + len;
  if (!(await need(end))) return null;
  let header: unknown;
  try {
    header = JSON.parse(buf.subarray(MAGIC.length + 4, end).toString('utf8'));
  } catch {
    throw new VerifyError('the clone header is not JSON');
  }
  return { header, rest: buf.subarray(end) };
}

/**
 * The box refuses a genuine session (another session name, a target too small): the header was
 * signed by a trusted key, so its repair address can be told why.
 */
export class SessionRefusedError extends RefusedError {
  constructor(
    readonly session: SessionInfo,
    message: string,
  ) {
    super(message);
  }
}

export interface HeaderRules {
  /** Accept only this session name (null: any session of a trusted signer). */
  expectSession: string | null;
  /** Refuse a session document signed longer ago than this (or this far in the future). */
  maxAgeHours: number;
  now: Date;
}

/**
 * Both signatures, then that they describe the same image, then the session's age (a signed
 * session replayed from a capture is genuine, only old), then the session if one is expected.
 */
export function verifyHeader(
  raw: unknown,
  trusted: readonly string[],
  rules: HeaderRules,
): { manifest: GoldenManifest; session: SessionInfo } {
  const h = (raw ?? {}) as Partial<StreamHeader>;
  const manifest = verifyDocument<GoldenManifest>(h.manifest, trusted, 'clone header: image manifest');
  const session = verifyDocument<SessionInfo>(h.session, trusted, 'clone header: session');
  checkManifestShape(manifest, 'clone header: image manifest');
  if (
    session.imageId !== imageIdOf(manifest) ||
    session.rootHash !== manifest.rootHash ||
    session.size !== manifest.size
  ) {
    throw new VerifyError('clone header: the session and the image manifest describe different images');
  }
  const signedAt = Date.parse(session.startedAt);
  const ageHours = (rules.now.getTime() - signedAt) / 3_600_000;
  if (!Number.isFinite(ageHours) || Math.abs(ageHours) > rules.maxAgeHours) {
    // Not told to the sender: the repair address of a replayed capture may be anyone's now.
    throw new RefusedError(
      `session "${session.session}" was signed at ${session.startedAt}, ${Number.isFinite(ageHours) ? `${Math.round(ageHours * 10) / 10} h` : 'an unreadable time'} from this box's clock (${rules.now.toISOString()}); clone.maxSessionAgeHours is ${rules.maxAgeHours}: a replayed or stale session, nothing written`,
      { hint: "check this box's clock and the sender's; a live session is signed when clone send starts" },
    );
  }
  const expectSession = rules.expectSession;
  if (expectSession !== null && session.session !== expectSession) {
    throw new SessionRefusedError(
      session,
      `joined session "${session.session}" but this box expects "${expectSession}": nothing written`,
    );
  }
  return { manifest, session };
}
