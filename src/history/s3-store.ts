import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import type { HistoryConfig, S3TargetConfig } from '../config/history.js';
import type { Context } from '../context.js';
import { VerifyError } from '../errors.js';
import { checkPrivateFile, openPassword } from '../system/secrets.js';
import type { RateLimiter } from '../ssh/progress.js';
import { kindOf, type PutResult, type RepoFile, type Store } from './repo-store.js';
import {
  checkLocal,
  isNotFound,
  isPreconditionFailed,
  loadSdk,
  makeClient,
  md5,
  multipartEtag,
  OWNER_ACL,
  PART_BYTES,
  readBody,
  type Sdk,
  s3Error,
  writeWhole,
} from './s3-client.js';

/**
 * A target on an S3-compatible object store: the repository's files are objects under
 * `<prefix>repo/`, the catalog's under `<prefix>catalog/`. What the SFTP store gets from a
 * `.part` file and a rename, it gets here from the store's own atomic writes: a single PUT with
 * `If-None-Match: *` appears whole or not at all and never replaces a file; a larger file goes up
 * in parts, which a later run finds (ListMultipartUploads) and continues. Each write carries
 * Content-MD5 (RGW 16 checks it, and has no SHA-256 of its own), and each file is checked after
 * its upload by a HEAD: its size and ETag (the MD5, or the MD5 of the parts' MD5s).
 */

export class S3Store implements Store {
  readonly label: string;
  readonly appendOnly: boolean;
  /** A file up to multipartAboveMiB goes up from memory, whole: two at a time bound what it holds. */
  readonly filesInFlight = 2;
  private readonly repoPrefix: string;
  private readonly catalogPrefix: string;
  private readonly secret: string;
  private readonly timeoutMs: number;
  private client: Promise<{ s3: S3Client; sdk: Sdk }> | null = null;

  constructor(
    private readonly ctx: Context,
    private readonly history: HistoryConfig,
    readonly cfg: S3TargetConfig,
    private readonly limiter: RateLimiter | null = null,
  ) {
    this.label = `${cfg.name} (s3 ${cfg.endpoint.replace(/\/+$/, '')}/${cfg.bucket}/${cfg.prefix})`;
    this.appendOnly = cfg.appendOnly;
    this.repoPrefix = `${cfg.prefix}repo/`;
    this.catalogPrefix = `${cfg.prefix}catalog/`;
    this.timeoutMs = history.connectTimeoutSeconds * 1000;
    // The config file holds the encrypted secret: owner-only, as for an SFTP target's password.
    if (ctx.configFile) checkPrivateFile(ctx.configFile, 'config file');
    this.secret = openPassword({ ciphertext: cfg.secretAccessKey, keyFile: history.keyFile, log: ctx.log });
  }

  private async sdk(): Promise<{ s3: S3Client; sdk: Sdk }> {
    this.client ??= (async () => ({
      s3: await makeClient(this.cfg, {
        secretAccessKey: this.secret,
        timeoutMs: this.timeoutMs,
        retries: this.history.retries,
      }),
      sdk: await loadSdk(),
    }))();
    return this.client;
  }

  /** One request, its failure told as the target's RemoteError. */
  private async send<T>(what: string, fn: (c: { s3: S3Client; sdk: Sdk }) => Promise<T>): Promise<T> {
    const c = await this.sdk();
    try {
      return await fn(c);
    } catch (err) {
      throw s3Error(err, this.cfg, this.label, what);
    }
  }

  private readonly opts = () => ({ abortSignal: this.ctx.signal });

  async list(): Promise<RepoFile[]> {
    const out: RepoFile[] = [];
    let token: string | undefined;
    do {
      const page = await this.send(`list ${this.repoPrefix}`, ({ s3, sdk }) =>
        s3.send(
          new sdk.ListObjectsV2Command({
            Bucket: this.cfg.bucket,
            Prefix: this.repoPrefix,
            ContinuationToken: token,
          }),
          this.opts(),
        ),
      );
      for (const o of page.Contents ?? []) {
        const name = (o.Key ?? '').slice(this.repoPrefix.length);
        if (kindOf(name) !== null && !name.split('/').at(-1)!.startsWith('.'))
          out.push({ name, size: o.Size ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async put(
    localPath: string,
    file: RepoFile,
    opts: { replace?: boolean; ready?: () => Promise<void> } = {},
  ): Promise<PutResult> {
    // An object is named by the write that stores it: nothing of it goes up before its turn.
    await opts.ready?.();
    const key = this.repoPrefix + file.name;
    const replace = opts.replace === true;
    if (file.size > this.cfg.multipartAboveMiB * 1024 * 1024)
      return this.putParts(localPath, file, key, replace);
    const body = await readFile(localPath);
    if (body.length !== file.size)
      throw new VerifyError(`${file.name}: ${body.length} bytes here, ${file.size} listed: it changed`);
    checkLocal(file, createHash('sha256').update(body).digest('hex'));
    const sum = md5(body);
    await this.limiter?.take(body.length);
    let sent = body.length;
    await this.send(`copy ${file.name}`, async ({ s3, sdk }) => {
      try {
        await s3.send(
          new sdk.PutObjectCommand({
            Bucket: this.cfg.bucket,
            Key: key,
            Body: body,
            ContentLength: body.length,
            ContentMD5: sum.toString('base64'),
            ACL: OWNER_ACL,
            // Create only: a file a store holds is never replaced by a write (content-addressed,
            // so one already there is either this very file or damage the check below finds),
            // but for the damaged copy a repair replaces on purpose.
            ...(replace ? {} : { IfNoneMatch: '*' }),
          }),
          this.opts(),
        );
      } catch (err) {
        if (!isPreconditionFailed(err)) throw err;
        sent = 0;
      }
    });
    await this.checkStored(file, key, `"${sum.toString('hex')}"`);
    return { sent, resumedFrom: 0 };
  }

  /** A file in parts: an upload left by a cut run is continued (its parts checked by MD5). */
  private async putParts(
    localPath: string,
    file: RepoFile,
    key: string,
    replace: boolean,
  ): Promise<PutResult> {
    const { uploadId, done } = await this.openUpload(key, file.name);
    const fh = await open(localPath, 'r');
    const parts: { PartNumber: number; ETag: string }[] = [];
    const sums: Buffer[] = [];
    const whole = createHash('sha256');
    let sent = 0;
    let resumedFrom = 0;
    try {
      const count = Math.max(1, Math.ceil(file.size / PART_BYTES));
      for (let n = 1; n <= count; n++) {
        const len = Math.min(PART_BYTES, file.size - (n - 1) * PART_BYTES);
        const buf = Buffer.alloc(len);
        const { bytesRead } = await fh.read(buf, 0, len, (n - 1) * PART_BYTES);
        if (bytesRead !== len)
          throw new VerifyError(`${file.name}: shorter than the ${file.size} bytes listed`);
        const sum = md5(buf);
        sums.push(sum);
        whole.update(buf);
        const etag = `"${sum.toString('hex')}"`;
        const had = done.get(n);
        if (had?.size === len && had.etag === etag) {
          resumedFrom += len;
          parts.push({ PartNumber: n, ETag: etag });
          continue;
        }
        await this.limiter?.take(len);
        const r = await this.send(`copy ${file.name} (part ${n} of ${count})`, ({ s3, sdk }) =>
          s3.send(
            new sdk.UploadPartCommand({
              Bucket: this.cfg.bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: n,
              Body: buf,
              ContentLength: len,
              ContentMD5: sum.toString('base64'),
            }),
            this.opts(),
          ),
        );
        if (r.ETag !== etag)
          throw new VerifyError(`${this.label}: part ${n} of ${file.name} stored as ${r.ETag}, sent ${etag}`);
        parts.push({ PartNumber: n, ETag: etag });
        sent += len;
      }
    } finally {
      await fh.close();
    }
    // The parts are stored but not yet a file: one whose content is not its name is never made one.
    checkLocal(file, whole.digest('hex'));
    await this.completeUpload(key, file.name, uploadId, parts, replace);
    await this.checkStored(file, key, multipartEtag(sums));
    return { sent, resumedFrom };
  }

  /** The upload of `key` a cut run left (its parts), else a new one. Older leftovers are aborted. */
  private async openUpload(
    key: string,
    name: string,
  ): Promise<{ uploadId: string; done: Map<number, { size: number; etag: string }> }> {
    const listed = await this.send(`look for a cut upload of ${name}`, ({ s3, sdk }) =>
      s3.send(new sdk.ListMultipartUploadsCommand({ Bucket: this.cfg.bucket, Prefix: key }), this.opts()),
    );
    const mine = (listed.Uploads ?? [])
      .filter((u) => u.Key === key && u.UploadId)
      .sort((a, b) => (b.Initiated?.getTime() ?? 0) - (a.Initiated?.getTime() ?? 0));
    for (const old of mine.slice(1)) await this.abortUpload(key, name, old.UploadId!);
    const done = new Map<number, { size: number; etag: string }>();
    if (mine[0]) {
      const uploadId = mine[0].UploadId!;
      let marker: string | undefined;
      do {
        const page = await this.send(`list the parts of ${name}`, ({ s3, sdk }) =>
          s3.send(
            new sdk.ListPartsCommand({
              Bucket: this.cfg.bucket,
              Key: key,
              UploadId: uploadId,
              PartNumberMarker: marker,
            }),
            this.opts(),
          ),
        );
        for (const p of page.Parts ?? [])
          if (p.PartNumber && p.ETag) done.set(p.PartNumber, { size: p.Size ?? 0, etag: p.ETag });
        marker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
      } while (marker);
      this.ctx.log.info(
        `history: ${this.label}: ${name}: continuing a cut upload (${done.size} part(s) there)`,
      );
      return { uploadId, done };
    }
    const made = await this.send(`start the upload of ${name}`, ({ s3, sdk }) =>
      s3.send(
        new sdk.CreateMultipartUploadCommand({ Bucket: this.cfg.bucket, Key: key, ACL: OWNER_ACL }),
        this.opts(),
      ),
    );
    return { uploadId: made.UploadId!, done };
  }

  private async completeUpload(
    key: string,
    name: string,
    uploadId: string,
    parts: { PartNumber: number; ETag: string }[],
    replace: boolean,
  ): Promise<void> {
    // RGW 16 ignores If-None-Match on the completion (it would overwrite): look first. A file that
    // appeared meanwhile is checked as it is, and this upload dropped.
    if (!replace && (await this.head(key, name))) {
      await this.abortUpload(key, name, uploadId);
      return;
    }
    await this.send(`finish the upload of ${name}`, ({ s3, sdk }) =>
      s3.send(
        new sdk.CompleteMultipartUploadCommand({
          Bucket: this.cfg.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
        this.opts(),
      ),
    );
  }

  private async abortUpload(key: string, name: string, uploadId: string): Promise<void> {
    await this.send(`drop an upload of ${name}`, ({ s3, sdk }) =>
      s3.send(
        new sdk.AbortMultipartUploadCommand({ Bucket: this.cfg.bucket, Key: key, UploadId: uploadId }),
        this.opts(),
      ),
    );
  }

  private async head(key: string, name: string): Promise<{ size: number; etag: string } | null> {
    return this.send(`check ${name}`, async ({ s3, sdk }) => {
      try {
        const r = await s3.send(
          new sdk.HeadObjectCommand({ Bucket: this.cfg.bucket, Key: key }),
          this.opts(),
        );
        return { size: r.ContentLength ?? -1, etag: r.ETag ?? '' };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    });
  }

  /** After an upload: the object has the file's size and the ETag its MD5s give (RGW's Complete returns none). */
  private async checkStored(file: RepoFile, key: string, etag: string): Promise<void> {
    const got = await this.head(key, file.name);
    if (got === null) throw new VerifyError(`${this.label}: ${file.name} is not there after its upload`);
    if (got.size !== file.size || got.etag !== etag)
      throw new VerifyError(
        `${this.label}: ${file.name} is stored as ${got.size} bytes (ETag ${got.etag}), sent ${file.size} bytes (${etag})`,
        { hint: 'zshield history replicate --verify-all replaces a damaged file' },
      );
  }

  async remove(name: string): Promise<void> {
    // DeleteObject of an absent key succeeds: a second try is harmless.
    await this.send(`delete ${name}`, ({ s3, sdk }) =>
      s3.send(
        new sdk.DeleteObjectCommand({ Bucket: this.cfg.bucket, Key: this.repoPrefix + name }),
        this.opts(),
      ),
    );
  }

  /** Read the object back and hash it: the store keeps no SHA-256 of its own. */
  async sha256(file: RepoFile): Promise<string> {
    const h = createHash('sha256');
    await this.get(this.repoPrefix + file.name, file.name, (b) => {
      h.update(b);
    });
    return h.digest('hex');
  }

  async fetch(file: RepoFile, localPath: string): Promise<void> {
    await this.download(this.repoPrefix + file.name, file.name, localPath);
  }

  async putCatalog(localPath: string, name: string, ready?: () => Promise<void>): Promise<void> {
    await ready?.();
    const body = await readFile(localPath);
    const sum = md5(body);
    // The catalog grows: it is replaced (its signed head says which is newer).
    await this.send(`copy catalog/${name}`, ({ s3, sdk }) =>
      s3.send(
        new sdk.PutObjectCommand({
          Bucket: this.cfg.bucket,
          Key: this.catalogPrefix + name,
          Body: body,
          ContentLength: body.length,
          ContentMD5: sum.toString('base64'),
          ACL: OWNER_ACL,
        }),
        this.opts(),
      ),
    );
    await this.checkStored(
      { name: `catalog/${name}`, size: body.length },
      this.catalogPrefix + name,
      `"${sum.toString('hex')}"`,
    );
  }

  async fetchCatalog(name: string, localPath: string): Promise<boolean> {
    if ((await this.head(this.catalogPrefix + name, `catalog/${name}`)) === null) return false;
    await this.download(this.catalogPrefix + name, `catalog/${name}`, localPath);
    return true;
  }

  close(): void {
    void this.client?.then((c) => c.s3.destroy()).catch(() => {});
  }

  /** Written whole, then named: a cut fetch leaves no file. */
  private download(key: string, name: string, localPath: string): Promise<void> {
    return writeWhole(localPath, (write) => this.get(key, name, write));
  }

  private async get(key: string, name: string, onChunk: (b: Buffer) => void | Promise<void>): Promise<void> {
    await this.send(`read ${name}`, async ({ s3, sdk }) => {
      const r = await s3.send(new sdk.GetObjectCommand({ Bucket: this.cfg.bucket, Key: key }), this.opts());
      await readBody(r.Body, this.timeoutMs, onChunk);
    });
  }
}
