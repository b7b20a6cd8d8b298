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
