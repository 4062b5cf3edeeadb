#!/bin/bash
# The NAT lab run inside the QEMU VM by tests/test_kernel_vm.py (see its docstring). What the
# scenarios observe (wgsigc's exit codes and output, the kernel's endpoints, allowed IPs and
# handshakes, pings) is printed as FACT lines (tests/labfacts.sh) for the tests to judge; RESULT
# lines are the lab's own preconditions.
set -u
. /srv/payload/labfacts.sh
PASSES=0; FAILS=0
result() { echo "RESULT $1 $2 ${3:-}"; if [ "$2" = PASS ]; then PASSES=$((PASSES+1)); else FAILS=$((FAILS+1)); fi; }
check() { name=$1; shift; if "$@"; then result "$name" PASS; else result "$name" FAIL "$*"; fi; }
stamp() { echo "=== $(cut -d' ' -f1 /proc/uptime) s: $*"; }
SRC=/srv/payload/src
NEW=/srv/payload/pylib
PYPATH=$SRC

wgsigc() {  # wgsigc NAME NS ARGS...: run, print output, keep rc in $RC and output in $OUT, facts NAME.rc/.out
    name=$1; ns=$2; shift 2
    OUT=$(ip netns exec "$ns" ${WRAP:-} env PYTHONPATH="$PYPATH" python3 -m wgsigc "$@" 2>&1); RC=$?
    echo "--- wgsigc[$ns] $* -> rc=$RC"; echo "$OUT"
    fact_run "$name" "$RC" "$OUT"
}

stamp "lab setup"
. /srv/payload/natlab.sh
natlab_setup pub
for x in a b; do
    check nat${x}_ruleset sh -c "ip netns exec nat$x nft list chain ip nat post | grep -q masquerade"
done
head -c 32 /dev/urandom > /tmp/secret; chmod 600 /tmp/secret
(cd /tmp && ip netns exec pub env PYTHONPATH=$SRC python3 -m wgsigd /tmp/secret 1223 >/tmp/wgsigd1.log 2>&1 &)
(cd /tmp && ip netns exec pub env PYTHONPATH=$SRC python3 -m wgsigd /tmp/secret 1224 >/tmp/wgsigd2.log 2>&1 &)
wg genkey > /tmp/a.key; wg pubkey < /tmp/a.key > /tmp/a.pub
wg genkey > /tmp/b.key; wg pubkey < /tmp/b.key > /tmp/b.pub
wg genkey | wg pubkey > /tmp/c.pub  # a third peer of a's that never registers
wg genkey | wg pubkey > /tmp/d.pub  # registered; in a's [[interface.wg0.peer]] list, not on its interface
wg genkey | wg pubkey > /tmp/e.pub  # registered; neither on a's interface nor in its configuration
for x in a b c d e; do fact key_$x "$(cat /tmp/$x.pub)"; done
for x in a b; do
    cat > /tmp/$x.toml <<EOF
state_directory = "/tmp/state-$x"
[interface.wg0]
servers = ["192.0.2.1:1223", "192.0.2.1:1224"]
secret_file = "/tmp/secret"
handshake_threshold = 5
handshake_timeout = 3
# peers are run one after another by this script: no run waits for the other peer
converge_seconds = 0
EOF
done
for i in $(seq 50); do
    n=$(ip netns exec pub ss -Hlun | grep -c ':122[34] ' || true)
    [ "$n" = 2 ] && break; sleep 0.2
done
check servers_listening test "$n" = 2
# the direct-bind checks below run wgsigc without CAP_NET_RAW: make sure that really denies raw sockets
check raw_denied_without_cap sh -c "! ip netns exec a setpriv --bounding-set=-net_raw python3 -c \
    'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)' 2>/dev/null"
# d and e register with server 1 from the public network, with the C client's mode
for x in d:40002 e:40004; do
    ip netns exec pub env PYTHONPATH=$SRC python3 -m wgsigc 192.0.2.1 1223 "$(cat /tmp/${x%:*}.pub)" /tmp/secret ${x#*:} >/dev/null
    check ${x%:*}_registered test $? = 0
done

setup_wg() {  # setup_wg TAG: fresh interfaces; facts TAG_setup_ips_a/_b (allowed IPs as set up)
    for x in a b; do
        ip -n $x link del wg0 2>/dev/null || true
        rm -rf /tmp/state-$x
    done
    ip netns exec nata conntrack -F >/dev/null 2>&1 || true
    ip netns exec natb conntrack -F >/dev/null 2>&1 || true
    ip -n a link add wg0 type wireguard
    ip netns exec a wg set wg0 private-key /tmp/a.key listen-port 51820 \
        peer "$(cat /tmp/b.pub)" allowed-ips 10.99.0.2/32,10.200.0.0/16 \
        peer "$(cat /tmp/c.pub)" allowed-ips 10.99.0.3/32
    ip -n a addr add 10.99.0.1/24 dev wg0; ip -n a link set wg0 up
    ip -n b link add wg0 type wireguard
    ip netns exec b wg set wg0 private-key /tmp/b.key listen-port 51820 peer "$(cat /tmp/a.pub)" allowed-ips 10.99.0.1/32
    ip -n b addr add 10.99.0.2/24 dev wg0; ip -n b link set wg0 up
    fact_ips "$1_setup"
}
fact_ips() {  # fact_ips NAME: NAME_ips_a and NAME_ips_b, the peers' allowed IPs now ("KEY\tCIDR CIDR" lines)
    fact "$1_ips_a" "$(ip netns exec a wg show wg0 allowed-ips)"; fact "$1_ips_b" "$(ip netns exec b wg show wg0 allowed-ips)"
}
fact_handshake() {  # fact_handshake NAME NS PUB: wait up to 15 s for a handshake with that peer; NAME = its UNIX time (0: none)
    for i in $(seq 60); do
        t=$(ip netns exec "$2" wg show wg0 latest-handshakes | awk -v k="$(cat "$3")" '$1 == k {print $2}')
        [ "${t:-0}" -gt 0 ] && break
        sleep 0.25
    done
    fact "$1" "${t:-0}"
}
wait_handshake_older_than() {  # wait until a's latest handshake is older than $1 s
    for i in $(seq 80); do
        t=$(ip netns exec a wg show wg0 latest-handshakes | awk -v k="$(cat /tmp/b.pub)" '$1 == k {print $2}')
        [ $(( $(date +%s) - ${t:-0} )) -gt "$1" ] && return 0
        sleep 0.25
    done
}

fact_reader() {  # fact_reader TAG IFNAME: the stdlib reader (wgsig.wgnetlink) beside pyroute2's on the real kernel
    ip netns exec a env PYTHONPATH="$PYPATH" python3 -c '
import sys
from wgsig.rtnetlink import RtnetlinkError
from wgsigc import netlink, pyroute2load
name = sys.argv[1]
ours = netlink.read_interface(name)
print("pyroute2_loaded_by_read", "pyroute2" in sys.modules)
parts = len(netlink.device_messages(name))
codes = []
for other in ("gone0", "eth0"):  # vanished, not WireGuard
    try:
        netlink.device_messages(other)
        codes.append("none")
    except RtnetlinkError as error:
        codes.append(str(error.errno))
wg = pyroute2load.wireguard_class()()
messages = []
for m in wg.info(name):
    peers = [{"public_key": p.get_attr("WGPEER_A_PUBLIC_KEY"), "endpoint": p.get_attr("WGPEER_A_ENDPOINT"),
              "allowed_ips": [ip["addr"] for ip in p.get_attr("WGPEER_A_ALLOWEDIPS") or () if ip.get("addr")],
              "keepalive": p.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL"),
              "latest_handshake": p.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")} for p in m.get_attr("WGDEVICE_A_PEERS") or ()]
    messages.append({"public_key": m.get_attr("WGDEVICE_A_PUBLIC_KEY"), "fwmark": m.get_attr("WGDEVICE_A_FWMARK"),
                     "listen_port": m.get_attr("WGDEVICE_A_LISTEN_PORT"), "peers": peers})
theirs = netlink.merge_device(messages, name)
again = netlink.read_interface(name)  # a handshake between two reads changes one: either read may match
print("reader_matches_pyroute2", theirs in (ours, again), len(ours.peers), parts)
print("reader_error_codes", *codes)
if theirs not in (ours, again):
    print("ours", ours, "pyroute2", theirs)
' "$2" | while read -r key value; do fact "${1}_${2}_$key" "$value"; done
}

scenario_connect() {  # scenario_connect TAG
    tag=$1
    setup_wg $tag
    probe=$(ip netns exec a env PYTHONPATH="$PYPATH" python3 -c '
import importlib.metadata, sys
from wgsigc import pyroute2load
WireGuard = pyroute2load.wireguard_class()
print(importlib.metadata.version("pyroute2"), pyroute2load.sends_kernel_peer_flags(), "pyroute2.ndb.main" in sys.modules)
from pyroute2.netlink.exceptions import NetlinkError
wg = WireGuard()
peer = {"public_key": "A" * 43 + "=", "endpoint_addr": "192.0.2.9", "endpoint_port": 9, "allowed_ips": ["10.9.9.9/32"]}
for call in (lambda: wg.info("gone0"), lambda: wg.set("gone0", peer=peer), lambda: wg.info("eth0"), lambda: wg.set("eth0", peer=peer)):
    try:
        call()
        print("no-error")
    except NetlinkError as error:
        print(error.code)
')
    # pyroute2 as loaded: version, whether it sends the kernel's peer flags, whether its package __init__ ran
    read -r version kernel_flags init_ran <<< "$(echo "$probe" | head -n1)"
    fact ${tag}_pyroute2_version "$version"; fact ${tag}_sends_kernel_peer_flags "$kernel_flags"
    fact ${tag}_package_init_ran "$init_ran"
    # NetlinkError codes for info, set on a vanished interface, then on one that is not WireGuard
    fact ${tag}_netlink_error_codes $(echo "$probe" | tail -n+2)
    ip -n a link set wg0 down
    fact ${tag}_listeners_on_51820_while_down "$(ip netns exec a ss -Hlun 'sport = :51820')"
    WRAP="setpriv --bounding-set=-net_raw" wgsigc ${tag}_a_down_no_raw a --config /tmp/a.toml
    ip -n a link set wg0 up
    wgsigc ${tag}_b_first b --config /tmp/b.toml
    wgsigc ${tag}_a_second a --config /tmp/a.toml
    fact_handshake ${tag}_handshake_a_with_b a /tmp/b.pub
    fact_ping ${tag}_ping_a_to_b a 10.99.0.2 3
    fact_endpoint ${tag}_endpoint_of_b_in_a a wg0 /tmp/b.pub
    fact_endpoint ${tag}_endpoint_of_a_in_b b wg0 /tmp/a.pub
    fact_ips ${tag}_connected
    fact_reader $tag wg0
    # a device whose dump the kernel splits over several messages (and peers' allowed IPs with it)
    ip -n a link del wgbig 2>/dev/null || true
    ip -n a link add wgbig type wireguard
    python3 -c '
import base64, os
print("[Interface]\nPrivateKey =", base64.b64encode(os.urandom(32)).decode(), "\nListenPort = 51999\nFwMark = 0x51")
for i in range(300):
    print("[Peer]\nPublicKey =", base64.b64encode(os.urandom(32)).decode())
    print(f"AllowedIPs = 10.{i // 250}.{i % 250}.1/32, fd00:{i:x}::/64, 10.128.{i // 250}.{i % 250}/32")
    print(f"Endpoint = 192.0.2.{i % 250 + 1}:{1000 + i}\nPersistentKeepalive = {i % 30}")
' > /tmp/wgbig.conf
    ip netns exec a wg setconf wgbig /tmp/wgbig.conf
    fact_reader $tag wgbig
    ip -n a link del wgbig
    ip netns exec a wg show wg0
    # handshake_threshold is 5 s in these configs (to test recovery quickly); slow emulation
    # can take longer than that between handshake and this run, so check with 120 s
    # ... and d from the configuration is added, with exactly its configured allowed IPs
    sed 's/^handshake_threshold = 5$/handshake_threshold = 120/' /tmp/a.toml > /tmp/a120.toml
    printf '[[interface.wg0.peer]]\npublic_key = "%s"\nallowed_ips = ["10.99.0.4/32", "10.201.0.0/16"]\n' \
        "$(cat /tmp/d.pub)" >> /tmp/a120.toml
    fact_endpoint ${tag}_endpoint_of_b_in_a_before_healthy_run a wg0 /tmp/b.pub
    wgsigc ${tag}_a_healthy_with_d a --config /tmp/a120.toml
    fact_endpoint ${tag}_endpoint_of_b_in_a_after_healthy_run a wg0 /tmp/b.pub
    fact_endpoint ${tag}_endpoint_of_d_in_a a wg0 /tmp/d.pub
    fact ${tag}_peers_of_a_with_d "$(ip netns exec a wg show wg0 peers)"
    fact_ips ${tag}_with_d
    ip netns exec a wg set wg0 peer "$(cat /tmp/d.pub)" remove  # the test removes it, for the scenarios below
}

stamp "scenario 1: pyroute2 0.7.2"
PYPATH=$SRC
scenario_connect p072
wgsigc p072_status_json a status --config /tmp/a.toml --json

stamp "scenario 2: pyroute2 0.9.5"
PYPATH=$SRC:$NEW
scenario_connect p095

stamp "scenario 3: one server down, NAT A's public address changes"
pid2=$(ip netns exec pub ss -Hlunp 'sport = :1224' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
kill "$pid2"
for i in $(seq 50); do ip netns exec pub ss -Hlun | grep -q ':1224 ' || break; sleep 0.2; done
check server2_stopped sh -c "! ip netns exec pub ss -Hlun | grep -q ':1224 '"
ip -n nata addr del 192.0.2.11/24 dev wan0; ip -n nata addr add 192.0.2.21/24 dev wan0
ip netns exec nata conntrack -F >/dev/null 2>&1 || true
wait_handshake_older_than 5
fact_ping mapping_ping_after_change a 10.99.0.2
wgsigc mapping_a a --config /tmp/a.toml
wgsigc mapping_b b --config /tmp/b.toml
fact_endpoint mapping_endpoint_of_a_in_b b wg0 /tmp/a.pub
fact_ping mapping_ping_after_runs a 10.99.0.2 3
fact_ips mapping

stamp "scenario 4: masquerade fully-random"
(cd /tmp && ip netns exec pub env PYTHONPATH=$SRC python3 -m wgsigd /tmp/secret 1224 >>/tmp/wgsigd2.log 2>&1 &)
ip netns exec nata nft delete table ip nat
ip netns exec nata nft -f - <<'NFT'
table ip nat {
    chain post { type nat hook postrouting priority srcnat; oifname "wan0" masquerade fully-random; }
}
NFT
check random_ruleset sh -c "ip netns exec nata nft list chain ip nat post | grep -q fully-random"
ip netns exec nata conntrack -F >/dev/null 2>&1 || true
for i in $(seq 50); do ip netns exec pub ss -Hlun | grep -q ':1224 ' && break; sleep 0.2; done
wait_handshake_older_than 5
wgsigc random_a a --config /tmp/a.toml
# b's candidates for a: its record's endpoint, then a's public IP with WireGuard's port; the
# diagnosis comes once each had its 5 s step (one tick per run here: converge_seconds = 0)
wgsigc random_b1 b --config /tmp/b.toml
sleep 6
wgsigc random_b2 b --config /tmp/b.toml
sleep 6
wgsigc random_b3 b --config /tmp/b.toml
# a started waiting for b at random_a (or at its first run after the tunnel went quiet): only
# once each of its candidates had its step can it tell that b is not reached
wgsigc random_a2 a --config /tmp/a.toml
fact_ping random_ping a 10.99.0.2
fact_ips random
fact random_peers_of_a "$(ip netns exec a wg show wg0 peers)"
wgsigc random_b_status b status --config /tmp/b.toml

stamp "scenario 5: b's wg0 deleted (then re-created with a new key) while wgsigc waits for the servers"
# Answers to b come 1.5 s late; as soon as b's registration leaves NAT B, the test changes wg0.
ip netns exec pub tc qdisc add dev pb root netem delay 1500ms
check slow_link sh -c "ip netns exec pub tc qdisc show dev pb | grep -q 'delay 1.5s'"
{ cat /tmp/b.toml; echo "timeout = 4"; } > /tmp/b-slow.toml
change_wg0_mid_run() {  # change_wg0_mid_run NAME CHANGE...: run wgsigc in b, CHANGE once it has registered
    name=$1; shift
    ip netns exec natb conntrack -F >/dev/null 2>&1
    ip netns exec b env PYTHONPATH=$SRC python3 -m wgsigc --config /tmp/b-slow.toml >/tmp/mid.out 2>&1 &
    bg=$!
    for i in $(seq 300); do
        ip netns exec natb conntrack -L -p udp 2>/dev/null | grep -q 'src=10.2.0.2 dst=192.0.2.1 sport=51820 dport=1223' && break
        sleep 0.1
    done
    "$@"
    wait $bg; RC=$?; OUT=$(cat /tmp/mid.out)
    echo "--- wgsigc[b] with wg0 changed mid-run ($*) -> rc=$RC"; echo "$OUT"
    fact_run "$name" "$RC" "$OUT"
}
change_wg0_mid_run vanish ip -n b link del wg0
recreate() {
    ip -n b link del wg0
    ip -n b link add wg0 type wireguard
    ip netns exec b wg set wg0 private-key <(wg genkey) listen-port 51820
}
ip -n b link add wg0 type wireguard
ip netns exec b wg set wg0 private-key /tmp/b.key listen-port 51820 peer "$(cat /tmp/a.pub)" allowed-ips 10.99.0.1/32
ip -n b link set wg0 up
change_wg0_mid_run rekeyed recreate
fact rekeyed_peers_of_b "$(ip netns exec b wg show wg0 peers)"
ip netns exec pub tc qdisc del dev pb root

stamp "done: $PASSES lab checks passed, $FAILS failed"
echo "--- wgsigd logs"; tail -n 20 /tmp/wgsigd1.log /tmp/wgsigd2.log
[ "$FAILS" = 0 ]
