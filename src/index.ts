import { invokedName, main } from './cli/main.js';

// The only process.exit in zshield: the code comes from the error type (see README "Exit codes").
main(process.argv.slice(2), invokedName()).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`zshield: internal error: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
