/** What `zshield golden update` and the golden medium's boot hook agree on (the one place spelled). */

/** Kernel command-line key of the update boot: `zshield boot` runs the handed-in command. */
export const UPDATE_CMDLINE_KEY = 'zshield_update';
/** Virtio serial of the small disk that carries the request in and the result out. */
export const HANDOFF_SERIAL = 'ZSHIELD-UPDATE';
/** Console line the proof boot's boot hook prints, followed by the request's nonce. */
export const PROOF_MARKER = 'ZSHIELD-GOLDEN-PROOF';
