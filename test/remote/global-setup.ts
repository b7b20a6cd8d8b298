// globalSetup of the remote project: install OpenSSH and tmux when missing, create the test users,
// start two sshd on 127.0.0.1 (A and B, each with its own host key), and build the bundle the
// tests run, so `vitest run --project remote` alone works on a fresh machine.
import type { TestProject } from 'vitest/node';
import { ensureBundle } from '../bundle.js';
import { type RemoteEnv, setUpRemoteEnv } from './sshd.js';

declare module 'vitest' {
  export interface ProvidedContext {
    remote: RemoteEnv;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  ensureBundle();
  const { env, stop } = await setUpRemoteEnv();
  project.provide('remote', env);
  return stop;
}
