// globalSetup of the appliance project: build or refresh the QEMU bench (host packages, kernel,
// golden root with the current build/out/zshield, initramfs) once before the appliance tests, so
// `vitest run --project appliance` alone is enough on a fresh machine. setup.sh is quick when
// everything is up to date and holds a lock, so concurrent runs do not build twice.
import { ensureBench } from '../bench/bench-env.js';

export default async function setup(): Promise<void> {
  await ensureBench();
}
