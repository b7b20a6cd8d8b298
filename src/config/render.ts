import type { Config } from './schema.js';
import type { SizeSpec } from './size.js';

function sizeText(s: SizeSpec): string | number {
  if (s.kind === 'percent') return `${s.percent}%`;
  for (const [unit, n] of [
    ['T', 1024 ** 4],
    ['G', 1024 ** 3],
    ['M', 1024 ** 2],
    ['K', 1024],
  ] as const) {
    if (s.bytes % n === 0) return `${s.bytes / n}${unit}`;
  }
  return s.bytes;
}

/** The config in the file's own form (what `config show` prints and `config check` accepts). */
export function renderConfig(config: Config): unknown {
  return {
    ...config,
    snapshot: { ...config.snapshot, size: sizeText(config.snapshot.size) },
    daemon: { ...config.daemon, dailyAt: config.daemon.dailyAt.text },
    disks: {
      ...config.disks,
      system: { ...config.disks.system, minSize: sizeText(config.disks.system.minSize) },
    },
    layout: {
      bootSize: sizeText(config.layout.bootSize),
      volumes: config.layout.volumes.map((v) => ({ ...v, size: sizeText(v.size) })),
    },
    image: { ...config.image, tempSnapshotSize: sizeText(config.image.tempSnapshotSize) },
    history: { ...config.history, tempSnapshotSize: sizeText(config.history.tempSnapshotSize) },
  };
}
