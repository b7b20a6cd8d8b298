#!/usr/bin/env bash
# The one gate, run by developers and by CI (.ci/run): install, typecheck, lint, format check,
# build the single executable, unit and host tests (the QEMU bench built beside them), then the
# remote tests beside the appliance tests in the QEMU bench.
#   bash build/check.sh            everything
#   bash build/check.sh --unit     skip the appliance tests
set -euo pipefail
cd "$(dirname "$0")/.."

# Room first: with too little free disk the guests' writes fail half-way through the run. The gate
# at its fullest (a fresh clone, 2026-11-29): node_modules, the build, the QEMU bench with its
# systemd flavour and one scenario's disks per lane took 5.2 GiB (each appliance file's disks go
# when it ends); apt's and npm's downloads on a new machine come on top.
room_needed_mib=6144
[ "${1:-}" = "--unit" ] && room_needed_mib=1024
room_mib=$(df --output=avail -BM . | tail -n 1 | tr -dc 0-9)
if [ "$room_mib" -lt "$room_needed_mib" ]; then
  echo "check.sh: the gate needs about $((room_needed_mib / 1024)) GiB free where the checkout is; $PWD has $room_mib MiB free" >&2
  exit 1
fi
echo "free disk where the checkout is: $((room_mib / 1024)) GiB (the gate needs about $((room_needed_mib / 1024)) GiB)"
bash build/deps.sh
# node_modules/.bin first: its `node` is the Node 22 that also runs inside the binary.
export PATH="$PWD/node_modules/.bin:$PATH"

step() { printf '\n== %s\n' "$*"; }
step "typecheck";     tsc --noEmit
step "lint";          biome lint src test build
step "format check";  biome format src test build
step "dependencies";  node build/deps-check.mjs
step "sizes";         node build/size-check.mjs   # files over 400 lines, functions over 80: ratchets
step "docs";          tsx build/docs.ts --check   # README's generated tables match the code
step "build";         bash build/build.sh

results=$(mktemp -d)
appliance=yes
[ "${1:-}" = "--unit" ] && appliance=no
# Lines of a part that runs beside another carry its name.
tagged() {
  local name=$1 project=$2; shift 2
  vitest run --project "$project" --reporter=default --reporter=json \
    --outputFile.json="$results/$name.json" "$@" 2>&1 | sed -u "s/^/[$name] /"
}
rc=0
setup=
if [ "$appliance" = yes ]; then
  # The QEMU bench (host packages, kernel, guest trees, the systemd flavour when a gate file boots
  # it) is built beside the unit and host tests: mostly downloads and file copies.
  flavour=
  if grep -lq "ensureBench('systemd')" test/appliance/*.test.ts 2>/dev/null; then flavour=systemd; fi
  step "QEMU bench setup (beside the unit and host tests; log: $results/bench-setup.log)"
  bash test/bench/setup.sh $flavour >"$results/bench-setup.log" 2>&1 & setup=$!
fi
step "unit tests"
vitest run --project unit --reporter=default --reporter=json --outputFile.json="$results/unit.json" || rc=1
step "host tests (multicast cloning in network namespaces)"
vitest run --project host --reporter=default --reporter=json --outputFile.json="$results/host.json" || rc=1
if [ "$appliance" = no ]; then
  step "remote tests (OpenSSH on 127.0.0.1)"
  vitest run --project remote --reporter=default --reporter=json --outputFile.json="$results/remote.json" || rc=1
  step "command contract (every command as the built binary: help, usage, dry run, --json; build/package.sh; the apt hook)"
  vitest run --project contract --reporter=default --reporter=json --outputFile.json="$results/contract.json" || rc=1
else
  if ! wait "$setup"; then
    tail -n 40 "$results/bench-setup.log"
    echo "QEMU bench setup failed (log above)" >&2
    exit 1
  fi
  # Three parts side by side: the remote tests (mostly waiting on sshd and the network: about a
  # tenth of a core) and two lanes with one guest each (a TCG guest keeps a core busy), of about
  # equal length (minutes from the last gate run): the boot paths through the golden medium and
  # the image tests in the first (recovery 7, systemd 6, golden update 3, image 3, image cut,
  # history, foreign VG 1 each), the rest in the second (history over the network 5, the netboot
  # chain about 4 with two guests of its own, rotation cuts, backup 3 each, clone over multicast,
  # boot menu, the bench's self-test 2 each). A new file goes to the second.
  first=(recovery systemd golden-update image image-cut history foreign-vg)
  first=("${first[@]/#/test/appliance/}")
  first=("${first[@]/%/.test.ts}")
  others=()
  for f in test/appliance/*.test.ts; do
    case " ${first[*]} " in *" $f "*) ;; *) others+=("$f") ;; esac
  done
  # Before the parts side by side: two of them would install host packages at once (dpkg's lock).
  step "host packages of the remote tests and the RGW"
  tsx test/remote/install-packages.ts
  step "remote tests (OpenSSH on 127.0.0.1) beside the appliance tests (QEMU bench)"
  pids=()
  tagged remote remote & pids+=($!)
  # The command contract beside them: the built binary in worlds of files and stand-in tools.
  tagged contract contract & pids+=($!)
  if [ "$(nproc)" -ge 2 ]; then
    tagged recovery appliance "${first[@]}" & pids+=($!)
    tagged others appliance "${others[@]}" & pids+=($!)
  else
    tagged appliance appliance test/appliance/ & pids+=($!)
  fi
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
fi
# The last lines name every failed case and the first lines of its error, so that a
# log cut to its tail (CI keeps only the end) still says what failed.
node -e '
  let p = 0, f = 0, s = 0;
  const failed = [];
  for (const file of process.argv.slice(1)) {
    const r = JSON.parse(require("fs").readFileSync(file, "utf8"));
    p += r.numPassedTests; f += r.numFailedTests; s += r.numPendingTests + (r.numTodoTests || 0);
    for (const suite of r.testResults ?? []) {
      const where = require("path").relative(process.cwd(), suite.name);
      if (suite.status === "failed" && suite.assertionResults.every((a) => a.status !== "failed")) {
        failed.push(`${where}: ${String(suite.message ?? "the file failed").split("\n").slice(0, 6).join("\n    ")}`);
      }
      for (const a of suite.assertionResults ?? []) {
        if (a.status !== "failed") continue;
        const why = (a.failureMessages ?? []).join("\n").split("\n").slice(0, 6).join("\n    ");
        failed.push(`${where} > ${a.fullName}\n    ${why}`);
      }
    }
  }
  if (failed.length > 0) console.log(`\nfailed:\n${failed.map((x) => `- ${x}`).join("\n")}`);
  console.log(`\n${p} passed, ${f} failed, ${s} skipped`);
' "$results"/*.json
exit "$rc"
