#!/bin/sh
# run-nspawn.sh [--net] PAYLOAD_DIR RESULT_DIR [TIMEOUT_S]
# Boot the cached test root directory (build-rootfs.sh) with systemd-nspawn --boot
# (systemd as PID 1, host kernel: no kernel WireGuard) and run PAYLOAD_DIR/run.sh inside as
# root, cwd /srv/payload (bound read-only). The root is a throw-away overlay
# (--volatile=overlay). Writes RESULT_DIR/output.log, RESULT_DIR/rc, RESULT_DIR/console.log
# and RESULT_DIR/artifacts/. Exits with run.sh's exit code; 124 on timeout; 125 on harness
# failure.
#   default  --private-network: only "lo", but CAP_NET_ADMIN (namespaces, veth, nftables)
#   --net    share the host's network (no CAP_NET_ADMIN) and copy its resolv.conf, so apt
#            inside can reach the Debian mirror (`apt-get install ./x.deb`)
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

net=0
while [ $# -gt 0 ]; do
    case "$1" in
        --net) net=1; shift ;;
        --) shift; break ;;
        -*) die "unknown option $1" ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || die "usage: run-nspawn.sh [--net] PAYLOAD_DIR RESULT_DIR [TIMEOUT_S]"
PAYLOAD_DIR=$(cd "$1" && pwd); TIMEOUT_S=${3:-600}
[ -f "$PAYLOAD_DIR/run.sh" ] || die "$PAYLOAD_DIR/run.sh missing"
"$VM_DIR/build-rootfs.sh" --check || die "root filesystem missing or stale: run tests/vm/build-rootfs.sh"
mkdir -p "$2"
RESULT_DIR=$(cd "$2" && pwd)
rm -rf "$RESULT_DIR/output.log" "$RESULT_DIR/rc" "$RESULT_DIR/console.log" "$RESULT_DIR/artifacts"

if [ $net = 1 ]; then
    netopt="--resolv-conf=copy-host"
else
    netopt="--private-network"
fi

outer=$((TIMEOUT_S + ${WGSIG_NSPAWN_BOOT_MARGIN:-60}))
set +e
# Arguments after the options go to PID 1 (systemd), which in a container treats them like
# the kernel command line: the runner reads wgsig.timeout= from there.
# shellcheck disable=SC2086
SYSTEMD_LOG_LEVEL=warning timeout -k 5 "$outer" systemd-nspawn -q -D "$ROOTFS" --boot \
    --register=no --keep-unit --volatile=overlay --console=passive \
    --machine="wgsig-test-$$" $netopt \
    --bind-ro="$PAYLOAD_DIR:/srv/payload" --bind="$RESULT_DIR:/srv/results" \
    wgsig.timeout="$TIMEOUT_S" </dev/null >"$RESULT_DIR/console.log" 2>&1
nrc=$?
set -e

if [ ! -f "$RESULT_DIR/rc" ] && { [ $nrc = 124 ] || [ $nrc = 137 ]; }; then
    echo "run-nspawn.sh: TIMEOUT: the container did not finish within ${outer} s (log: $RESULT_DIR/console.log)" >&2
    exit 124
fi
if [ ! -f "$RESULT_DIR/rc" ]; then
    echo "run-nspawn.sh: no result from the container (nspawn exit $nrc; log: $RESULT_DIR/console.log)" >&2
    tail -n 20 "$RESULT_DIR/console.log" >&2
    exit 125
fi
rc=$(cat "$RESULT_DIR/rc")
[ "$rc" != 124 ] || echo "run-nspawn.sh: TIMEOUT: run.sh exceeded ${TIMEOUT_S} s in the container" >&2
[ "$rc" = "$nrc" ] || echo "run-nspawn.sh: note: nspawn exited $nrc, run.sh $rc" >&2
exit "$rc"
