/**
 * The recovery capability's front door. The entry points: factory reset (reset.ts), restore latest
 * (restore-latest.ts), the boot-time resume after a power cut (resume.ts), each one plan run by
 * runPlan (golden prepare's is golden/prepare-run.ts). And the pieces other capabilities build a recovery
 * from (history's reset to a fingerprint): the system's /boot as a recovery finds it, putting it
 * back from the copy captured in a root, the event log (read by status), and the probe of the VG.
 * Nothing else in recovery/ is imported from outside the folder.
 */
export { type BootFs, bootCheck, describeBoot } from './boot-fs.js';
export { readEvents, type RecoveryEvent } from '../state/events.js';
export { putBack } from './finish.js';
export type { ConfirmOptions } from './options.js';
export { eventStep } from './record.js';
export { type FactoryOptions, runFactoryReset } from './reset.js';
export { probeRestore, runRestore } from './restore-latest.js';
export { resumeInterrupted } from './resume.js';
