/** The LV names zshield uses, from the config (the one place they are spelled). */
export interface SnapshotNames {
  vg: string;
  root: string;
  /** The restore point. */
  snap: string;
  /** The new snapshot's name until the old one is gone (a create-first rotation). */
  next: string;
  /** The image job's own temporary snapshot of lv-root; nothing else touches it. */
  image: string;
}

export function namesOf(config: { lvm: { vg: string; rootLv: string; snapshot: string } }): SnapshotNames {
  return {
    vg: config.lvm.vg,
    root: config.lvm.rootLv,
    snap: config.lvm.snapshot,
    next: `${config.lvm.snapshot}-next`,
    image: `${config.lvm.snapshot}-image`,
  };
}
