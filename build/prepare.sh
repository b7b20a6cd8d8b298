#!/usr/bin/env bash
# What the demo and the benchmarks need first: the packages (apt-get, npm ci), the single binary,
# and the QEMU bench with that binary in its golden root. Idempotent; fast when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
bash build/deps.sh
export PATH="$PWD/node_modules/.bin:$PATH"
bash build/build.sh
bash test/bench/setup.sh
