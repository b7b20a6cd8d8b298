/**
 * Which kernel modules the rescue loads, in which order: the network and disk drivers a box may
 * need, each with the modules it depends on, from the kernel's own modules.dep (what modprobe
 * reads; busybox's insmod in the rescue loads one file and knows no dependencies).
 */

/** virtio for the bench and for VMs; then the NICs and disk controllers common in appliances. */
export const NIC_MODULES = [
  'virtio_pci',
  'virtio_net',
  'e1000',
  'e1000e',
  'igb',
  'igc',
  'ixgbe',
  'i40e',
  'ice',
  'r8169',
  'tg3',
  'bnxt_en',
] as const;
export const DISK_MODULES = [
  'virtio_blk',
  'virtio_scsi',
  'sd_mod',
  'ahci',
  'nvme',
  'megaraid_sas',
  'mpt3sas',
  'hpsa',
] as const;

/** The names a box's network card can have a driver under: one of these found, or no rescue. */
const NETWORK_DRIVERS = new Set<string>(NIC_MODULES.filter((m) => m !== 'virtio_pci'));

export interface ModulePlan {
  /** Module files (relative to lib/modules/VERSION), dependencies first: insmod in this order. */
  load: string[];
  /** Asked for and built into the kernel: nothing to load. */
  builtin: string[];
  /** Asked for and not in this kernel at all (a driver for hardware this kernel does not support). */
  absent: string[];
}

/** A module's name as modprobe compares it: file name without .ko, '-' and '_' alike. */
export const moduleName = (file: string) =>
  (file.split('/').pop() ?? file).replace(/\.ko(\.(xz|zst|gz))?$/, '').replaceAll('-', '_');

/** modules.dep: "kernel/x/a.ko: kernel/y/b.ko kernel/z/c.ko" per line. */
export function parseModulesDep(text: string): Map<string, { file: string; deps: string[] }> {
  const out = new Map<string, { file: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const file = line.slice(0, colon).trim();
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    out.set(moduleName(file), { file, deps });
  }
  return out;
}

export function planModules(wanted: readonly string[], depText: string, builtinText: string): ModulePlan {
  const dep = parseModulesDep(depText);
  const builtin = new Set(builtinText.split('\n').filter(Boolean).map(moduleName));
  const byFile = new Map([...dep.values()].map((d) => [d.file, d]));
  const load: string[] = [];
  const plan: ModulePlan = { load, builtin: [], absent: [] };
  const visit = (file: string) => {
    if (load.includes(file)) return;
    for (const d of byFile.get(file)?.deps ?? []) visit(d);
    load.push(file);
  };
  for (const raw of wanted) {
    const name = moduleName(raw);
    const d = dep.get(name);
    if (d) visit(d.file);
    else if (builtin.has(name)) plan.builtin.push(name);
    else plan.absent.push(name);
  }
  return plan;
}

/** True when the plan gives the rescue at least one network driver. */
export function hasNetworkDriver(p: ModulePlan): boolean {
  return [...p.load.map(moduleName), ...p.builtin].some((m) => NETWORK_DRIVERS.has(m));
}
