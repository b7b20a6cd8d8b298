#!/usr/bin/env bash
# Benchmarks: zshield against the plain tools doing the same work in the same run; prints ratios
# (medians of several rounds). All of them, in turn: image create/restore in the QEMU guest, remote
# copy and the history against the test's sshd on 127.0.0.1, cloning in network namespaces, and the
# netboot chain (QEMU boxes behind ipmi_sim BMCs, 1 then 2 at once) to every box's system up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash build/prepare.sh
export PATH="$PWD/node_modules/.bin:$PATH"
tsx build/bench.ts "$@"
tsx test/bench/remote-bench.ts
tsx test/bench/history-bench.ts
tsx test/bench/fleet-bench.ts
tsx build/clone-bench.ts
tsx test/bench/netboot-bench.ts
