/**
 * The daemon capability's front door. Nothing in daemon/ is imported from outside the folder: what
 * status reads of the daemon (its info file, when the next daily backup is due) is in the shared
 * layer below the capabilities (state/daemon-info.ts, state/schedule.ts), and the command line
 * reaches the daemon through daemon/cli.ts.
 */
export {};
