/**
 * The recovery entry points, for the CLI (recovery/cli.ts): factory reset (reset.ts), restore
 * latest (restore-run.ts), the boot-time resume after a power cut (resume.ts). Each is one plan run
 * by runPlan. Golden prepare's is golden/run.ts.
 */
export { readCmdline } from './cmdline.js';
export type { ConfirmOptions } from './options.js';
export { type FactoryOptions, runFactoryReset } from './reset.js';
export { runRestore } from './restore-run.js';
export { resumeInterrupted } from './resume.js';

/**
 * The pieces other capabilities build a recovery from (history's reset to a fingerprint): the
 * system's /boot as a recovery finds it, putting it back from the copy captured in a root, the
 * event log, and the probe of the VG. Imported from here, not from the files that hold them.
 */
export { type BootFs, bootCheck, describeBoot } from './boot-fs.js';
export { putBack } from './finish.js';
export { eventStep } from './record.js';
export { probeRestore } from './restore-run.js';
