// The netboot chain's parts, read from what the bench keeps of a run: the sender's lines and each
// box's serial console, every line stamped (seconds after `clone send --netboot` started) when the
// bench first saw it. Neither clone send's table nor the rescue's report gives wall-clock times of
// a box's boots, so the consoles are the clock. A console holds every boot of its box in order (the
// rescue, then the system from disk), so each marker is its first line after the one before.

/** A line and when the bench first saw it, in seconds after clone send started. */
export interface StampedLine {
  t: number;
  line: string;
}

/** What marks each step: the sender's lines (src/clone) and the rescue's and the system's console lines. */
export const MARKERS = {
  /** Sender: a box powered (or cycled); the first is its start, the next the cycle after it verified. */
  power: (box: string) => new RegExp(`^${box}: (powered on|power cycled)$`),
  /** Sender: udp-sender saw a receiver join; the stream starts once all listed have. */
  joined: /^receiver \S+ joined/,
  /** Rescue console: its network is configured (DHCP done, before zshield is fetched). */
  networkUp: 'zshield-rescue: network up',
  /** Receiver console: the multicast stream ended (the last byte received). */
  received: 'stream ended after',
  /** Receiver console: the read-back matched the signed manifest (or its report, when repaired). */
  verified: /^verified: all \d+ chunks|^REPORT \{/,
  /** The bench system's agent, started from the box's disk. */
  systemUp: 'BENCH-READY',
} as const;

export interface BoxTimes {
  name: string;
  poweredOn: number | null;
  networkUp: number | null;
  received: number | null;
  verified: number | null;
  /** The power cycle (or power on) after it verified. */
  cycled: number | null;
  systemUp: number | null;
}

export interface ChainParts {
  boxes: BoxTimes[];
  /** The last receiver joined (the stream starts). */
  allJoined: number | null;
  /** Every box's system up from its disk. */
  allUp: number | null;
  /** Per box, in seconds: power on to rescue network up, stream, verify, reboot. */
  perBox: {
    name: string;
    powerToNetwork: number | null;
    stream: number | null;
    verify: number | null;
    reboot: number | null;
  }[];
}

const matches = (m: string | RegExp, line: string) =>
  typeof m === 'string' ? line.includes(m) : m.test(line);

/** The first line at or after `from` that matches, or null. */
function firstAfter(lines: readonly StampedLine[], m: string | RegExp, from: number | null): number | null {
  if (from === null) return null;
  return lines.find((l) => l.t >= from && matches(m, l.line))?.t ?? null;
}

const diff = (a: number | null, b: number | null) => (a === null || b === null ? null : b - a);
const lastOf = (xs: (number | null)[]) =>
  xs.length > 0 && xs.every((x) => x !== null) ? Math.max(...(xs as number[])) : null;

export function chainParts(
  sender: readonly StampedLine[],
  consoles: ReadonlyMap<string, readonly StampedLine[]>,
): ChainParts {
  const joins = sender.filter((l) => MARKERS.joined.test(l.line));
  const allJoined = joins.at(-1)?.t ?? null;
  const boxes = [...consoles].map(([name, lines]): BoxTimes => {
    const power = sender.filter((l) => MARKERS.power(name).test(l.line.trim()));
    const poweredOn = power[0]?.t ?? null;
    const networkUp = firstAfter(lines, MARKERS.networkUp, poweredOn);
    const received = firstAfter(lines, MARKERS.received, networkUp);
    const verified = firstAfter(lines, MARKERS.verified, received);
    const cycled = verified === null ? null : (power.find((l) => l.t >= verified)?.t ?? null);
    return {
      name,
      poweredOn,
      networkUp,
      received,
      verified,
      cycled,
      systemUp: firstAfter(lines, MARKERS.systemUp, cycled),
    };
  });
  return {
    boxes,
    allJoined,
    allUp: lastOf(boxes.map((b) => b.systemUp)),
    perBox: boxes.map((b) => ({
      name: b.name,
      powerToNetwork: diff(b.poweredOn, b.networkUp),
      stream: diff(allJoined, b.received),
      verify: diff(b.received, b.verified),
      reboot: diff(b.cycled, b.systemUp),
    })),
  };
}

/**
 * The complete lines of a stream's next chunk, stamped `t` (a partial last line waits in
 * `state.rest` for the next chunk). Serial consoles hold carriage returns and terminal escapes:
 * both removed.
 */
export function newLines(chunk: string, state: { rest: string }, t: number): StampedLine[] {
  const parts = (state.rest + chunk).split('\n');
  state.rest = parts.pop() ?? '';
  return parts
    .map((line) => line.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1bc|\r/g, '').trim())
    .filter((line) => line.length > 0)
    .map((line) => ({ t, line }));
}
