#!/usr/bin/env bash
# promtool for the metrics tests (`promtool check metrics`, `promtool check rules`), taken out of
# Debian's prometheus package with dpkg-deb -x: installing that package would start a Prometheus
# server. Idempotent; prints promtool's path. build/deps.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$PWD/build/out/tools
tool=$dir/promtool
if [ ! -x "$tool" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/zshield-promtool.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # apt-get download writes to the current folder; as root it warns that _apt cannot read it.
  (cd "$work" && apt-get download prometheus >/dev/null 2>&1) ||
    (apt-get update >/dev/null && cd "$work" && apt-get download prometheus >/dev/null)
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  mkdir -p "$dir"
  install -m 0755 "$work/x/usr/bin/promtool" "$tool"
fi
echo "$tool"
