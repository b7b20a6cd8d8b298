# The systemd flavour of the bench's guest (sourced by setup.sh, which holds the bench lock):
# Debian bookworm with systemd as PID 1, udev and journald, built offline-capable from Debian's
# packages with mmdebstrap into a folder, then packed into a disk image with `mkfs.ext4 -d`.
#
#   test/bench/setup.sh systemd        # the busybox bench, then this flavour
#
# Outputs (in $BENCH_DIR/systemd/):
#   rootfs/        the Debian tree: systemd, udev, lvm2 (+ dmeventd), initramfs-tools, the cloud
#                  kernel package (its /boot/initrd.img-<ver> made by initramfs-tools when the
#                  package was installed), GRUB (i386-pc), rsync, e2fsprogs, fdisk, busybox-static;
#                  zshield installed from its Debian package (build/package.sh) with dpkg -i, as
#                  the README's Install section says (both units enabled by the package); the
#                  bench agent as bench-agent.service
#   proto.img      a 2 GiB disk: DOS label, partition 1 (ext4, label zs-proto) = rootfs/; the
#                  "prototype system" that `zshield golden prepare` turns into a golden medium
#   systemd.env    SD_VMLINUZ=, SD_INITRD=, SD_PROTO=, SD_ROOTFS=, SD_PROTO_UUID=
#
# Caching: the tree is keyed on this file, the files it installs and the kernel version (not on the
# mirror's package versions: a cached tree stays until one of those changes or it is deleted); the
# zshield layer and proto.img on the binary's identity.

SD_PKGS=(systemd systemd-sysv udev lvm2 dmeventd initramfs-tools grub-pc-bin grub2-common grub-common
  e2fsprogs fdisk rsync kmod busybox-static zstd dosfstools procps util-linux mount
  # The package's world: apt runs its pre-upgrade hook, node_exporter's textfile collector serves
  # its metrics (issue 25).
  apt prometheus-node-exporter
  # The tree is merged-/usr already: usrmerge (pulled by init-system-helpers in the essential
  # phase) and the perl it needs are purged again (~50 MB less to copy at every golden prepare
  # and factory reset); usr-is-merged keeps init-system-helpers' dependency met.
  usr-is-merged)
SD_PURGE=(usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl perl-modules-5.36
  libperl5.36)
SD_PROTO_MIB=2048
# Fixed, so a kernel boot of the prototype can name its root before the image exists.
SD_PROTO_UUID=6f1c2a3e-5b7d-4e0f-9a8b-2c4d6e8f0a1b

sd_key() {
  local ver=$1
  {
    cat "$HERE/setup-systemd.sh" "$HERE/guest/agent" "$HERE/guest/default-grub"
    (cd "$HERE/guest-systemd" && for f in $(ls -1 | sort); do echo "== $f"; cat "$f"; done)
    echo "kernel $ver ${SD_PKGS[*]} purge ${SD_PURGE[*]}"
  } | sha256sum | cut -d' ' -f1
}

sd_build_tree() {
  local ver=$1 out=$2 tmp="$2.tmp"
  log "building the systemd flavour's Debian tree in $out (mmdebstrap, ~1 min)"
  rm -rf "$tmp"
  local inc
  inc=$(
    IFS=,
    echo "${SD_PKGS[*]},linux-image-$ver"
  )
  # Shaped like a lean appliance (the factory reset copies this tree and runs update-initramfs in
  # it; under TCG, initramfs-tools with MODULES=most took 3 of the reset's 5 minutes):
  # - kernel modules for hardware the bench's QEMU machine does not have (network, InfiniBand,
  #   network file systems, ...) removed: 90 -> ~35 MB, less for every copy of the root;
  # - initramfs-tools builds with MODULES=list: the drivers of the bench's disks
  #   (/etc/initramfs-tools/modules) plus what its hooks add (the lvm2 hook: device-mapper), and
  #   BUSYBOX=n (klibc's shell and tools; busybox's ~270 applet links cost an exec each).
  local prune=(net sound drivers/net drivers/infiniband drivers/comedi drivers/target drivers/hid
    drivers/xen drivers/hv drivers/media drivers/vfio drivers/vhost drivers/soundwire drivers/nvme
    drivers/nvdimm drivers/cxl drivers/ptp drivers/pps fs/nfs fs/nfsd fs/smb fs/ceph fs/xfs fs/btrfs
    fs/ocfs2 fs/gfs2 fs/dlm fs/f2fs fs/nilfs2 fs/jfs fs/reiserfs)
  local kdir="/usr/lib/modules/$ver/kernel"
  mmdebstrap --mode=root --variant=essential --include="$inc" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="chroot \"\$1\" dpkg --purge ${SD_PURGE[*]}" \
    --customize-hook="cd \"\$1$kdir\" && rm -rf ${prune[*]}" \
    --customize-hook="printf 'MODULES=list\\nBUSYBOX=n\\n' >\"\$1/etc/initramfs-tools/conf.d/bench\"" \
    --customize-hook="printf 'virtio_pci\\nvirtio_blk\\n' >>\"\$1/etc/initramfs-tools/modules\"" \
    --customize-hook="chroot \"\$1\" depmod $ver" \
    --customize-hook="chroot \"\$1\" update-initramfs -u -k $ver" \
    bookworm "$tmp" >"$BENCH_DIR/mmdebstrap.log" 2>&1 || die "mmdebstrap failed, see $BENCH_DIR/mmdebstrap.log"
  [ -f "$tmp/boot/vmlinuz-$ver" ] && [ -f "$tmp/boot/initrd.img-$ver" ] ||
    die "no kernel or initramfs-tools initrd in the systemd tree"

  # The bench's side: GRUB on the serial console, the agent, a name.
  install -m 0644 "$GUEST_SRC/default-grub" "$tmp/etc/default/grub"
  mkdir -p "$tmp/etc/bench"
  install -m 0755 "$GUEST_SRC/agent" "$tmp/etc/bench/agent"
  install -m 0644 "$HERE/guest-systemd/bench-agent.service" "$tmp/etc/systemd/system/bench-agent.service"
  systemctl --root="$tmp" enable bench-agent.service >/dev/null 2>&1 || die "cannot enable bench-agent.service"
  # Jobs of a long-lived box that only slow a test boot under emulation (e2scrub_reap held up
  # multi-user.target for 25 s), and gettys on a VGA console the bench does not have. The serial
  # getty stays: zshield-boot.service must keep the console from it during the countdown.
  systemctl --root="$tmp" mask e2scrub_reap.service e2scrub_all.timer fstrim.timer dpkg-db-backup.timer \
    getty-static.service getty@tty1.service >/dev/null 2>&1 || die "cannot mask units in the systemd tree"
  printf 'bench-sd\n' >"$tmp/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tbench-sd\n::1\tlocalhost\n' >"$tmp/etc/hosts"
  printf '# <file system> <mount point> <type> <options> <dump> <pass>\nUUID=%s\t/\text4\tdefaults\t0\t1\n' \
    "$SD_PROTO_UUID" >"$tmp/etc/fstab"
  # systemd makes a machine id at first boot (transient on a read-only golden root).
  : >"$tmp/etc/machine-id"
  echo "$ver" >"$tmp/etc/bench/kernel-version"
  rm -rf "$out"
  mv "$tmp" "$out"
}

sd_make_proto() {
  local root=$1 img=$2
  log "packing $img (mkfs.ext4 -d)"
  rm -f "$img.tmp"
  truncate -s "${SD_PROTO_MIB}M" "$img.tmp"
  printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$img.tmp" >/dev/null
  mkfs.ext4 -q -F -L zs-proto -U "$SD_PROTO_UUID" -d "$root" -E offset=1048576 \
    "$img.tmp" "$((SD_PROTO_MIB * 1024 - 1024))k" || die "mkfs.ext4 -d $root failed"
  mv "$img.tmp" "$img"
}

build_systemd_flavour() {
  local ver=$1 appid=$2
  local sd="$BENCH_DIR/systemd" key
  mkdir -p "$sd"
  key=$(sd_key "$ver")
  if [ ! -d "$sd/rootfs" ] || [ "$(cat "$sd/rootfs.key" 2>/dev/null)" != "$key" ]; then
    rm -f "$sd/rootfs.key" "$sd/proto.key"
    sd_build_tree "$ver" "$sd/rootfs"
    echo "$key" >"$sd/rootfs.key"
  fi
  local pkey
  pkey="$key $appid $(cat "$REPO"/rc/* "$REPO"/build/debian/* "$REPO/build/package.sh" | sha256sum | cut -c1-16)"
  if [ ! -f "$sd/proto.img" ] || [ "$(cat "$sd/proto.key" 2>/dev/null)" != "$pkey" ]; then
    rm -f "$sd/proto.key"
    # zshield from its package, installed with dpkg -i (no file copied by hand): its maintainer
    # scripts enable both units (in this chroot nothing is started).
    local deb
    deb=$(bash "$REPO/build/package.sh" --no-build | tail -n 1) || die "build/package.sh failed"
    rm -f "$sd/rootfs/etc/systemd/system/zshield-boot.service" "$sd/rootfs/etc/systemd/system/zshield.service"
    cp "$REPO/$deb" "$sd/rootfs/tmp/zshield.deb"
    chroot "$sd/rootfs" dpkg -i /tmp/zshield.deb >"$BENCH_DIR/zshield-dpkg.log" 2>&1 ||
      die "dpkg -i of the zshield package failed in the systemd tree, see $BENCH_DIR/zshield-dpkg.log"
    rm -f "$sd/rootfs/tmp/zshield.deb"
    sd_make_proto "$sd/rootfs" "$sd/proto.img"
    echo "$pkey" >"$sd/proto.key"
  fi
  cat >"$sd/systemd.env.tmp" <<EOT
SD_VMLINUZ=$sd/rootfs/boot/vmlinuz-$ver
SD_INITRD=$sd/rootfs/boot/initrd.img-$ver
SD_PROTO=$sd/proto.img
SD_ROOTFS=$sd/rootfs
SD_PROTO_UUID=$SD_PROTO_UUID
EOT
  mv "$sd/systemd.env.tmp" "$sd/systemd.env"
}
