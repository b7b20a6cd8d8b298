#!/usr/bin/env bash
# The main job on a virtual appliance, told as it goes: installs what it needs (apt-get, npm ci, the
# QEMU bench with its kernel), builds the single binary, then runs build/demo.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash build/prepare.sh
export PATH="$PWD/node_modules/.bin:$PATH"
exec tsx build/demo.ts "$@"
