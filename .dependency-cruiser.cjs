// dependency-cruiser: the import graph of src/ (static, dynamic and type-only imports alike),
// read by build/deps-check.mjs, which fails the gate on any circle between files or folders and on
// system/ or names/ importing a capability.
module.exports = {
  forbidden: [
    { name: 'no-file-circles', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'system-imports-no-capability',
      severity: 'error',
      from: { path: '^src/(system|names)/' },
      to: { path: '^src/', pathNot: '^src/(system|names|errors\\.ts|log/)' },
    },
    {
      name: 'names-is-a-leaf',
      severity: 'error',
      from: { path: '^src/names/' },
      to: { path: '^src/', pathNot: '^src/names/' },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    exclude: { path: 'node_modules' },
  },
};
