/**
 * The recovery entry points, for the CLI: factory reset (reset.ts), restore latest
 * (restore-run.ts), the boot-time resume after a power cut (resume.ts). Each is one plan run by
 * runPlan. runGoldenPrepare lives in golden/run.ts; it is re-exported here only until the CLI
 * imports it from there.
 */
export { readCmdline } from './cmdline.js';
export type { ConfirmOptions } from './options.js';
export { type FactoryOptions, runFactoryReset } from './reset.js';
export { runRestore } from './restore-run.js';
export { resumeInterrupted } from './resume.js';
export { runGoldenPrepare } from '../golden/run.js';
