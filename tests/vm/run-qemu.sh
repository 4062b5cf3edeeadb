#!/bin/sh
# run-qemu.sh [--net] [--reboot] PAYLOAD_DIR RESULT_DIR [TIMEOUT_S]
# Boot the cached test image (build-rootfs.sh) in QEMU software emulation with Debian's
# cloud kernel (real kernel WireGuard) and run PAYLOAD_DIR/run.sh inside as root, cwd
# /srv/payload. Writes RESULT_DIR/output.log (stdout+stderr), RESULT_DIR/rc,
# RESULT_DIR/console.log (serial console), and RESULT_DIR/artifacts/ (whatever run.sh put in
# $WGSIG_ARTIFACTS). Exits with run.sh's exit code; 124 if run.sh or the VM timed out;
# 125 on harness failure (no result from the guest).
#   --net     give the guest QEMU user networking (10.0.2.15, can reach the Debian mirror)
#   --reboot  let the guest reboot once inside this QEMU process (no -no-reboot; snapshot=on keeps
#             the guest's writes across it): run.sh asks for it, and runs again on the second
#             boot with WGSIG_STAGE=2 (guest/wgsig-test-runner). TIMEOUT_S is per boot.
# Environment: WGSIG_VM_CACHE, WGSIG_QEMU_BOOT_MARGIN (extra seconds for boot, default 180).
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

net=0
reboot=0
while [ $# -gt 0 ]; do
    case "$1" in
        --net) net=1; shift ;;
        --reboot) reboot=1; shift ;;
        --) shift; break ;;
        -*) die "unknown option $1" ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || die "usage: run-qemu.sh [--net] [--reboot] PAYLOAD_DIR RESULT_DIR [TIMEOUT_S]"
PAYLOAD_DIR=$1; RESULT_DIR=$2; TIMEOUT_S=${3:-600}
[ -f "$PAYLOAD_DIR/run.sh" ] || die "$PAYLOAD_DIR/run.sh missing"
"$VM_DIR/build-rootfs.sh" --check || die "image missing or stale: run tests/vm/build-rootfs.sh"

mkdir -p "$RESULT_DIR"
rm -rf "$RESULT_DIR/output.log" "$RESULT_DIR/rc" "$RESULT_DIR/console.log" "$RESULT_DIR/artifacts"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wgsig-qemu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

tar -cf "$WORK/payload.tar" -C "$PAYLOAD_DIR" .
truncate -s "${WGSIG_RESULTS_DISK_SIZE:-256M}" "$WORK/results.img"

append="console=ttyS0 root=/dev/vda rw quiet panic=-1 net.ifnames=0 wgsig.test=1 wgsig.timeout=$TIMEOUT_S"
if [ $net = 1 ]; then
    nic="-netdev user,id=n0 -device virtio-net-pci,netdev=n0"
    append="$append wgsig.net=1"
else
    nic="-nic none"
fi

outer=$((TIMEOUT_S + ${WGSIG_QEMU_BOOT_MARGIN:-180}))
# Every other run: a reboot (a panic with panic=-1 included) ends QEMU.
noreboot=-no-reboot
if [ $reboot = 1 ]; then
    noreboot=
    append="$append wgsig.reboot=1"
    outer=$((outer * 2))
fi
set +e
# shellcheck disable=SC2086
timeout -k 5 "$outer" qemu-system-x86_64 -accel tcg -cpu qemu64 -machine q35 -m 1024 -smp 2 \
    -nographic $noreboot -bios /usr/share/qemu/qboot.rom \
    -kernel "$KERNEL" -initrd "$INITRD" -append "$append" \
    -drive file="$IMAGE",format=raw,if=virtio,snapshot=on \
    -drive file="$WORK/payload.tar",format=raw,if=virtio,readonly=on \
    -drive file="$WORK/results.img",format=raw,if=virtio \
    $nic </dev/null >"$RESULT_DIR/console.log" 2>&1
qrc=$?
set -e

tar -xf "$WORK/results.img" -C "$RESULT_DIR" 2>/dev/null || true
if [ ! -f "$RESULT_DIR/rc" ] && { [ $qrc = 124 ] || [ $qrc = 137 ]; }; then
    echo "run-qemu.sh: TIMEOUT: the VM did not finish within ${outer} s (serial log: $RESULT_DIR/console.log)" >&2
    exit 124
fi
if [ ! -f "$RESULT_DIR/rc" ]; then
    echo "run-qemu.sh: no result from the guest (qemu exit $qrc; serial log: $RESULT_DIR/console.log)" >&2
    tail -n 20 "$RESULT_DIR/console.log" >&2
    exit 125
fi
rc=$(cat "$RESULT_DIR/rc")
[ "$rc" != 124 ] || echo "run-qemu.sh: TIMEOUT: run.sh exceeded ${TIMEOUT_S} s inside the VM" >&2
exit "$rc"
