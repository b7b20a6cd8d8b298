'use strict';
// The single executable's first script (build/build.sh makes it the SEA's main). It runs the bundle
// (dist/zshield.cjs, a SEA asset) with a V8 code cache taken at build time after a warm-up run of
// the bundle, so the functions a command start needs come compiled: Node's own `useCodeCache`
// caches only what V8 compiles before running, and under emulation (the QEMU bench, TCG) compiling
// the rest was most of a start. A cache V8 rejects (another V8, other flags) is ignored by V8 and
// the bundle compiles as without it: slower, never different.
//
// At build time the same file makes the cache, with the Node the binary is made from:
//   node build/sea-main.cjs --make-cache BUNDLE CACHE -- ARGS... [-- ARGS...]
// runs BUNDLE with each ARGS in turn (the warm-up), then writes the cache at the last one's exit.
const vm = require('node:vm');

/** The bundle as one function of CommonJS's five names: the same text here and at build time. */
function compile(source, cachedData) {
  const wrapped = `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
  // import() of a built-in (the bundle keeps `await import('node:fs')` as it is) goes to Node's own
  // loader, as it does in a script Node runs itself.
  const importModuleDynamically = vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  return new vm.Script(wrapped, { filename: 'zshield.cjs', cachedData, importModuleDynamically });
}

/**
 * The require the bundle gets. `loadVendor(file)` gives the text of a library bundled apart
 * (build/bundle.mjs): the bundle's `require("./vendor/NAME.cjs")` runs that text once, as CommonJS,
 * and keeps its exports; any other name goes to `baseRequire` (in the binary, Node's built-in
 * modules only).
 */
function bundleRequire(baseRequire, loadVendor) {
  const vendors = new Map();
  return (id) => {
    if (!id.startsWith('./vendor/')) return baseRequire(id);
    let m = vendors.get(id);
    if (m === undefined) {
      m = { exports: {} };
      const fn = new vm.Script(
        `(function (exports, require, module, __filename, __dirname) {${loadVendor(id)}\n})`,
        { filename: id.slice(2), importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER },
      ).runInThisContext();
      fn(m.exports, baseRequire, m, __filename, __dirname);
      vendors.set(id, m);
    }
    return m.exports;
  };
}

function run(script, req) {
  const bundleModule = { exports: {} };
  script.runInThisContext()(bundleModule.exports, req, bundleModule, __filename, __dirname);
}

if (process.argv[2] === '--make-cache') {
  const fs = require('node:fs');
  const [bundle, cacheFile, sep, ...rest] = process.argv.slice(3);
  if (!bundle || !cacheFile || sep !== '--') {
    process.stderr.write(
      'usage: node build/sea-main.cjs --make-cache BUNDLE CACHE -- ARGS... [-- ARGS...]\n',
    );
    process.exit(2);
  }
  const runs = rest
    .join('\0')
    .split('\0--\0')
    .map((r) => r.split('\0'));
  const script = compile(fs.readFileSync(bundle, 'utf8'));
  const path = require('node:path');
  const loadVendor = (id) => fs.readFileSync(path.join(path.dirname(bundle), id), 'utf8');
  const exit = process.exit;
  const next = () => {
    process.argv = [process.argv[0], bundle, ...runs.shift()];
    run(script, bundleRequire(require, loadVendor));
  };
  // Each run ends in the bundle's process.exit: the next run starts there, the last writes the cache.
  process.exit = (code) => {
    if (code !== 0 && code !== undefined) {
      process.stderr.write(`sea-main: warm-up run ${process.argv.slice(2).join(' ')} exited ${code}\n`);
      exit(1);
    }
    if (runs.length > 0) return next();
    fs.writeFileSync(cacheFile, script.createCachedData());
    exit(0);
  };
  next();
} else {
  const sea = require('node:sea');
  // V8 takes a cache only under the flags it was made with: the daemon's unit sets heap limits in
  // NODE_OPTIONS, and its cache was made under those (build/build.sh); anything else gets the bare one.
  const unit = /^Environment="NODE_OPTIONS=([^"]*)"$/m.exec(sea.getAsset('rc/zshield.service', 'utf8'));
  const daemon = unit !== null && (process.env.NODE_OPTIONS ?? '').trim() === unit[1].trim();
  const cache = daemon ? 'zshield-daemon.cache' : 'zshield.cache';
  const script = compile(sea.getAsset('zshield.cjs', 'utf8'), Buffer.from(sea.getAsset(cache)));
  // build/build.sh starts the new binary once with this set: a rejected cache fails the build.
  if (process.env.ZSHIELD_BUILD_CACHE_CHECK === '1' && script.cachedDataRejected) {
    process.stderr.write('zshield: the code cache was rejected by this binary\n');
    process.exit(70);
  }
  const req = bundleRequire(require, (id) => sea.getAsset(id.slice(2), 'utf8'));
  // build/build.sh starts the new binary once with this set to the vendor files' names: each loads.
  const vendorCheck = process.env.ZSHIELD_BUILD_VENDOR_CHECK;
  if (vendorCheck) {
    for (const name of vendorCheck.split(' ')) req(`./vendor/${name}.cjs`);
    process.exit(0);
  }
  run(script, req);
}
