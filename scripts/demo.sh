#!/bin/sh
# A tour of wgsig, in one of two forms (Debian 12, as root or a user with sudo):
#
#   sh scripts/demo.sh        two minutes on loopback only: wgsigd on 127.0.0.1 with a fresh
#                             secret in a temporary directory, three peers registering with
#                             wgsigc in print mode, then the resulting table.
#   sh scripts/demo.sh --vm   the product, in the project's QEMU VM (kernel WireGuard, software
#                             emulation: 1.5-3 minutes, the first time a few more): the real .deb
#                             installed with apt, wgsigd.socket on a "public" network, two peers
#                             behind two NATs whose WireGuard interfaces have keys but no
#                             endpoints, the shipped wgsigc timers enabled, and the tunnel coming
#                             up by itself: `wg show` before and after, the ping, and the seconds
#                             from enabling the timers to the first ping. Exits 0 only if the
#                             tunnel came up. Sets up everything it needs like scripts/test.sh:
#                             host packages (tests/vm/install-host-deps.sh), the cached root
#                             filesystem (tests/vm/build-rootfs.sh), the .deb (scripts/build-deb.sh).
#                             The steps in the VM are tests/deb_tunnel.sh, the start of the story
#                             tests/test_deb_vm.py checks.
set -eu
USAGE="usage: sh scripts/demo.sh [--vm]"
MODE=loopback
case $# in
    0) ;;
    1) case $1 in
           --vm) MODE=vm ;;
           -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
           *) echo "$USAGE" >&2; exit 2 ;;
       esac ;;
    *) echo "$USAGE" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
unset PYTHONHOME VIRTUAL_ENV
export PYTHONPATH="$ROOT" PYTHONDONTWRITEBYTECODE=1 DEBIAN_FRONTEND=noninteractive

# --vm: the steps inside the VM (run.sh there), on top of tests/deb_tunnel.sh.
vm_guest_script() {
    cat <<'GUEST'
set +e
stamp() { echo "==> $*"; }
FAILED=
check() {   # quiet unless it fails
    _n=$1; shift
    if ! "$@" >/tmp/check.out 2>&1; then
        echo "!!! $_n failed: $*"; sed 's/^/    /' /tmp/check.out; FAILED="$FAILED $_n"
    fi
}
show() { echo "    # ip netns exec $1 wg show $2"; ip netns exec "$1" wg show "$2" | sed 's/^/    /'; }
. /srv/payload/deb_tunnel.sh
stamp "booted; the VM's root namespace is the \"internet\" (192.0.2.0/24)"
deb_tunnel_setup "$(ls /srv/payload/wgsig_*_all.deb)"
stamp "ready: $(dpkg-query -W -f='${Package} ${Version}' wgsig) installed, wgsigd.socket $(systemctl is-active wgsigd.socket) on port 1223"

stamp "before: each interface has the other's public key and allowed IP, but no endpoint"
show a wga
show b wgb
echo "    # ip netns exec a ping -c1 -W1 10.99.0.2"
ip netns exec a ping -n -c1 -W1 10.99.0.2 2>&1 | grep -v "^$" | sed 's/^/    /'

stamp "enabling the timers: systemctl enable --now wgsigc.timer (in a) wgsigc-b.timer (in b); nobody runs wgsigc by hand"
# the units' journal while we wait, with the VM's uptime in seconds
sh -c 'echo $$ >/tmp/journal.pid; exec journalctl -f -n0 -q -o short-monotonic -u wgsigc.service -u wgsigc-b.service -u wgsigd.service' |
    sed -u -e '/Deactivated successfully\|Consumed .* CPU time/d' -e 's/^\[ *\([0-9]*\.[0-9]\)[0-9]*\] [^ ]* /    [\1 s] /' &
deb_tunnel_enable
echo "    at $TUNNEL_ENABLED s of uptime"
systemctl list-timers --no-pager 'wgsigc*' | sed 's/^/    /'
stamp "waiting for the tunnel: a pings 10.99.0.2 every 0.2 s; the journal of wgsigc and wgsigd meanwhile:"
deb_tunnel_wait 240
sleep 1; kill "$(cat /tmp/journal.pid)"; wait

if [ "$TUNNEL_UP" = 0 ]; then
    stamp "after: the first ping came back at $TUNNEL_AT s, $TUNNEL_S s after enabling the timers; each peer's endpoint is the other's NAT"
else
    stamp "after: no ping came back within 240 s"
fi
show a wga
show b wgb
echo "    # ip netns exec a ping -c3 10.99.0.2"
ip netns exec a ping -n -c3 10.99.0.2 2>&1 | sed 's/^/    /'
echo "    # ip netns exec a wgsigc status --config /etc/wgsig/wgsigc.toml"
ip netns exec a wgsigc status --config /etc/wgsig/wgsigc.toml 2>&1 | sed 's/^/    /'
[ "$TUNNEL_UP" = 0 ] || journalctl -q -u wgsigc.service -u wgsigc-b.service -u wgsigd.service --no-pager | tail -n 40
ep_a=$(ip netns exec a wg show wga endpoints | awk '{print $2}')
ep_b=$(ip netns exec b wg show wgb endpoints | awk '{print $2}')
echo "SUMMARY before: peers a (10.99.0.1, behind NAT 192.0.2.11) and b (10.99.0.2, behind NAT 192.0.2.12) had no endpoints"
echo "SUMMARY after:  a's endpoint for b is ${ep_a:-none}, b's for a is ${ep_b:-none}, written by the wgsigc timers"
if [ "$TUNNEL_UP" = 0 ]; then
    echo "SUMMARY tunnel up: $TUNNEL_S s from enabling the timers to the first ping (software emulation: Python runs ~14x slower than on hardware)"
else
    echo "SUMMARY tunnel NOT up within 240 s of enabling the timers${FAILED:+; failed steps:$FAILED}"
fi
exit "$TUNNEL_UP"
GUEST
}

demo_vm() {
    SUDO=
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "demo.sh: --vm needs root, or sudo" >&2; exit 1; }
        SUDO="sudo env DEBIAN_FRONTEND=noninteractive PATH=$PATH"
    fi
    T0=$(date +%s)
    say() { printf '[%4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
    DIR=$(mktemp -d /tmp/wgsig-demo.XXXXXX)
    chmod 755 "$DIR"
    KEEP=0
    trap '[ "$KEEP" = 1 ] || $SUDO rm -rf "$DIR"' EXIT
    trap 'exit 130' INT TERM

    say "host packages for the VM (tests/vm/install-host-deps.sh: qemu, debootstrap, wireguard-tools, ...)"
    $SUDO sh tests/vm/install-host-deps.sh
    say "the VM's root filesystem (tests/vm/build-rootfs.sh: Debian 12 from the mirror, ~2 minutes the first time, then cached in ${WGSIG_VM_CACHE:-/var/cache/wgsig-test})"
    $SUDO sh tests/vm/build-rootfs.sh
    say "the package (scripts/build-deb.sh: dpkg-buildpackage out of tree)"
    mkdir "$DIR/payload"
    DEB=$($SUDO sh scripts/build-deb.sh --no-lintian --out "$DIR/payload" "$ROOT")
    say "built $(basename "$DEB")"
    cp tests/natlab.sh tests/deb_tunnel.sh "$DIR/payload/"
    vm_guest_script >"$DIR/payload/demo.sh"
    # The guest's lines go to output.log and, marked, to the serial console, which the host follows.
    cat >"$DIR/payload/run.sh" <<'RUN'
#!/bin/sh
{ sh /srv/payload/demo.sh; echo $? >/tmp/demo.rc; } 2>&1 | sed -u 's/^/WGSIG-DEMO| /' | tee /dev/ttyS0
exit "$(cat /tmp/demo.rc)"
RUN
    chmod 755 "$DIR/payload/run.sh"

    say "booting the VM (QEMU software emulation, ~14x slower than hardware: boot and story take 1.5-3 minutes)"
    $SUDO sh tests/vm/run-qemu.sh "$DIR/payload" "$DIR/results" 600 &
    QEMU=$!
    # The serial console also carries the kernel's and systemd's messages, which may share a line.
    tail --pid="$QEMU" -n +1 -F "$DIR/results/console.log" 2>/dev/null |
        while IFS= read -r line; do
            case $line in *"WGSIG-DEMO| "*) ;; *) continue ;; esac
            line=$(printf '%s' "${line#*WGSIG-DEMO| }" | tr -d '\r')
            case $line in
                "==> "*) say "${line#==> }" ;;
                "SUMMARY "*) ;;
                *) printf '%s\n' "$line" ;;
            esac
        done
    rc=0
    wait "$QEMU" || rc=$?

    echo
    echo "=== summary (${WGSIG_VM_CACHE:+cache $WGSIG_VM_CACHE, }$(($(date +%s) - T0)) s in all)"
    if grep -q '^WGSIG-DEMO| SUMMARY ' "$DIR/results/output.log" 2>/dev/null; then
        sed -n 's/^WGSIG-DEMO| SUMMARY //p' "$DIR/results/output.log"
    else
        echo "the VM gave no result (run-qemu.sh exit $rc); the serial console's end:"
        tail -n 30 "$DIR/results/console.log" 2>/dev/null || true
    fi
    if [ "$rc" = 0 ]; then
        echo "demo: OK, exit 0"
    else
        KEEP=1
        echo "demo: FAILED, exit $rc (the VM's output and serial console are kept in $DIR/results)"
    fi
    exit "$rc"
}
if [ "$MODE" = vm ]; then
    demo_vm
fi

for p in python3 python3-cryptography; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        SUDO=
        if [ "$(id -u)" != 0 ]; then
            command -v sudo >/dev/null || { echo "demo.sh: run as root, or install sudo" >&2; exit 1; }
            SUDO="sudo env DEBIAN_FRONTEND=noninteractive"
        fi
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends python3 python3-cryptography >/dev/null
        break
    fi
done

DIR=$(mktemp -d /tmp/wgsig-demo.XXXXXX)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
wgsigd() { python3 -m wgsigd "$@"; }
wgsigc() { python3 -m wgsigc "$@"; }
key() { python3 -c "import base64,os; print(base64.b64encode(os.urandom(32)).decode())"; }

echo "### 1. A fresh group secret:  wgsigd genkey $DIR/group.key"
wgsigd genkey "$DIR/group.key"
ls -l "$DIR/group.key"

cat > "$DIR/wgsigd.toml" <<TOML
listen = "127.0.0.1"
port = $PORT
state_directory = "$DIR/state"

[group.demo]
id = 0
secret_file = "$DIR/group.key"
TOML
echo
echo "### 2. The server:  wgsigd --config $DIR/wgsigd.toml   (listening on 127.0.0.1:$PORT)"
python3 -m wgsigd --config "$DIR/wgsigd.toml" 2>"$DIR/wgsigd.log" &
SERVER_PID=$!
sleep 1

i=0
for name in alice bob carol; do
    i=$((i + 1))
    eval "KEY_$name=\$(key)"
    eval "k=\$KEY_$name"
    lport=$((51818 + 2 * i))
    echo
    echo "### 3.$i $name registers from port $lport:  wgsigc 127.0.0.1 $PORT <$name's public key> group.key $lport"
    wgsigc 127.0.0.1 "$PORT" "$k" "$DIR/group.key" "$lport"
    sleep 0.05
done

echo
echo "### 4. The table, as alice sees it when she refreshes from an odd port (51821):"
# shellcheck disable=SC2154
wgsigc 127.0.0.1 "$PORT" "$KEY_alice" "$DIR/group.key" 51821

kill "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=
echo
echo "### 5. What the server logged (it saved its records on exit):"
cat "$DIR/wgsigd.log"
