/**
 * The network rescue's names, shared by `clone rescue make` (which writes them), `clone send
 * --netboot` (which serves them) and the rescue's /init (rc/rescue-init, which uses the same
 * words: a test checks they agree).
 */

/** The files of a rescue folder. */
export const RESCUE_FILES = {
  kernel: 'vmlinuz',
  initramfs: 'initramfs.img',
  zshield: 'zshield',
  manifest: 'rescue.json',
} as const;

/** Kernel command-line keys the iPXE answer passes to the rescue. */
export const RESCUE_CMDLINE = { server: 'zshield.server', mac: 'zshield.mac' } as const;

/** HTTP paths of the netboot server (each followed by /MAC where it is per box). */
export const NETBOOT_PATHS = {
  /** The iPXE script for a box: the rescue while it has to receive, its local disk afterwards. */
  ipxe: '/netboot/ipxe',
  /** The receive's instructions (JSON: name, disk, session, portbase). */
  instructions: '/netboot/instructions',
  /** What the rescue does when the receive ended: poweroff or reboot. */
  after: '/netboot/after',
  /** The rescue failed before zshield ran (POST, the reason as text). */
  failed: '/netboot/failed',
  /** The rescue's files, by their names in RESCUE_FILES. */
  rescue: '/rescue',
} as const;

/** rescue.json: what was put in the rescue, so the server checks what it serves. */
export interface RescueManifest {
  kernelVersion: string;
  kernelSha256: string;
  initramfsSha256: string;
  initramfsBytes: number;
  zshieldSha256: string;
  zshieldBytes: number;
  trustedKeys: string[];
  modules: string[];
  absentModules: string[];
}

/** What the rescue's `clone receive --instructions URL` gets for its MAC. */
export interface RescueInstructions {
  name: string;
  mac: string;
  /** Serial or WWN of the disk to write. */
  disk: string;
  session: string;
  portbase: number;
}
