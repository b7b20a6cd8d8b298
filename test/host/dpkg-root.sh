#!/usr/bin/env bash
# Install, reinstall (upgrade), remove and purge zshield's package with the real dpkg and the
# package's real maintainer scripts, in a throwaway root: an overlay of this host's / (its writes
# go to a folder that is removed afterwards), in a mount namespace of its own. Run by
# test/host/package.test.ts as `unshare -m --propagation private bash dpkg-root.sh DEB OUT`; after
# each step it lists what the test checks into OUT/<step>.txt.
set -euo pipefail
deb=$1 out=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/zshield-dpkg-root.XXXXXX")
trap 'umount -l "$work/root" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/upper" "$work/work" "$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$work/root"
root=$work/root
# A box as the package meets it: no zshield of its own, no systemd running (this root has no
# /run/systemd/system: units are enabled, nothing started), no golden medium named.
rm -rf "$root/etc/zshield" "$root/var/lib/zshield" "$root/run/systemd" "$root/etc/default/zshield-grub"

snapshot() {
  local step=$1
  {
    for p in usr/sbin/zshield usr/sbin/zshield_backup etc/zshield/zshield.conf etc/apt/apt.conf.d/80zshield \
      etc/grub.d/40_zshield lib/systemd/system/zshield.service var/lib/zshield var/log/zshield \
      etc/systemd/system/multi-user.target.wants/zshield.service \
      etc/systemd/system/multi-user.target.wants/zshield-boot.service; do
      if [ -L "$root/$p" ]; then echo "$p link $(readlink "$root/$p")"
      elif [ -e "$root/$p" ]; then echo "$p $(stat -c %a "$root/$p")"
      else echo "$p absent"; fi
    done
    echo "status $(dpkg --root="$root" -s zshield 2>/dev/null | sed -n 's/^Status: //p')"
    echo "config $({ tr -d '\n ' <"$root/etc/zshield/zshield.conf"; } 2>/dev/null | head -c 40)"
  } >"$out/$step.txt"
}

dpkg --root="$root" --force-depends -i "$deb" >"$out/install.log" 2>&1
snapshot installed
# apt runs the package's hook (DPkg::Pre-Invoke) before dpkg: here, in a chroot, it takes no backup
# and says why in zshield's log. A local package of nothing, installed twice (one hook run per apt
# run that calls dpkg). apt needs /dev; /proc stays unmounted (an image being built).
mount --rbind /dev "$root/dev"
dummy=$work/dummy
mkdir -p "$dummy/DEBIAN"
printf 'Package: zshield-test-dummy\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.com>\nDescription: test\n' \
  >"$dummy/DEBIAN/control"
dpkg-deb --root-owner-group --build "$dummy" "$root/tmp/dummy.deb" >/dev/null
for i in 1 2; do
  chroot "$root" apt-get install -y --reinstall /tmp/dummy.deb >"$out/apt-$i.log" 2>&1
  grep -c "apt hook" "$root/var/log/zshield/zshield.log" >"$out/apt-hook-count-$i.txt" || true
done

umount -R "$root/dev"
# An upgrade to the same version: the maintainer scripts' upgrade path.
dpkg --root="$root" --force-depends -i "$deb" >"$out/upgrade.log" 2>&1
snapshot upgraded
echo '{"log": {"level": "debug"}}' >"$root/etc/zshield/zshield.conf"
dpkg --root="$root" -r zshield >"$out/remove.log" 2>&1
snapshot removed
dpkg --root="$root" --purge zshield >"$out/purge.log" 2>&1
snapshot purged
