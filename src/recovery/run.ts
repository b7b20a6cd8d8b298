// recovery/cli.ts still imports its entry points from here; once it imports './index.js' (the typed
// command line, issue 22 item 4), this file goes.
export * from './index.js';
