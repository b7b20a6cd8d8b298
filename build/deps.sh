#!/usr/bin/env bash
# Install what building and testing zshield needs on a fresh Debian machine: node and npm (if
# absent), the npm packages (npm ci), and the tools the unit tests use. The appliance bench installs
# its own host packages (QEMU, LVM, GRUB, kernel) in test/bench/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "${missing[@]}"
  }
}

command -v npm >/dev/null 2>&1 || apt_install nodejs npm
# strip (binutils) for the single executable; rsync and util-linux for unit tests of real tools;
# restic for the history (the remote tests drive it against the two sshd).
apt_install binutils rsync util-linux ca-certificates grub-common restic
# udpcast and iproute2 for the host tests of multicast cloning (network namespaces, as root).
apt_install udpcast iproute2
# dpkg-dev (dpkg-shlibdeps) and lintian for the Debian package (build/package.sh, its host test).
apt_install dpkg-dev lintian
# promtool for the metrics tests, out of Debian's prometheus package (never installed: it starts a server).
bash build/promtool.sh >/dev/null

# npm ci only when node_modules does not match the lock file.
stamp=node_modules/.zshield-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  # The lock lists only the platform packages of @biomejs/biome that the registry serves here
  # (linux x64/arm64); should `npm ci` still refuse the lock, install from it rather than stop.
  npm ci --no-audit --no-fund || npm install --no-audit --no-fund
  cp package-lock.json "$stamp"
fi
