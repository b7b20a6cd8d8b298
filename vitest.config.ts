import { defineConfig } from 'vitest/config';

// Three projects: fast unit tests (recording runner, parsers, planning) and the appliance tests,
// which boot a QEMU virtual appliance and drive the real single binary against real LVM, and the
// remote tests, which drive the bundle against a real OpenSSH server on 127.0.0.1.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // Bounds on a hang, not on speed: some cases run the bundle or real tools a dozen times,
          // which took 24 s in a gate with two busy loops and other work beside it (load 10 on 2
          // cores); a hang still fails, after two minutes.
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: 'appliance',
          include: ['test/appliance/**/*.test.ts'],
          globalSetup: ['test/appliance/global-setup.ts'],
          setupFiles: ['test/appliance/file-cleanup.ts'],
          testTimeout: 600_000,
          hookTimeout: 600_000,
          // One guest at a time: the machine has 2 cores and TCG is single-threaded per guest.
          fileParallelism: false,
        },
      },
      {
        // Bench scenarios too long for the gate (each passes when run; run them when touching what
        // they prove): `vitest run --project appliance-long [FILE]`.
        test: {
          name: 'appliance-long',
          include: ['test/appliance-long/**/*.test.ts'],
          globalSetup: ['test/appliance/global-setup.ts'],
          setupFiles: ['test/appliance/file-cleanup.ts'],
          testTimeout: 900_000,
          hookTimeout: 1_800_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'remote',
          include: ['test/remote/**/*.test.ts'],
          globalSetup: ['test/remote/global-setup.ts'],
          // Bounds on a hang, never on speed: a case runs several commands in a row (each bounded at
          // 300 s); at load 7 one case of six commands took 174 s (21 s idle).
          testTimeout: 600_000,
          hookTimeout: 600_000,
          // The files share two sshd and the test users; the bandwidth and resume tests time things.
          fileParallelism: false,
        },
      },
      {
        // The command contract (test/contract): every command of the tree, run as the built binary
        // in a world of files, stand-in tools and the remote tests' sshd (their global setup).
        test: {
          name: 'contract',
          include: ['test/contract/**/*.test.ts'],
          globalSetup: ['test/remote/global-setup.ts'],
          testTimeout: 300_000,
          hookTimeout: 600_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'host',
          include: ['test/host/**/*.test.ts'],
          globalSetup: ['test/host/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 300_000,
          // Network namespaces, udpcast ports and the repair port are shared by the files.
          fileParallelism: false,
        },
      },
    ],
  },
});
