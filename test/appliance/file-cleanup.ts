// Runs with every appliance test file (vitest setupFiles): when the file ends, after its own
// afterAll hooks have stopped its guests (hooks run in reverse order of registration, and this one
// is registered first), its scenario folders lose their disks and keep their logs. A gate on a
// machine with little free disk then needs room for one scenario per lane at a time.
import { afterAll } from 'vitest';
import { emptyAllButLogs, scenarioDirs } from './lib.js';

afterAll(() => {
  for (const dir of scenarioDirs) emptyAllButLogs(dir);
  scenarioDirs.clear();
});
