// Bundle the TypeScript for the single executable (build/build.sh): the program in dist/zshield.cjs,
// and each large library only some commands need in a bundle of its own, dist/vendor/NAME.cjs.
//   node build/bundle.mjs VERSION
// Why the split: every start of the binary copies, decodes and compiles the bundle's whole text, and
// the daemon keeps that text in its heap for as long as it lives. ssh2 (remote copy, history targets),
// the AWS SDK (S3 targets) and systeminformation (the disk probe) were more than half of it; they
// are now loaded on the first `import()` that needs them (src/ssh/connect.ts, src/history/s3-client.ts,
// src/system/disks.ts), so `--version`, `--help` and an idle daemon never read them.
// In the bundle such an import is `require("./vendor/NAME.cjs")`: run by Node from dist/, that is the
// file beside it; in the binary, build/sea-main.cjs answers it from the SEA asset of the same name.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(import.meta.dirname, '..');
const version = process.argv[2];
if (!version) {
  process.stderr.write('usage: node build/bundle.mjs VERSION\n');
  process.exit(2);
}

/** The libraries bundled apart: the name src/ imports, and the vendor file's name. */
const VENDORS = {
  ssh2: 'ssh2',
  '@aws-sdk/client-s3': 'aws-s3',
  systeminformation: 'systeminformation',
};

const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node22',
  // ssh2's optional native addons (*.node) cannot live in a bundle: left external, their require()
  // fails inside a try and ssh2 uses Node's own crypto instead.
  external: ['*.node'],
  // ESM-only packages (execa, yargs) bundle fine into CJS, but import.meta.url is empty there and
  // yargs needs it for createRequire: define it from __filename in a banner.
  define: { 'import.meta.url': '__zshield_import_meta_url', __ZSHIELD_VERSION__: JSON.stringify(version) },
  banner: { js: 'const __zshield_import_meta_url = require("url").pathToFileURL(__filename).href;' },
  // Whitespace and syntax only: names stay as written (errors and classes keep theirs).
  minifyWhitespace: true,
  minifySyntax: true,
  charset: 'ascii',
  logLevel: 'warning',
};

/**
 * Every import of a vendor library becomes a module of one line, `module.exports =
 * require("./vendor/NAME.cjs")`, whose require is left to run time. (Marking the library itself
 * external would keep `await import()` as it is, and Node's module loader, not the SEA's require,
 * would look for the file.)
 */
const vendorPlugin = {
  name: 'zshield-vendor',
  setup(b) {
    const names = Object.keys(VENDORS).map((n) => n.replace(/[/@-]/g, (c) => `\\${c}`));
    b.onResolve({ filter: new RegExp(`^(${names.join('|')})$`) }, (args) => ({
      path: args.path,
      namespace: 'zshield-vendor',
    }));
    b.onLoad({ filter: /.*/, namespace: 'zshield-vendor' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(`./vendor/${VENDORS[args.path]}.cjs`)});`,
      loader: 'js',
    }));
    b.onResolve({ filter: /^\.\/vendor\// }, (args) => ({ path: args.path, external: true }));
  },
};

/**
 * string-width (yargs' and cliui's, three copies) makes an `Intl.Segmenter` when it is loaded: ICU
 * then loads its break-iteration data, which was a third of a start on the host (17 ms of each
 * `--version`) and most of the ICU pages an idle daemon touched; only help text needs it. Made on
 * first use instead. The build fails if the line is not there (a new release: look again).
 */
const SEGMENTER = 'const segmenter = new Intl.Segmenter();';
const lazySegmenterPlugin = {
  name: 'zshield-lazy-segmenter',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/](.*[\\/])?string-width[\\/]index\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes(SEGMENTER)) throw new Error(`bundle: ${args.path} no longer has "${SEGMENTER}"`);
      const lazy =
        'let segmenterMade; const segmenter = { segment: (s) => (segmenterMade ??= new Intl.Segmenter()).segment(s) };';
      return { contents: text.replace(SEGMENTER, lazy), loader: 'js' };
    });
  },
};

/**
 * The bundle's text stays in V8's heap for as long as the process lives (functions are compiled
 * when first called): one byte a character when all of it is ASCII, two for every character once
 * one is not. `charset: 'ascii'` escapes strings and identifiers; esbuild leaves a few comments and
 * one regular expression of a dependency as they are: their characters are written as \uXXXX
 * escapes, which mean the same there.
 */
function asciiOnly(file) {
  const text = readFileSync(file, 'utf8').replace(
    /[^\x00-\x7f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  writeFileSync(file, text);
}

const dist = path.join(root, 'dist');
rmSync(path.join(dist, 'vendor'), { recursive: true, force: true });
const main = path.join(dist, 'zshield.cjs');
await build({
  ...common,
  entryPoints: [path.join(root, 'src/index.ts')],
  outfile: main,
  plugins: [vendorPlugin, lazySegmenterPlugin],
});
asciiOnly(main);
// The form the binary can answer (build/sea-main.cjs): a require of each vendor file, no import().
const text = readFileSync(main, 'utf8');
for (const file of Object.values(VENDORS)) {
  if (!text.includes(`require("./vendor/${file}.cjs")`))
    throw new Error(`bundle: no require of vendor/${file}.cjs`);
}
if (/import\(\s*"\.\/vendor\//.test(text)) throw new Error('bundle: a vendor file is loaded by import()');
for (const [name, file] of Object.entries(VENDORS)) {
  const out = path.join(dist, 'vendor', `${file}.cjs`);
  await build({
    ...common,
    stdin: { contents: `module.exports = require(${JSON.stringify(name)});`, resolveDir: root, loader: 'js' },
    outfile: out,
  });
  asciiOnly(out);
}
// build/build.sh lists them for the binary's start-up check.
process.stdout.write(`${Object.values(VENDORS).join(' ')}\n`);
