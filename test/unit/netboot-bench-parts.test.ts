import { describe, expect, it } from 'vitest';
import { type StampedLine, chainParts, newLines } from '../bench/netboot-parts.js';

const at = (pairs: [number, string][]): StampedLine[] => pairs.map(([t, line]) => ({ t, line }));

describe('the netboot bench: parts from the sender and the consoles', () => {
  it('splits chunks into stamped lines, keeping a partial line for the next chunk, without escapes', () => {
    const state = { rest: '' };
    expect(
      newLines('\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1)\r\nzshield-rescue: net', state, 1.5),
    ).toEqual([{ t: 1.5, line: 'SeaBIOS (version 1)' }]);
    expect(newLines('work up: eth0\n\n', state, 2)).toEqual([
      { t: 2, line: 'zshield-rescue: network up: eth0' },
    ]);
    expect(state.rest).toBe('');
  });

  it('times each box from its first power line to its network, its stream from the last join, its reboot from the power line after it verified', () => {
    const sender = at([
      [9, 'box1: powered on'],
      [10, 'box2: powered on'],
      [30, 'receiver 198.18.0.171 joined (#0)'],
      [33, 'receiver 198.18.0.172 joined (#1)'],
      [160, 'box1: powered on'],
      [162, 'box2: powered on'],
    ]);
    const rescue = (net: number, end: number, ok: number, up: number) =>
      at([
        [net - 5, 'Booting from ROM...'],
        [net, 'zshield-rescue: network up: eth0 198.18.0.171/24 t=4.15'],
        [end, 'stream ended after 1.0 GiB of 1.0 GiB'],
        [ok, 'verified: all 256 chunks match the signed manifest'],
        [ok + 1, 'REPORT {"name":"box1","result":"verified"}'],
        [up, 'BENCH-READY port=/dev/vport2p1'],
      ]);
    const p = chainParts(
      sender,
      new Map([
        ['box1', rescue(20, 70, 150, 190)],
        ['box2', rescue(22, 72, 155, 200)],
      ]),
    );
    expect(p.allJoined).toBe(33);
    expect(p.allUp).toBe(200);
    expect(p.boxes[0]).toMatchObject({
      poweredOn: 9,
      networkUp: 20,
      received: 70,
      verified: 150,
      cycled: 160,
    });
    expect(p.perBox).toEqual([
      { name: 'box1', powerToNetwork: 11, stream: 37, verify: 80, reboot: 30 },
      { name: 'box2', powerToNetwork: 12, stream: 39, verify: 83, reboot: 38 },
    ]);
  });

  it('leaves a step it saw no marker of as null (a box that never came back)', () => {
    const p = chainParts(
      at([[5, 'box1: powered on']]),
      new Map([['box1', at([[12, 'zshield-rescue: network up: eth0']])]]),
    );
    expect(p.perBox[0]).toEqual({
      name: 'box1',
      powerToNetwork: 7,
      stream: null,
      verify: null,
      reboot: null,
    });
    expect(p.allUp).toBeNull();
  });
});
