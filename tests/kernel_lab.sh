#!/bin/bash
# The NAT lab run inside the QEMU VM by tests/test_kernel_vm.py (see its docstring).
set -u
PASSES=0; FAILS=0
result() { echo "RESULT $1 $2 ${3:-}"; if [ "$2" = PASS ]; then PASSES=$((PASSES+1)); else FAILS=$((FAILS+1)); fi; }
check() { name=$1; shift; if "$@"; then result "$name" PASS; else result "$name" FAIL "$*"; fi; }
stamp() { echo "=== $(cut -d' ' -f1 /proc/uptime) s: $*"; }
SRC=/srv/payload/src
NEW=/srv/payload/pylib
PYPATH=$SRC

wgsigc() {  # wgsigc NS ARGS...: run, print output, keep rc in $RC and output in $OUT
    ns=$1; shift
    OUT=$(ip netns exec "$ns" ${WRAP:-} env PYTHONPATH="$PYPATH" python3 -m wgsigc "$@" 2>&1); RC=$?
    echo "--- wgsigc[$ns] $* -> rc=$RC"; echo "$OUT"
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

setup_wg() {
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
    ip netns exec a wg show wg0 allowed-ips > /tmp/a.ips; ip netns exec b wg show wg0 allowed-ips > /tmp/b.ips
}
ips_unchanged() {
    ip netns exec a wg show wg0 allowed-ips | cmp -s - /tmp/a.ips && ip netns exec b wg show wg0 allowed-ips | cmp -s - /tmp/b.ips
}
handshake_in() {  # handshake_in NS: wait up to 15 s for a handshake with the other peer
    for i in $(seq 60); do
        ip netns exec "$1" wg show wg0 latest-handshakes | awk '$2 > 0 {f=1} END {exit !f}' && return 0
        sleep 0.25
    done
    return 1
}
wait_handshake_older_than() {  # wait until a's latest handshake is older than $1 s
    for i in $(seq 80); do
        t=$(ip netns exec a wg show wg0 latest-handshakes | awk -v k="$(cat /tmp/b.pub)" '$1 == k {print $2}')
        [ $(( $(date +%s) - ${t:-0} )) -gt "$1" ] && return 0
        sleep 0.25
    done
}

scenario_connect() {  # scenario_connect TAG
    tag=$1
    setup_wg
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
    version=$(echo "$probe" | head -n1 | cut -d' ' -f1)
    echo "pyroute2 in use (version, sends the kernel's peer flags, package __init__ ran): $(echo "$probe" | head -n1);" \
        "NetlinkError codes for gone/non-WireGuard info, set:" $(echo "$probe" | tail -n+2)
    check ${tag}_pyroute2_version test "$version" = "$2"
    # loaded without the package __init__; 0.7.2 gets allowed IPs passed back, 0.9.5 update_only
    check ${tag}_pyroute2_lite_load test "$(echo "$probe" | head -n1 | cut -d' ' -f2-)" = "$3 False"
    # ENODEV for a vanished interface, EOPNOTSUPP for one that is not WireGuard (as the fake raises)
    check ${tag}_fake_errors_match test "$(echo "$probe" | tail -n+2 | tr '\n' ' ')" = "19 19 95 95 "
    ip -n a link set wg0 down
    check ${tag}_down_port_free sh -c "! ip netns exec a ss -Hlun 'sport = :51820' | grep -q ."
    WRAP="setpriv --bounding-set=-net_raw" wgsigc a --config /tmp/a.toml
    check ${tag}_first_run_a test $RC = 0
    check ${tag}_direct_bind sh -c "echo \"\$0\" | grep -q 'public endpoint 192.0.2.11:51820; 2 of 2 servers answered'" "$OUT"
    ip -n a link set wg0 up
    wgsigc b --config /tmp/b.toml; check ${tag}_first_run_b test $RC = 0
    wgsigc a --config /tmp/a.toml; check ${tag}_second_run_a test $RC = 0
    check ${tag}_handshake handshake_in a
    check ${tag}_ping ip netns exec a ping -c1 -W3 10.99.0.2
    check ${tag}_allowed_ips_unchanged ips_unchanged
    ip netns exec a wg show wg0
    # handshake_threshold is 5 s in these configs (to test recovery quickly); slow emulation
    # can take longer than that between handshake and this run, so check with 120 s
    # ... and d from the configuration is added, with exactly its configured allowed IPs
    sed 's/^handshake_threshold = 5$/handshake_threshold = 120/' /tmp/a.toml > /tmp/a120.toml
    printf '[[interface.wg0.peer]]\npublic_key = "%s"\nallowed_ips = ["10.99.0.4/32", "10.201.0.0/16"]\n' \
        "$(cat /tmp/d.pub)" >> /tmp/a120.toml
    wgsigc a --config /tmp/a120.toml
    check ${tag}_healthy_left_alone sh -c "test $RC = 0 && echo \"\$0\" | grep -q '1 peers updated, 1 healthy' &&
        ! echo \"\$0\" | grep -qF \"peer \$1: \"" "$OUT" "$(cat /tmp/b.pub)"
    d_ips=$(ip netns exec a wg show wg0 allowed-ips | awk -v k="$(cat /tmp/d.pub)" '$1 == k {$1 = ""; print}' | tr ' ' '\n' | sort | xargs)
    d_ep=$(ip netns exec a wg show wg0 endpoints | awk -v k="$(cat /tmp/d.pub)" '$1 == k {print $2}')
    echo "d: allowed IPs '$d_ips', endpoint '$d_ep'"
    check ${tag}_config_peer_added test "$d_ips|$d_ep" = "10.201.0.0/16 10.99.0.4/32|192.0.2.1:40002"
    check ${tag}_unconfigured_key_ignored sh -c "! ip netns exec a wg show wg0 peers | grep -qF \"\$0\"" "$(cat /tmp/e.pub)"
    check ${tag}_config_peer_others_unchanged sh -c "ip netns exec a wg show wg0 allowed-ips | grep -vF \"\$0\" | cmp -s - /tmp/a.ips" "$(cat /tmp/d.pub)"
    ip netns exec a wg set wg0 peer "$(cat /tmp/d.pub)" remove  # the test removes it, for the scenarios below
}

stamp "scenario 1: pyroute2 0.7.2"
PYPATH=$SRC
scenario_connect p072 0.7.2 False
wgsigc a status --config /tmp/a.toml --json
check p072_status_json sh -c "echo \"\$0\" | python3 -c '
import json, sys
v = json.load(sys.stdin)[\"interfaces\"][0]
p = {x[\"public_key\"]: x for x in v[\"peers\"]}
b = p[open(\"/tmp/b.pub\").read().strip()]
assert b[\"kernel_endpoint\"] == \"192.0.2.12:51820\" and b[\"server_endpoint\"] == \"192.0.2.12:51820\", b
assert b[\"handshake_age\"] is not None and b[\"last_action\"] == \"healthy, left alone\", b
assert v[\"last_run\"][\"own_endpoint\"] == \"192.0.2.11:51820\", v
'" "$OUT"

stamp "scenario 2: pyroute2 0.9.5"
PYPATH=$SRC:$NEW
scenario_connect p095 0.9.5 True

stamp "scenario 3: one server down, NAT A's public address changes"
pid2=$(ip netns exec pub ss -Hlunp 'sport = :1224' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
kill "$pid2"
for i in $(seq 50); do ip netns exec pub ss -Hlun | grep -q ':1224 ' || break; sleep 0.2; done
check server2_stopped sh -c "! ip netns exec pub ss -Hlun | grep -q ':1224 '"
ip -n nata addr del 192.0.2.11/24 dev wan0; ip -n nata addr add 192.0.2.21/24 dev wan0
ip netns exec nata conntrack -F >/dev/null 2>&1 || true
wait_handshake_older_than 5
check mapping_change_breaks_tunnel sh -c '! ip netns exec a ping -c1 -W2 10.99.0.2'
wgsigc a --config /tmp/a.toml; check mapping_run_a test $RC = 0
check one_server_down_warns sh -c "echo \"\$0\" | grep -q 'warning: .*192.0.2.1:1224'" "$OUT"
wgsigc b --config /tmp/b.toml; check mapping_run_b test $RC = 0
check mapping_b_follows sh -c "echo \"\$0\" | grep -q -- '-> 192.0.2.21:51820'" "$OUT"
check mapping_restored_ping ip netns exec a ping -c1 -W3 10.99.0.2
check mapping_allowed_ips_unchanged ips_unchanged

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
wgsigc a --config /tmp/a.toml
check random_a_diagnosis sh -c "test $RC = 5 && echo \"\$0\" | grep -q 'symmetric NAT'" "$OUT"
# b's candidates for a: its record's endpoint, then a's public IP with WireGuard's port; the
# diagnosis comes once each had its 5 s step (one tick per run here: converge_seconds = 0)
wgsigc b --config /tmp/b.toml
sleep 6
wgsigc b --config /tmp/b.toml
check random_b_second_candidate sh -c "echo \"\$0\" | grep -q '(candidate 2 of 2)'" "$OUT"
sleep 6
wgsigc b --config /tmp/b.toml
check random_b_diagnosis sh -c "test $RC = 5 && echo \"\$0\" | grep -q 'no handshake [0-9]* s after its endpoint was set'" "$OUT"
check random_no_tunnel sh -c '! ip netns exec a ping -c1 -W2 10.99.0.2'
check random_allowed_ips_unchanged ips_unchanged
check random_keys_kept sh -c 'ip netns exec a wg show wg0 peers | sort | cmp -s - "$0"' "$(sort /tmp/b.pub /tmp/c.pub > /tmp/apeers; echo /tmp/apeers)"
wgsigc b status --config /tmp/b.toml
check random_status_shows_problem sh -c "echo \"\$0\" | grep -q 'problem: peer'" "$OUT"

stamp "scenario 5: b's wg0 deleted (then re-created with a new key) while wgsigc waits for the servers"
# Answers to b come 1.5 s late; as soon as b's registration leaves NAT B, the test changes wg0.
ip netns exec pub tc qdisc add dev pb root netem delay 1500ms
check slow_link sh -c "ip netns exec pub tc qdisc show dev pb | grep -q 'delay 1.5s'"
{ cat /tmp/b.toml; echo "timeout = 4"; } > /tmp/b-slow.toml
change_wg0_mid_run() {  # change_wg0_mid_run CHANGE...: run wgsigc in b, CHANGE once it has registered
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
}
change_wg0_mid_run ip -n b link del wg0
check vanish_exit_4 test $RC = 4
check vanish_one_line sh -c "test \"\$(echo \"\$0\" | wc -l)\" = 1 &&
    echo \"\$0\" | grep -q '^wgsigc: wg0: interface wg0 does not exist.*nothing was written to it$'" "$OUT"
recreate() {
    ip -n b link del wg0
    ip -n b link add wg0 type wireguard
    ip netns exec b wg set wg0 private-key <(wg genkey) listen-port 51820
}
ip -n b link add wg0 type wireguard
ip netns exec b wg set wg0 private-key /tmp/b.key listen-port 51820 peer "$(cat /tmp/a.pub)" allowed-ips 10.99.0.1/32
ip -n b link set wg0 up
change_wg0_mid_run recreate
check rekeyed_exit_4 sh -c "test $RC = 4 && echo \"\$0\" | grep -q 'wg0 changed during the run'" "$OUT"
check rekeyed_nothing_written sh -c "test -z \"\$(ip netns exec b wg show wg0 peers)\""
ip netns exec pub tc qdisc del dev pb root

stamp "done: $PASSES passed, $FAILS failed"
echo "--- wgsigd logs"; tail -n 20 /tmp/wgsigd1.log /tmp/wgsigd2.log
[ "$FAILS" = 0 ]
