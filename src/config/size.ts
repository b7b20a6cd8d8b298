/** Sizes in the config: "20%" (a share of lv-root, for snapshots), "10G", "512M", "2T", or bytes. */
export type SizeSpec = { kind: 'bytes'; bytes: number } | { kind: 'percent'; percent: number };

const UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
};

export function parseSize(text: string | number, allowPercent: boolean): SizeSpec | string {
  if (typeof text === 'number') {
    return Number.isInteger(text) && text > 0
      ? { kind: 'bytes', bytes: text }
      : 'must be a positive whole number of bytes';
  }
  const t = text.trim();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(t);
  if (pct) {
    if (!allowPercent) return 'a percentage is not allowed here';
    const percent = Number(pct[1]);
    return percent > 0 && percent <= 100 ? { kind: 'percent', percent } : 'percentage must be in (0, 100]';
  }
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?$/i.exec(t);
  if (!m) return `"${text}" is not a size (examples: 20%, 512M, 10G)`;
  const bytes = Math.round(Number(m[1]) * (UNITS[(m[2] ?? '').toUpperCase()] ?? 1));
  return bytes > 0 ? { kind: 'bytes', bytes } : 'size must be greater than zero';
}

export function resolveSize(spec: SizeSpec, wholeBytes: number): number {
  return spec.kind === 'bytes' ? spec.bytes : Math.ceil((wholeBytes * spec.percent) / 100);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? Math.round(v) : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}
