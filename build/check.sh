#!/usr/bin/env bash
# The one gate, run by developers and by CI (.ci/run): install, typecheck, lint, format check,
# build the single executable, unit tests, then the appliance tests in the QEMU bench.
#   bash build/check.sh            everything
#   bash build/check.sh --unit     skip the appliance tests
set -euo pipefail
cd "$(dirname "$0")/.."
bash build/deps.sh
# node_modules/.bin first: its `node` is the Node 22 that also runs inside the binary.
export PATH="$PWD/node_modules/.bin:$PATH"

step() { printf '\n== %s\n' "$*"; }
step "typecheck";     tsc --noEmit
step "lint";          biome lint src test build
step "format check";  biome format src test build
step "dependencies";  node build/deps-check.mjs
step "docs";          tsx build/docs.ts --check   # README's generated tables match the code
step "build";         bash build/build.sh

results=$(mktemp -d)
step "unit tests"
vitest run --project unit --reporter=default --reporter=json --outputFile.json="$results/unit.json"
step "remote tests (OpenSSH on 127.0.0.1)"
vitest run --project remote --reporter=default --reporter=json --outputFile.json="$results/remote.json"
step "host tests (multicast cloning in network namespaces)"
vitest run --project host --reporter=default --reporter=json --outputFile.json="$results/host.json"
rc=0
if [ "${1:-}" != "--unit" ]; then
  # Two lanes, one guest each, when there are two cores (a TCG guest keeps one core busy): the
  # recovery scenarios (the longest file: guest reboots through GRUB) beside all the others.
  # Each lane's lines carry its name.
  lane() {
    local name=$1; shift
    vitest run --project appliance --reporter=default --reporter=json \
      --outputFile.json="$results/appliance-$name.json" "$@" 2>&1 | sed -u "s/^/[$name] /"
  }
  others=()
  for f in test/appliance/*.test.ts; do
    [ "$f" = test/appliance/recovery.test.ts ] || others+=("$f")
  done
  if [ "$(nproc)" -ge 2 ]; then
    step "appliance tests (QEMU bench, two guests at a time)"
    lane recovery test/appliance/recovery.test.ts & a=$!
    lane others "${others[@]}" & b=$!
    wait "$a" || rc=1
    wait "$b" || rc=1
  else
    step "appliance tests (QEMU bench)"
    lane all test/appliance/ || rc=1
  fi
fi
node -e '
  let p = 0, f = 0, s = 0;
  for (const file of process.argv.slice(1)) {
    const r = JSON.parse(require("fs").readFileSync(file, "utf8"));
    p += r.numPassedTests; f += r.numFailedTests; s += r.numPendingTests + (r.numTodoTests || 0);
  }
  console.log(`\n${p} passed, ${f} failed, ${s} skipped`);
' "$results"/*.json
exit "$rc"
