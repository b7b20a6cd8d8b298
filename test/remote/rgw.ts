import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ensurePackages, freePort } from './sshd.js';

/**
 * A real Ceph RADOS Gateway for the remote tests: a one-node Ceph 16 cluster (mon, one bluestore OSD
 * on a sparse file, radosgw; no mgr) started by test/remote/ceph-rgw.sh in a folder of its own, on
 * ports picked here, stopped by its pid files. The Debian packages are installed when missing, as
 * the sshd's are. One cluster per test project that asks for it (the remote project's global setup;
 * the appliance file test/appliance/history-net.test.ts starts its own).
 */

const SCRIPT = path.join(import.meta.dirname, 'ceph-rgw.sh');

export interface RgwEnv {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  /** The cluster's folder (config, keyrings, data, logs, pid files, users/). */
  state: string;
  /** Seconds from an empty folder to radosgw answering. */
  startSeconds: number;
  /** An S3 user made at start (buckets are made with it). */
  admin: S3User;
}

export interface S3User {
  uid: string;
  accessKeyId: string;
  secretAccessKey: string;
}

function script(args: string[], timeoutMs = 120_000): string {
  const r = spawnSync('bash', [SCRIPT, ...args], { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0)
    throw new Error(`ceph-rgw.sh ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stderr}`);
  return r.stdout;
}

/** A new S3 user of the cluster, keys made by radosgw-admin (read from its 0600 JSON). */
export function makeS3User(rgw: RgwEnv, uid: string): S3User {
  script(['user', rgw.state, uid]);
  const j = JSON.parse(readFileSync(path.join(rgw.state, 'users', `${uid}.json`), 'utf8')) as {
    keys: { access_key: string; secret_key: string }[];
  };
  return { uid, accessKeyId: j.keys[0]!.access_key, secretAccessKey: j.keys[0]!.secret_key };
}

/** Stop the OSD: radosgw stays up and its requests hang (it never fails them) until it is back. */
export const stopOsd = (rgw: RgwEnv): void => void script(['stop-osd', rgw.state]);
export const startOsd = (rgw: RgwEnv): void => void script(['start-osd', rgw.state], 200_000);

/** The one-node cluster's Debian packages (the mgr is not needed: shared/notes/ceph-rgw.md). */
export const RGW_PACKAGES = ['ceph-mon', 'ceph-osd', 'radosgw', 'curl'];

/**
 * `rgwPort`: radosgw's port, when the caller must know it before the cluster is up (the appliance
 * bench points a guest's forward at it while the guest boots and the cluster starts beside it).
 */
export async function startRgw(
  opts: { rgwPort?: number } = {},
): Promise<{ env: RgwEnv; stop(): Promise<void> }> {
  ensurePackages(RGW_PACKAGES);
  // Short: the daemons' admin sockets live under it (a unix socket path has < 108 bytes).
  const state = mkdtempSync('/tmp/zsrgw-');
  const stop = async () => {
    spawnSync('bash', [SCRIPT, 'down', state], { encoding: 'utf8', timeout: 120_000 });
    rmSync(state, { recursive: true, force: true });
  };
  const started = Date.now();
  try {
    const rgwPort = opts.rgwPort ?? (await freePort());
    let monPort = await freePort();
    // A port picked beforehand is free again until radosgw binds it: the mon must not take it.
    while (monPort === rgwPort) monPort = await freePort();
    // Asynchronous: the sshd start goes on meanwhile (the daemons detach; the script returns).
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('bash', [SCRIPT, 'up', state, String(rgwPort), String(monPort)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
      });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      child.on('close', (code) =>
        code === 0 ? resolve(stdout) : reject(new Error(`ceph-rgw.sh up failed (${code}):\n${stderr}`)),
      );
    });
    const endpoint = out.trim().split('\n').at(-1)!;
    const partial: RgwEnv = {
      endpoint,
      state,
      startSeconds: (Date.now() - started) / 1000,
      admin: { uid: '', accessKeyId: '', secretAccessKey: '' },
    };
    partial.admin = makeS3User(partial, 'zshield-test');
    return { env: partial, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
