#!/usr/bin/env bash
# Benchmarks: zshield against the plain tools, in the same guest run; prints ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
bash build/prepare.sh
export PATH="$PWD/node_modules/.bin:$PATH"
tsx build/bench.ts "$@"
[ -f test/bench/remote-bench.ts ] && tsx test/bench/remote-bench.ts
