// globalSetup of the remote project (and of the contract suite): install OpenSSH and tmux when
// missing, create the test users, start two sshd on 127.0.0.1 (A and B, each with its own host
// key), and build the bundle the tests run, so `vitest run --project remote` alone works on a fresh
// machine. The remote project also gets a one-node Ceph RADOS Gateway (rgw.ts), started while
// the sshd are set up; the contract suite needs none.
import type { TestProject } from 'vitest/node';
import { ensureBundle } from '../bundle.js';
import { type RgwEnv, startRgw } from './rgw.js';
import { type RemoteEnv, setUpRemoteEnv } from './sshd.js';

declare module 'vitest' {
  export interface ProvidedContext {
    remote: RemoteEnv;
    rgw: RgwEnv | null;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  ensureBundle();
  const rgw = project.name === 'remote' ? startRgw() : null;
  // A failed cluster start must not leave it running: wait for it before giving up on the sshd.
  rgw?.catch(() => {});
  let remote: Awaited<ReturnType<typeof setUpRemoteEnv>>;
  try {
    remote = await setUpRemoteEnv();
  } catch (err) {
    await rgw?.then((r) => r.stop()).catch(() => {});
    throw err;
  }
  let cluster: Awaited<ReturnType<typeof startRgw>> | null = null;
  try {
    cluster = rgw ? await rgw : null;
  } catch (err) {
    await remote.stop();
    throw err;
  }
  if (cluster)
    process.stderr.write(
      `remote: Ceph RGW on ${cluster.env.endpoint} (mon, osd, radosgw) up in ${cluster.env.startSeconds.toFixed(1)} s\n`,
    );
  project.provide('remote', remote.env);
  project.provide('rgw', cluster?.env ?? null);
  return async () => {
    await cluster?.stop();
    await remote.stop();
  };
}
