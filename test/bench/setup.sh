#!/usr/bin/env bash
# Builds the QEMU "virtual appliance bench": host packages, the Debian cloud kernel, the guest
# root tree (the "golden root", with a small boot initramfs in its /boot for roots booted from a
# disk through GRUB) and an uncompressed cpio initramfs made from the tree.
#
#   test/bench/setup.sh                 # everything (idempotent, fast when up to date)
#   test/bench/setup.sh rootfs          # only (re)build .bench/rootfs/ (for a disk image builder)
#   test/bench/setup.sh systemd         # everything, plus the systemd flavour (setup-systemd.sh)
#
# Inputs (environment):
#   ZSHIELD_BIN   the zshield single executable to install as /usr/sbin/zshield
#                 (default: $REPO/build/out/zshield)
#   BENCH_DIR     output folder (default: $REPO/.bench)
#
# Outputs (in $BENCH_DIR):
#   kernel/<ver>/         the extracted linux-image-<ver> package (depmod'ed)
#   rootfs/               the guest root tree: busybox, LVM, GRUB, e2fsprogs, ..., zshield;
#                         /boot has vmlinuz-<ver> and initrd.img-<ver> (guest/initrd-init as /init)
#   initramfs.cpio        newc cpio of rootfs/ (uncompressed: boots fastest under TCG)
#   bench.env             KERNEL_VERSION=, VMLINUZ=, INITRD=, ... for the host-side API
#
# Caching: the base tree is keyed on this script, test/bench/guest/*, the kernel version and the
# versions of the Debian packages it is made of; the zshield layer on the binary's identity.
# The whole run holds an exclusive lock ($BENCH_DIR/.lock), so parallel callers build once.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO/.bench}
ZSHIELD_BIN=${ZSHIELD_BIN:-$REPO/build/out/zshield}
GUEST_SRC=$HERE/guest
MODE=${1:-all}

# Host tools needed to build and run the bench.
HOST_PKGS=(qemu-system-x86 lvm2 dmsetup busybox-static rsync cpio fdisk kmod grub-pc-bin grub-common
  grub2-common zstd e2fsprogs util-linux mount dosfstools tar bash dash coreutils findutils grep sed file)
# Multicast cloning (clone/): udpcast, and iproute2 for the test's network namespaces.
HOST_PKGS+=(udpcast iproute2)
# The netboot chain (clone send --netboot, test/bench/netboot.ts): dnsmasq-base is the program without
# a system service; radvd, ipmi_sim (openipmi) and ipmitool run by hand in the test's namespace. No
# service of theirs is started by the install (policy-rc.d below).
HOST_PKGS+=(dnsmasq-base radvd openipmi ipmitool)
# The guest's forwards to host ports on QEMU user networking (guestfwd=...-cmd:nc).
HOST_PKGS+=(netcat-openbsd)
# The systemd flavour's Debian tree (setup-systemd.sh).
HOST_PKGS+=(mmdebstrap)
# Debian packages whose files (minus docs, man pages, locales, systemd/udev glue) make up the guest.
# busybox-static fills in the remaining commands, but only where no real tool exists. dash,
# coreutils and findutils are there because Debian's busybox prefers its own applets to PATH
# (FEATURE_PREFER_APPLETS): as /bin/sh, or as env/xargs/timeout/chroot/nohup/find, it would run
# busybox mount, busybox setsid, ... instead of the util-linux ones.
GUEST_PKGS=(lvm2 dmsetup kmod rsync e2fsprogs fdisk util-linux mount grub-common grub2-common grub-pc-bin
  zstd tar dosfstools bash dash coreutils findutils grep sed restic udpcast)
# Kernel modules in the guest (their dependencies are added by modprobe --show-depends). Those in
# BOOT_MODULES are loaded by rcS; the kernel loads the others on demand (device-mapper targets on
# first use, file systems on mount) through /sbin/modprobe.
GUEST_MODULES=(virtio_pci virtio_blk virtio_console qemu_fw_cfg dm_mod dm_snapshot dm_bufio dm_mirror
  dm_zero dm_thin_pool loop vfat nls_cp437 nls_ascii nls_utf8 isofs squashfs virtio_net)
BOOT_MODULES=(virtio_pci virtio_blk virtio_console qemu_fw_cfg dm_mod dm_snapshot loop)
# Modules of the boot initramfs (/boot/initrd.img-<ver>, for roots booted from a disk through GRUB):
# the disks and device-mapper, so that it can activate LVM and mount the root (ext4 is built in).
INITRD_MODULES=(virtio_pci virtio_blk dm_mod dm_snapshot)

log() { printf '[bench-setup] %s\n' "$*" >&2; }
die() { printf '[bench-setup] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, chown in the guest tree)"
mkdir -p "$BENCH_DIR"
exec 9>"$BENCH_DIR/.lock"
flock 9

# ---------------------------------------------------------------------------------------------
# 1. Host packages
# ---------------------------------------------------------------------------------------------
ensure_host_packages() {
  local missing=() p installed
  installed=" $(dpkg-query -W -f='${Package}:${db:Status-Status} ' "${HOST_PKGS[@]}" 2>/dev/null || true) "
  for p in "${HOST_PKGS[@]}"; do
    case "$installed" in *" $p:installed "*) ;; *) missing+=("$p") ;; esac
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing host packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # One host install at a time with the remote tests' (test/remote/sshd.ts HOST_APT_LOCK): each
  # lends the others its policy-rc.d only while it holds the lock.
  local lock_fd
  exec {lock_fd}>>/run/lock/zshield-host-apt.lock
  flock --wait 1200 "$lock_fd" || die "another host install held /run/lock/zshield-host-apt.lock for 20 minutes"
  # No package starts a service on this machine (radvd, openipmi ship init scripts): a policy-rc.d
  # that refuses every start, for the install only, unless the machine already has one.
  local own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  local rc=0
  apt_install "${missing[@]}" || rc=$?
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
  exec {lock_fd}>&-
  [ $rc -eq 0 ] || die "apt-get install failed, see $BENCH_DIR/apt.log"
}

apt_install() {
  apt-get install -y --no-install-recommends "$@" >"$BENCH_DIR/apt.log" 2>&1 && return 0
  log "apt-get install failed; running apt-get update and retrying"
  apt-get update >>"$BENCH_DIR/apt.log" 2>&1
  apt-get install -y --no-install-recommends "$@" >>"$BENCH_DIR/apt.log" 2>&1
}

# ---------------------------------------------------------------------------------------------
# 2. Kernel: linux-image-<ver>-cloud-amd64, downloaded (not installed) and extracted
# ---------------------------------------------------------------------------------------------
resolve_kernel_version() {
  # apt-cache takes ~2 s: reuse the last answer while the package lists are unchanged.
  local lists_key pkg cache="$BENCH_DIR/kernel/resolved"
  lists_key=$(stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ -f "$cache" ] && [ "$(sed -n 1p "$cache")" = "$lists_key" ] &&
    [ -e "$BENCH_DIR/kernel/$(sed -n 2p "$cache")/.done" ]; then
    sed -n 2p "$cache"
    return
  fi
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }') || true
  if [ -z "$pkg" ]; then
    apt-get update >>"$BENCH_DIR/apt.log" 2>&1 || true
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
      awk '/Depends: linux-image-[0-9]/ { print $2; exit }') || true
    lists_key=$(stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null | sha256sum | cut -d' ' -f1)
  fi
  if [ -z "$pkg" ]; then
    # Offline and no package lists: fall back to a kernel extracted earlier.
    local k
    k=$(ls -1 "$BENCH_DIR/kernel" 2>/dev/null | grep -- '-cloud-amd64$' | sort -V | tail -1) || true
    [ -n "$k" ] && [ -e "$BENCH_DIR/kernel/$k/.done" ] || die "cannot resolve linux-image-cloud-amd64"
    echo "$k"
    return
  fi
  mkdir -p "$BENCH_DIR/kernel"
  printf '%s\n%s\n' "$lists_key" "${pkg#linux-image-}" >"$cache"
  echo "${pkg#linux-image-}"
}

ensure_kernel() {
  local ver=$1 dir="$BENCH_DIR/kernel/$1"
  [ -e "$dir/.done" ] && return 0
  log "downloading and extracting linux-image-$ver"
  rm -rf "$dir" "$BENCH_DIR/kernel/.dl"
  mkdir -p "$BENCH_DIR/kernel/.dl"
  (cd "$BENCH_DIR/kernel/.dl" && apt-get download "linux-image-$ver" >/dev/null 2>&1) ||
    (apt-get update >>"$BENCH_DIR/apt.log" 2>&1 &&
      cd "$BENCH_DIR/kernel/.dl" && apt-get download "linux-image-$ver" >/dev/null 2>&1) ||
    die "apt-get download linux-image-$ver failed"
  mkdir -p "$dir.tmp"
  dpkg-deb -x "$BENCH_DIR"/kernel/.dl/linux-image-"$ver"_*.deb "$dir.tmp"
  depmod -b "$dir.tmp" "$ver"
  [ -f "$dir.tmp/boot/vmlinuz-$ver" ] || die "no vmlinuz in linux-image-$ver"
  rm -rf "$BENCH_DIR/kernel/.dl"
  mv "$dir.tmp" "$dir"
  touch "$dir/.done"
}

# ---------------------------------------------------------------------------------------------
# 3. Guest root tree (reusable: `setup.sh rootfs` builds only this)
# ---------------------------------------------------------------------------------------------

# Print the files (not directories) of a Debian package that belong in the guest.
package_files() {
  dpkg -L "$1" | while IFS= read -r f; do
    case "$f" in
      /usr/share/doc/* | /usr/share/man/* | /usr/share/info/* | /usr/share/locale/* | \
        /usr/share/lintian/* | /usr/share/bug/* | /usr/share/bash-completion/* | \
        /usr/share/zsh/* | /lib/systemd/* | /usr/lib/systemd/* | /lib/udev/* | /usr/lib/udev/* | \
        /etc/init.d/* | /etc/cron.* | /usr/share/initramfs-tools/* | /etc/initramfs-tools/* | \
        /usr/share/grub/*.pf2 | /usr/lib/grub/i386-pc/*.image | /usr/lib/grub/i386-pc/*.exec | \
        /usr/lib/grub/i386-pc/*.module | /usr/lib/grub/i386-pc/gdb_grub | /usr/lib/grub/i386-pc/gmodule.pl | \
        /usr/share/menu/*) ;;
      *) if [ -f "$f" ] || [ -L "$f" ]; then printf '%s\n' "$f"; fi ;;
    esac
  done
}

# Copy absolute host paths (symlinks kept, plus whatever they point to) into the tree.
copy_into() {
  local root=$1 list=$2
  # Add the targets of symlinks so links never dangle.
  local extra
  extra=$(mktemp)
  while IFS= read -r f; do
    [ -L "$f" ] && readlink -f "$f"
  done <"$list" >"$extra"
  cat "$extra" >>"$list"
  rm -f "$extra"
  sort -u -o "$list" "$list"
  # -K: keep the tree's merged-/usr directory symlinks (bin -> usr/bin, ...).
  rsync -a -K --files-from="$list" / "$root/"
}

# Shared libraries of every ELF file in the tree, per ldd, copied in (repeated to a fixed point).
copy_libs() {
  local root=$1 list
  list=$(mktemp)
  local round
  for round in 1 2 3; do
    find "$root" -type f \( -perm -u+x -o -name '*.so*' \) -print0 |
      xargs -0 file -N --mime-type | awk -F': ' '$2 ~ /x-(pie-)?(executable|sharedlib)/ { print $1 }' |
      while IFS= read -r elf; do ldd "$elf" 2>/dev/null || true; done |
      awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | sort -u >"$list"
    local before
    before=$(find "$root" | wc -l)
    copy_into "$root" "$list"
    [ "$(find "$root" | wc -l)" = "$before" ] && break
  done
  rm -f "$list"
}

# The boot initramfs of disk-booted roots: static busybox, lvm (+ its shared libraries), the
# INITRD_MODULES and guest/initrd-init as /init. Written gzip'ed to $3 (/boot/initrd.img-<ver> of
# the tree, where grub-mkconfig's 10_linux and zshield's 40_zshield find it).
build_boot_initrd() {
  local ver=$1 kdir=$2 out=$3
  local ir
  ir=$(mktemp -d)
  mkdir -p "$ir"/{bin,sbin,etc/lvm,lib/modules,proc,sys,dev,run,tmp,newroot}
  cp /bin/busybox "$ir/bin/busybox"
  file -b "$ir/bin/busybox" | grep -q 'statically linked' || die "/bin/busybox is not static (busybox-static)"
  local a
  for a in $("$ir/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$ir/bin/$a"
  done
  cp -L /usr/sbin/lvm "$ir/sbin/lvm"
  local lib
  while IFS= read -r lib; do
    mkdir -p "$ir$(dirname "$lib")"
    cp -L "$lib" "$ir$lib"
  done < <(ldd /usr/sbin/lvm | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | sort -u)
  install -m 0644 "$GUEST_SRC/lvm.conf" "$ir/etc/lvm/lvm.conf"
  install -m 0755 "$GUEST_SRC/initrd-init" "$ir/init"
  local m path rel seen=" "
  for m in "${INITRD_MODULES[@]}"; do
    while read -r kind path _; do
      [ "$kind" = insmod ] || continue
      rel=${path#"$kdir/lib/modules/$ver/"}
      case "$seen" in *" $rel "*) continue ;; esac
      seen="$seen$rel "
      mkdir -p "$ir/lib/modules/$(dirname "$rel")"
      cp "$path" "$ir/lib/modules/$rel"
      echo "$rel" >>"$ir/etc/initrd-modules"
    done < <(modprobe -d "$kdir" -S "$ver" --show-depends "$m")
  done
  mknod -m 0600 "$ir/dev/console" c 5 1
  (cd "$ir" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -6 >"$out"
  rm -rf "$ir"
}

build_rootfs() {
  local ver=$1 out=$2
  local kdir="$BENCH_DIR/kernel/$ver"
  local root="$out.tmp"
  log "building guest root tree in $out"
  rm -rf "$root"
  mkdir -p "$root"/usr/{bin,sbin,lib,lib64}
  ln -s usr/bin "$root/bin"
  ln -s usr/sbin "$root/sbin"
  ln -s usr/lib "$root/lib"
  ln -s usr/lib64 "$root/lib64"
  mkdir -p "$root"/{proc,sys,dev,run,tmp,mnt,root,boot,home,srv,opt,media} \
    "$root"/etc/{lvm/archive,lvm/backup,bench} "$root"/var/{lib,log,tmp,cache,spool,backups} \
    "$root"/var/lib/zshield \
    "$root"/usr/local/{bin,sbin} "$root/boot/grub" "$root/usr/share/locale"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  chmod 0700 "$root/root"
  ln -s ../run "$root/var/run"
  ln -s ../run/lock "$root/var/lock"

  # Debian packages.
  local list
  list=$(mktemp)
  local p
  for p in "${GUEST_PKGS[@]}"; do package_files "$p"; done >"$list"
  echo /bin/busybox >>"$list"
  copy_into "$root" "$list"
  rm -f "$list"
  copy_libs "$root"

  # busybox applets, only where no real tool of that name exists (util-linux mount, etc. win).
  local applet name
  while IFS= read -r applet; do
    name=${applet##*/}
    # Not the fake package managers (tools guess the distribution from them) nor linuxrc.
    case "$name" in dpkg | dpkg-deb | rpm | rpm2cpio | linuxrc) continue ;; esac
    [ -e "$root/usr/bin/$name" ] || [ -e "$root/usr/sbin/$name" ] || [ -L "$root/usr/bin/$name" ] ||
      [ -L "$root/usr/sbin/$name" ] && continue
    case "$applet" in
      sbin/* | usr/sbin/*) ln -s /usr/bin/busybox "$root/usr/sbin/$name" ;;
      *) ln -s /usr/bin/busybox "$root/usr/bin/$name" ;;
    esac
  done < <("$root/usr/bin/busybox" --list-full)
  [ "$(readlink "$root/usr/bin/sh")" = dash ] || die "guest /bin/sh is not dash"

  # Kernel, its config and System.map in /boot (for a later GRUB-booted medium), modules.
  cp "$kdir/boot/vmlinuz-$ver" "$kdir/boot/config-$ver" "$kdir/boot/System.map-$ver" "$root/boot/"
  local m mods=()
  for m in "${GUEST_MODULES[@]}"; do
    while read -r kind path _; do
      [ "$kind" = insmod ] && mods+=("$path")
    done < <(modprobe -d "$kdir" -S "$ver" --show-depends "$m")
  done
  local kmroot="$root/usr/lib/modules/$ver"
  mkdir -p "$kmroot"
  cp "$kdir/lib/modules/$ver"/modules.{order,builtin,builtin.modinfo} "$kmroot/"
  for path in "${mods[@]}"; do
    local rel=${path#"$kdir/lib/modules/$ver/"}
    mkdir -p "$kmroot/$(dirname "$rel")"
    cp "$path" "$kmroot/$rel"
  done
  depmod -b "$root" "$ver"
  printf '%s\n' "${BOOT_MODULES[@]}" >"$root/etc/bench/modules"
  build_boot_initrd "$ver" "$kdir" "$root/boot/initrd.img-$ver"

  # /etc and the bench's init, agent and shutdown scripts.
  install -m 0644 "$GUEST_SRC/lvm.conf" "$root/etc/lvm/lvm.conf"
  install -m 0644 "$GUEST_SRC/inittab" "$root/etc/inittab"
  mkdir -p "$root/etc/default"
  install -m 0644 "$GUEST_SRC/default-grub" "$root/etc/default/grub"
  install -m 0755 "$GUEST_SRC/rcS" "$root/etc/bench/rcS"
  install -m 0755 "$GUEST_SRC/agent" "$root/etc/bench/agent"
  install -m 0755 "$GUEST_SRC/shutdown" "$root/etc/bench/shutdown"
  ln -sf /usr/bin/busybox "$root/usr/sbin/init" # busybox init is PID 1 (reaps orphans)
  ln -sf /sbin/init "$root/init"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
  chmod 0640 "$root/etc/shadow"
  printf 'root:x:0:\ndisk:x:6:\ntty:x:5:\n' >"$root/etc/group"
  printf 'bench\n' >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tbench\n::1\tlocalhost\n' >"$root/etc/hosts"
  printf '# <file system> <mount point> <type> <options> <dump> <pass>\n' >"$root/etc/fstab"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$root/etc/nsswitch.conf"
  ln -sf /proc/self/mounts "$root/etc/mtab"
  cp /etc/os-release "$root/etc/os-release" 2>/dev/null || cp /usr/lib/os-release "$root/etc/os-release"
  printf 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' >"$root/etc/profile"

  echo "$ver" >"$root/etc/bench/kernel-version"
  rm -rf "$out"
  mv "$root" "$out"
}

# ---------------------------------------------------------------------------------------------
# 4. zshield layer: /usr/sbin/zshield (+ zshield_backup symlink) and its shared libraries
# ---------------------------------------------------------------------------------------------
install_zshield() {
  local root=$1
  rm -f "$root/usr/sbin/zshield" "$root/usr/sbin/zshield_backup"
  install -m 0755 "$ZSHIELD_BIN" "$root/usr/sbin/zshield"
  ln -s zshield "$root/usr/sbin/zshield_backup"
  if file -b "$ZSHIELD_BIN" | grep -q '^ELF.*dynamically linked'; then
    if ldd "$ZSHIELD_BIN" | grep -q 'not found'; then
      die "$ZSHIELD_BIN needs libraries the host does not have: $(ldd "$ZSHIELD_BIN" | grep 'not found' | tr '\n' ' ')"
    fi
    local list
    list=$(mktemp)
    ldd "$ZSHIELD_BIN" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' >"$list"
    copy_into "$root" "$list"
    rm -f "$list"
  fi
}

base_key() {
  local ver=$1
  {
    cat "${BASH_SOURCE[0]}"
    (cd "$GUEST_SRC" && for f in $(ls -1 | sort); do echo "== $f"; cat "$f"; done)
    echo "kernel $ver"
    dpkg-query -W -f='${Package} ${Version}\n' "${GUEST_PKGS[@]}" busybox-static libc6 libstdc++6 libgcc-s1 | sort
  } | sha256sum | cut -d' ' -f1
}

main() {
  ensure_host_packages
  local ver
  ver=$(resolve_kernel_version)
  ensure_kernel "$ver"

  local key rootfs="$BENCH_DIR/rootfs"
  key=$(base_key "$ver")
  if [ ! -d "$rootfs" ] || [ "$(cat "$BENCH_DIR/rootfs.key" 2>/dev/null)" != "$key" ]; then
    rm -f "$BENCH_DIR/rootfs.key" "$BENCH_DIR/app.key"
    build_rootfs "$ver" "$rootfs"
    echo "$key" >"$BENCH_DIR/rootfs.key"
  fi

  [ -f "$ZSHIELD_BIN" ] || die "zshield binary not found: $ZSHIELD_BIN (build it first, or set ZSHIELD_BIN)"
  # The zshield layer is keyed on the binary's identity (path, size, mtime in ns, inode), which
  # every rebuild changes, rather than on a hash (1 s for ~100 MB).
  local appkey
  appkey="$key $(stat -L -c '%s %.9Y %i' "$ZSHIELD_BIN" | tr ' ' '-')-$(printf '%s' "$ZSHIELD_BIN" | sha256sum | cut -c1-16)"
  if [ "$(cat "$BENCH_DIR/app.key" 2>/dev/null)" != "$appkey" ]; then
    log "installing $ZSHIELD_BIN as /usr/sbin/zshield"
    rm -f "$BENCH_DIR/app.key"
    install_zshield "$rootfs"
    echo "$appkey" >"$BENCH_DIR/app.key"
  fi
  [ "$MODE" = rootfs ] && return 0

  local initrd="$BENCH_DIR/initramfs.cpio"
  if [ ! -f "$initrd" ] || [ "$(cat "$BENCH_DIR/initramfs.key" 2>/dev/null)" != "$appkey" ]; then
    log "packing $initrd"
    rm -f "$BENCH_DIR/initramfs.key"
    (cd "$rootfs" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    echo "$appkey" >"$BENCH_DIR/initramfs.key"
  fi
  local vmlinuz="$BENCH_DIR/kernel/$ver/boot/vmlinuz-$ver"
  cat >"$BENCH_DIR/bench.env.tmp" <<EOF
KERNEL_VERSION=$ver
VMLINUZ=$vmlinuz
INITRD=$initrd
ROOTFS=$rootfs
ZSHIELD_BIN=$ZSHIELD_BIN
KEY="$appkey"
EOF
  mv "$BENCH_DIR/bench.env.tmp" "$BENCH_DIR/bench.env"
  if [ "$MODE" = systemd ]; then
    # shellcheck source=setup-systemd.sh
    . "$HERE/setup-systemd.sh"
    build_systemd_flavour "$ver" "${appkey#* }"
  fi
}

main
