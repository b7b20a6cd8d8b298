import type { Command } from '../system/command.js';

/**
 * argv for udpcast's two programs (Debian package `udpcast`) and what their stderr says. The sender
 * reads the stream from stdin (header + image, joined by `cat`); the receiver writes it to stdout,
 * where zshield reads the header before anything is written.
 */

export interface SenderSettings {
  interface: string;
  portbase: number;
  minReceivers: number;
  maxWaitSeconds: number;
  startTimeoutSeconds: number;
  maxBitrate: string | null;
  retriesUntilDrop: number;
}

export function senderCommand(s: SenderSettings, onLine: Command['onLine']): Command {
  return {
    file: 'udp-sender',
    args: [
      '--nokbd',
      '--interface',
      s.interface,
      '--portbase',
      String(s.portbase),
      '--min-receivers',
      String(s.minReceivers),
      '--max-wait',
      String(s.maxWaitSeconds),
      '--start-timeout',
      String(s.startTimeoutSeconds),
      '--retries-until-drop',
      String(s.retriesUntilDrop),
      ...(s.maxBitrate ? ['--max-bitrate', s.maxBitrate] : []),
    ],
    // It makes every box that joins erase and write its disk: refused in a dry run.
    mutates: true,
    ...(onLine ? { onLine } : {}),
  };
}

export interface ReceiverSettings {
  interface: string;
  portbase: number;
  startTimeoutSeconds: number;
  receiveTimeoutSeconds: number;
}

export function receiverCommand(s: ReceiverSettings): Command {
  return {
    file: 'udp-receiver',
    args: [
      '--nokbd',
      '--interface',
      s.interface,
      '--portbase',
      String(s.portbase),
      '--start-timeout',
      String(s.startTimeoutSeconds),
      '--receive-timeout',
      String(s.receiveTimeoutSeconds),
    ],
    // It writes only to its stdout (a pipe into zshield): the target is written by zshield.
    mutates: false,
  };
}

export type SenderEvent =
  | { kind: 'joined'; address: string; slot: number }
  | { kind: 'dropped'; slot: number }
  | { kind: 'started' }
  | { kind: 'progress'; bytes: number; retransmits: number }
  | { kind: 'complete' };

/** One line of udp-sender's stderr (udpcast 20120424's wording). */
export function parseSenderLine(line: string): SenderEvent | null {
  const joined = /New connection from (\S+)\s+\(#(\d+)\)/.exec(line);
  if (joined) return { kind: 'joined', address: joined[1]!, slot: Number(joined[2]) };
  const dropped = /Dropping client #(\d+)/.exec(line);
  if (dropped) return { kind: 'dropped', slot: Number(dropped[1]) };
  if (/^Starting transfer/.test(line.trim())) return { kind: 'started' };
  const progress = /bytes=\s*([\d ]+?)\s+re-xmits=\s*(\d+)/.exec(line);
  if (progress) {
    return {
      kind: 'progress',
      bytes: Number(progress[1]!.replaceAll(' ', '')),
      retransmits: Number(progress[2]),
    };
  }
  if (/Transfer complete/.test(line)) return { kind: 'complete' };
  return null;
}
