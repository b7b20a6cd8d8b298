// The single executable's start, as a shell and as the daemon's unit run it: V8 takes a code cache
// only under the flags it was made with, and the unit sets heap limits in NODE_OPTIONS. Before the
// daemon got a cache of its own, every daemon start printed "Warning: Code cache data rejected" (Node's
// SEA cache) and compiled the bundle without one.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DAEMON_NODE_OPTIONS, SEA } from '../bundle.js';

function start(nodeOptions: string, check: boolean) {
  return spawnSync(SEA, ['--version'], {
    encoding: 'utf8',
    timeout: 120_000,
    env: {
      PATH: '/usr/bin:/bin',
      NODE_OPTIONS: nodeOptions,
      ...(check ? { ZSHIELD_BUILD_CACHE_CHECK: '1' } : {}),
    },
  });
}

describe('the binary starts with its code cache', () => {
  for (const [label, opts] of [
    ['from a shell (no NODE_OPTIONS)', ''],
    ["under the daemon's unit's NODE_OPTIONS", DAEMON_NODE_OPTIONS],
  ] as const) {
    it(`${label}: the version, nothing on stderr, the cache taken`, () => {
      const r = start(opts, false);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
      expect(r.stderr).toBe('');
      // With the build's check set, a rejected cache is exit 70 (build/sea-main.cjs).
      const c = start(opts, true);
      expect(c.status, c.stderr).toBe(0);
    });
  }

  it('other flags: the cache is not taken, the start is the same, only slower', () => {
    const r = start('--max-old-space-size=200', false);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(r.stderr).toBe('');
  });
});
