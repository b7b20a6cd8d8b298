#!/usr/bin/env bash
# Build the Debian package: build/out/zshield_<version>_amd64.deb, with dpkg-deb from a tree (no
# network, no tool outside Debian besides the repository's own node_modules). The version is
# package.json's; the binary is build/build.sh's (rebuilt here). What goes where: README "Install".
#   bash build/package.sh [--no-build]     --no-build: use the build/out/zshield already there
# Prints the .deb's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=build/out
deb_src=build/debian
build_binary=1
usage() { echo "usage: bash build/package.sh [--no-build]" >&2; }
# Exit codes: 0 the package is made (its path on the last line), 2 a usage error (nothing made),
# 1 anything else (the build, a version mismatch, dpkg-deb).
case "$#:${1:-}" in
0:) ;;
1:--no-build) build_binary=0 ;;
1:-h | 1:--help)
  sed -n '2,6s/^# \{0,1\}//p' "$root/build/package.sh"
  exit 0
  ;;
*)
  usage
  exit 2
  ;;
esac

version=$(node -p 'require("./package.json").version')
# A Debian version: package.json's, with a prerelease's "-" as "~" (sorts before the release).
deb_version=${version//-/\~}
# --no-build still rebuilds a missing binary or one older than a source it is made of.
if [ "$build_binary" = 0 ] && [ -x "$out/zshield" ] &&
  [ -z "$(find src rc grub package.json -newer "$out/zshield" -print -quit)" ]; then :; else
  bash build/build.sh >&2
fi
built=$("$out/zshield" --version)
[ "$built" = "$version" ] || { echo "package: $out/zshield is $built, package.json says $version" >&2; exit 1; }

tree=$(mktemp -d "${TMPDIR:-/tmp}/zshield-deb.XXXXXX")
trap 'rm -rf "$tree"' EXIT
umask 022
doc=$tree/usr/share/doc/zshield
install -d "$tree/DEBIAN" "$tree/usr/sbin" "$tree/lib/systemd/system" "$tree/etc/grub.d" \
  "$tree/etc/zshield" "$tree/etc/apt/apt.conf.d" "$doc/examples" "$tree/usr/share/man/man8" \
  "$tree/usr/share/bash-completion/completions" "$tree/usr/share/lintian/overrides"

install -m 0755 "$out/zshield" "$tree/usr/sbin/zshield"
ln -s zshield "$tree/usr/sbin/zshield_backup"
install -m 0644 rc/zshield.service rc/zshield-boot.service "$tree/lib/systemd/system/"
install -m 0755 grub/40_zshield "$tree/etc/grub.d/40_zshield"
# The config: the example with every default (README "Configuration"); the hook and the daemon do
# nothing until it names the system disk (disks.system.serial or .wwn).
install -m 0644 rc/zshield.conf.example "$tree/etc/zshield/zshield.conf"
install -m 0644 rc/zshield.apt.conf "$tree/etc/apt/apt.conf.d/80zshield"
install -m 0644 rc/rc.local.snippet rc/zshield-alerts.rules.yml "$doc/examples/"
install -m 0644 README.md "$doc/README.md"
gzip -9n "$doc/README.md"
install -m 0644 rc/README.md "$doc/README.rc.md"
install -m 0644 "$deb_src/copyright" "$doc/copyright"
# A native package's changelog: one entry for this version (its date: the last commit's, so that
# two builds of one commit are the same file).
when=$(git log -1 --format=%cD 2>/dev/null || date -R)
printf 'zshield (%s) unstable; urgency=medium\n\n  * Release %s (see README.md.gz).\n\n -- zshield maintainers <zshield@example.com>  %s\n' \
  "$deb_version" "$version" "$when" | gzip -9n >"$doc/changelog.gz"
install -m 0644 "$deb_src/lintian-overrides" "$tree/usr/share/lintian/overrides/zshield"

# Man page and bash completion from the command tree (build/manpage.ts).
gen=$tree/.gen
"$root/node_modules/.bin/tsx" build/manpage.ts "$gen"
gzip -9n <"$gen/zshield.8" >"$tree/usr/share/man/man8/zshield.8.gz"
chmod 0644 "$tree/usr/share/man/man8/zshield.8.gz"
ln -s zshield.8.gz "$tree/usr/share/man/man8/zshield_backup.8.gz"
install -m 0644 "$gen/zshield.bash-completion" "$tree/usr/share/bash-completion/completions/zshield"
ln -s zshield "$tree/usr/share/bash-completion/completions/zshield_backup"
rm -rf "$gen"

install -m 0644 "$deb_src/conffiles" "$tree/DEBIAN/conffiles"
install -m 0755 "$deb_src/postinst" "$deb_src/prerm" "$deb_src/postrm" "$tree/DEBIAN/"
size_kib=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
# The C and C++ libraries the Node runtime inside links against (dpkg-shlibdeps reads the ELF's
# symbol versions, as ${shlibs:Depends} would; it wants a debian/control beside it).
shlibs_dir=$tree/.shlibs
mkdir -p "$shlibs_dir/debian"
printf 'Source: zshield\n\nPackage: zshield\nArchitecture: amd64\n' >"$shlibs_dir/debian/control"
shlibs=$(cd "$shlibs_dir" && dpkg-shlibdeps -O -e "$tree/usr/sbin/zshield" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$shlibs_dir"
[ -n "$shlibs" ] || { echo "package: dpkg-shlibdeps found no library dependencies" >&2; exit 1; }
sed -e "s/@VERSION@/$deb_version/" -e "s/@INSTALLED_SIZE@/$size_kib/" -e "s/@SHLIBS@/$shlibs/" \
  "$deb_src/control.in" >"$tree/DEBIAN/control"
(cd "$tree" && find . -path ./DEBIAN -prune -o -type f -print | sed 's,^\./,,' | LC_ALL=C sort |
  xargs -d '\n' md5sum) >"$tree/DEBIAN/md5sums"
chmod 0644 "$tree/DEBIAN/md5sums" "$tree/DEBIAN/control"

deb=$out/zshield_${deb_version}_amd64.deb
# A temporary file of this run's own, renamed over the package: two runs at once (the gate's host
# tests and its systemd bench set-up do) each leave a whole package, and a reader of the old one
# keeps reading it. (One shared name had the second run's dpkg-deb write into the file the first
# had just renamed: "corrupt - bad archive header magic", then "cannot stat" for the second mv.)
tmp_deb=$(mktemp "$out/.zshield-deb.XXXXXX")
trap 'rm -rf "$tree" "$tmp_deb"' EXIT
# --root-owner-group: every file root:root without fakeroot; gzip: xz takes minutes for the 100 MB binary.
dpkg-deb --root-owner-group -Zgzip -z6 --build "$tree" "$tmp_deb" >/dev/null
chmod 0644 "$tmp_deb"
mv -f "$tmp_deb" "$deb"
echo "$deb"
