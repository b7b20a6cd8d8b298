import type { Config } from './schema.js';
import type { SizeSpec } from './size.js';

const sizeText = (s: SizeSpec): string | number => (s.kind === 'percent' ? `${s.percent}%` : s.bytes);

/** The config in the file's own form (what `config show` prints and `config check` accepts). */
export function renderConfig(config: Config): unknown {
  return {
    ...config,
    snapshot: { ...config.snapshot, size: sizeText(config.snapshot.size) },
    daemon: { ...config.daemon, dailyAt: config.daemon.dailyAt.text },
    disks: { ...config.disks, system: { ...config.disks.system, minSize: sizeText(config.disks.system.minSize) } },
    layout: {
      bootSize: sizeText(config.layout.bootSize),
      volumes: config.layout.volumes.map((v) => ({ ...v, size: sizeText(v.size) })),
    },
  };
}
