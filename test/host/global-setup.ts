// globalSetup of the host project: tests that need root and real network namespaces on this host
// (no QEMU). Builds the bundle the tests run and checks the tools, so a missing one is one clear
// failure rather than a hang.
import { spawnSync } from 'node:child_process';
import { ensureBundle } from '../bundle.js';

export default function setup(): void {
  if (process.getuid?.() !== 0) throw new Error('the host tests make network namespaces: run them as root');
  for (const tool of ['ip', 'udp-sender', 'udp-receiver']) {
    if (spawnSync('which', [tool]).status !== 0) {
      throw new Error(
        `${tool} not found: bash build/deps.sh installs it (Debian packages iproute2, udpcast)`,
      );
    }
  }
  ensureBundle();
}
