#!/bin/sh
# Build (or reuse) the cached Debian bookworm test root filesystem:
#   $CACHE/rootfs/      root directory booted by systemd-nspawn (run-nspawn.sh)
#   $CACHE/image.ext4   the same tree as an ext4 disk image for QEMU (run-qemu.sh)
#   $CACHE/vmlinuz, $CACHE/initrd.img   Debian's cloud kernel + a virtio initramfs
# CACHE=${WGSIG_VM_CACHE:-/var/cache/wgsig-test}. Idempotent: rebuilds only when missing
# or when the recipe (this script, lib.sh, guest/*, the Debian mirror) changed.
# Options: --force (rebuild), --check (exit 0 if up to date, 1 if a build is needed).
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# autopkgtest: tests/test_autopkgtest.py runs debian/tests with its null runner inside the container;
# acl: the package's postrm takes its ACL entry off node-exporter's directory with setfacl.
# python3-cffi-backend: debootstrap does not resolve the virtual python3-cffi-backend-api-* deps.
# miniupnpd-nftables: the X1 lab's router with PCP/NAT-PMP (port mapping); its own unit is masked,
# the lab starts it in a NAT namespace with its own config.
PACKAGES=systemd,systemd-sysv,udev,dbus,kmod,linux-image-cloud-amd64,iproute2,iputils-ping,wireguard-tools,python3,python3-pyroute2,python3-systemd,python3-cryptography,python3-cffi-backend,nftables,procps,conntrack,netbase,autopkgtest,acl,miniupnpd-nftables
MASK_UNITS="apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer miniupnpd.service"

force=0; check=0
for a in "$@"; do
    case "$a" in
        --force) force=1 ;;
        --check) check=1 ;;
        *) die "unknown option $a" ;;
    esac
done

MIRROR=$(debian_mirror)
SECURITY=$(apt_uri bookworm-security | head -n1)
recipe_hash() {
    { cat "$VM_DIR/build-rootfs.sh" "$VM_DIR/lib.sh" "$VM_DIR"/guest/*; echo "$MIRROR $SECURITY"; } |
        sha256sum | cut -d' ' -f1
}
HASH=$(recipe_hash)

up_to_date() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] &&
        [ -f "$IMAGE" ] && [ -f "$KERNEL" ] && [ -f "$INITRD" ] && [ -x "$ROOTFS/usr/local/sbin/wgsig-test-runner" ]
}

if [ $check = 1 ]; then up_to_date; exit; fi
[ "$(id -u)" = 0 ] || die "must run as root"
mkdir -p "$CACHE"
# One builder at a time; others wait and then find the stamp.
exec 9>"$CACHE/.lock"
flock 9
if [ $force = 0 ] && up_to_date; then exit 0; fi
command -v debootstrap >/dev/null || die "debootstrap missing: run tests/vm/install-host-deps.sh"

start=$(date +%s)
NEW=$CACHE/rootfs.new
rm -rf "$NEW" "$STAMP"
echo "build-rootfs: debootstrap bookworm from $MIRROR" >&2
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$NEW" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }

# apt sources: the host's Debian mirror, so `apt install ./x.deb` can fetch dependencies.
{
    echo "deb $MIRROR bookworm main"
    echo "deb $MIRROR bookworm-updates main"
    [ -z "$SECURITY" ] || echo "deb ${SECURITY%/} bookworm-security main"
} >"$NEW/etc/apt/sources.list"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$NEW/etc/apt/apt.conf.d/90wgsig-test"

# Identity, console, boot speed.
echo wgsig-test >"$NEW/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 wgsig-test\n::1 localhost ip6-localhost ip6-loopback\n' >"$NEW/etc/hosts"
: >"$NEW/etc/fstab"
: >"$NEW/etc/machine-id"
chroot "$NEW" passwd -d root >/dev/null
# shellcheck disable=SC2086
chroot "$NEW" systemctl mask --quiet $MASK_UNITS 2>/dev/null || true
mkdir -p "$NEW/etc/systemd/system/serial-getty@ttyS0.service.d"
# shellcheck disable=SC2016  # $TERM is for systemd, not for this shell
printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %%I $TERM\n' \
    >"$NEW/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"

# The test runner units.
install -m 0755 "$VM_DIR/guest/wgsig-test-runner" "$NEW/usr/local/sbin/wgsig-test-runner"
install -m 0644 "$VM_DIR/guest/wgsig-test-runner.service" "$VM_DIR/guest/wgsig-test-nspawn.service" \
    "$NEW/etc/systemd/system/"
chroot "$NEW" systemctl enable --quiet wgsig-test-runner.service wgsig-test-nspawn.service
mkdir -p "$NEW/srv/payload" "$NEW/srv/results"

# Small initramfs with just the virtio disk drivers (the cloud kernel has them as modules).
printf 'virtio_pci\nvirtio_blk\n' >>"$NEW/etc/initramfs-tools/modules"
sed -i 's/^MODULES=.*/MODULES=list/' "$NEW/etc/initramfs-tools/initramfs.conf"
chroot "$NEW" update-initramfs -u >/dev/null 2>&1 || die "update-initramfs failed"

# Package lists, so tests can `apt install ./x.deb` without a slow `apt-get update`.
chroot "$NEW" apt-get update -qq >/dev/null 2>&1 || echo "build-rootfs: warning: apt-get update failed" >&2
chroot "$NEW" apt-get clean
rm -f "$NEW/etc/resolv.conf"

# Publish: kernel, initrd, ext4 image, root directory.
cp "$NEW"/boot/vmlinuz-* "$KERNEL.new"
cp "$NEW"/boot/initrd.img-* "$INITRD.new"
truncate -s 2G "$IMAGE.new"
mkfs.ext4 -q -F -L wgsig-root -d "$NEW" "$IMAGE.new" 2G
rm -rf "$ROOTFS.old"
[ ! -d "$ROOTFS" ] || mv "$ROOTFS" "$ROOTFS.old"
mv "$NEW" "$ROOTFS"
mv "$KERNEL.new" "$KERNEL"; mv "$INITRD.new" "$INITRD"; mv "$IMAGE.new" "$IMAGE"
rm -rf "$ROOTFS.old"
echo "$HASH" >"$STAMP"
echo "build-rootfs: built in $(($(date +%s) - start)) s: $CACHE" >&2
