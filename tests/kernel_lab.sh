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
    OUT=$(ip netns exec "$ns" env PYTHONPATH="$PYPATH" python3 -m wgsigc "$@" 2>&1); RC=$?
    echo "--- wgsigc[$ns] $* -> rc=$RC"; echo "$OUT"
}

stamp "lab setup"
for n in pub nata natb a b; do ip netns add $n; ip -n $n link set lo up; done
ip -n pub link add br0 type bridge; ip -n pub addr add 192.0.2.1/24 dev br0; ip -n pub link set br0 up
for x in a b; do
    case $x in a) wan=192.0.2.11; lan=10.1;; b) wan=192.0.2.12; lan=10.2;; esac
    ip link add wan0 netns nat$x type veth peer name p$x netns pub
    ip -n pub link set p$x master br0 up
    ip -n nat$x addr add $wan/24 dev wan0; ip -n nat$x link set wan0 up
    ip link add lan0 netns nat$x type veth peer name eth0 netns $x
    ip -n nat$x addr add $lan.0.1/24 dev lan0; ip -n nat$x link set lan0 up
    ip -n $x addr add $lan.0.2/24 dev eth0; ip -n $x link set eth0 up
    ip -n $x route add default via $lan.0.1
    ip netns exec nat$x sysctl -qw net.ipv4.ip_forward=1
    ip netns exec nat$x nft -f - <<'NFT'
table ip nat {
    chain post { type nat hook postrouting priority srcnat; oifname "wan0" masquerade; }
}
table ip filter {
    # prerouting, not forward: a punch packet to the NAT's own address must not create a
    # conntrack entry either (it would clash with the peer's mapping and move its port)
    chain pre { type filter hook prerouting priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        iifname "wan0" drop
    }
}
NFT
    check nat${x}_ruleset sh -c "ip netns exec nat$x nft list chain ip nat post | grep -q masquerade"
done
head -c 32 /dev/urandom > /tmp/secret; chmod 600 /tmp/secret
(cd /tmp && ip netns exec pub env PYTHONPATH=$SRC python3 -m wgsigd /tmp/secret 1223 >/tmp/wgsigd1.log 2>&1 &)
(cd /tmp && ip netns exec pub env PYTHONPATH=$SRC python3 -m wgsigd /tmp/secret 1224 >/tmp/wgsigd2.log 2>&1 &)
wg genkey > /tmp/a.key; wg pubkey < /tmp/a.key > /tmp/a.pub
wg genkey > /tmp/b.key; wg pubkey < /tmp/b.key > /tmp/b.pub
wg genkey | wg pubkey > /tmp/c.pub  # a third peer of a's that never registers
for x in a b; do
    cat > /tmp/$x.toml <<EOF
state_directory = "/tmp/state-$x"
[interface.wg0]
servers = ["192.0.2.1:1223", "192.0.2.1:1224"]
secret_file = "/tmp/secret"
handshake_threshold = 5
handshake_timeout = 3
EOF
done
for i in $(seq 50); do
    n=$(ip netns exec pub ss -Hlun | grep -c ':122[34] ' || true)
    [ "$n" = 2 ] && break; sleep 0.2
done
check servers_listening test "$n" = 2

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
    version=$(ip netns exec a env PYTHONPATH="$PYPATH" python3 -c 'from wgsigc.netlink import pyroute2_version as v; print(v())')
    echo "pyroute2 version in use: $version"
    check ${tag}_pyroute2_version test "$version" = "$2"
    wgsigc a --config /tmp/a.toml; check ${tag}_first_run_a test $RC = 0
    wgsigc b --config /tmp/b.toml; check ${tag}_first_run_b test $RC = 0
    wgsigc a --config /tmp/a.toml; check ${tag}_second_run_a test $RC = 0
    check ${tag}_handshake handshake_in a
    check ${tag}_ping ip netns exec a ping -c1 -W3 10.99.0.2
    check ${tag}_allowed_ips_unchanged ips_unchanged
    ip netns exec a wg show wg0
    # handshake_threshold is 5 s in these configs (to test recovery quickly); slow emulation
    # can take longer than that between handshake and this run, so check with 120 s
    sed 's/^handshake_threshold = 5$/handshake_threshold = 120/' /tmp/a.toml > /tmp/a120.toml
    wgsigc a --config /tmp/a120.toml
    check ${tag}_healthy_left_alone sh -c "test $RC = 0 && echo \"\$0\" | grep -q '0 peers updated, 1 healthy'" "$OUT"
}

stamp "scenario 1: pyroute2 0.7.2"
PYPATH=$SRC
scenario_connect p072 "(0, 7, 2)"
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
scenario_connect p095 "(0, 9, 5)"

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
wgsigc b --config /tmp/b.toml
sleep 4
wgsigc b --config /tmp/b.toml
check random_b_diagnosis sh -c "test $RC = 5 && echo \"\$0\" | grep -q 'no handshake since its endpoint was set'" "$OUT"
check random_no_tunnel sh -c '! ip netns exec a ping -c1 -W2 10.99.0.2'
check random_allowed_ips_unchanged ips_unchanged
check random_keys_kept sh -c 'ip netns exec a wg show wg0 peers | sort | cmp -s - "$0"' "$(sort /tmp/b.pub /tmp/c.pub > /tmp/apeers; echo /tmp/apeers)"
wgsigc b status --config /tmp/b.toml
check random_status_shows_problem sh -c "echo \"\$0\" | grep -q 'problem: peer'" "$OUT"

stamp "done: $PASSES passed, $FAILS failed"
echo "--- wgsigd logs"; tail -n 20 /tmp/wgsigd1.log /tmp/wgsigd2.log
[ "$FAILS" = 0 ]
