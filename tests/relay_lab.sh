#!/bin/bash
# The relay in the QEMU VM, run by tests/test_relay_vm.py: real kernel WireGuard, two peers each
# behind a NAT that maps every destination to a new port ("masquerade fully-random", unsolicited
# inbound traffic dropped), no port mapping: no hole punching can work. Namespace pub (192.0.2.1)
# runs wgsigd with a [relay] section and the relay process (wgsigd relay) beside it; a (10.1.0.2,
# NAT 192.0.2.11) and b (10.2.0.2, NAT 192.0.2.12) run wgsigc with the shipped defaults, a's run
# first and b's 2 s later, as two timers would, up to three rounds until a ping passes.
# Then: the relay's per-allocation byte rate observed (a burst of large pings), and its expiry
# (no more wgsigc runs, so no renewal: after `lifetime` nothing passes).
# Prints FACT lines (tests/labfacts.sh) and FIGURE lines; tests/test_relay_vm.py judges them.
set -u
umask 077
. /srv/payload/labfacts.sh
. /srv/payload/natlab.sh
SRC=/srv/payload/src
export PYTHONPATH=$SRC
stamp() { echo "=== $(cut -d' ' -f1 /proc/uptime) s: $*"; }
now_s() { date +%s.%N; }
LIFETIME=45

stamp "lab"
head -c 32 /dev/urandom > /tmp/secret; chmod 600 /tmp/secret
natlab_setup pub "masquerade fully-random"  # a (10.1.0.2) behind NAT 192.0.2.11, b (10.2.0.2) behind .12
mkdir -p /tmp/wgsigd-state
cat > /tmp/wgsigd.toml <<EOF2
listen = "192.0.2.1"
port = 1223
state_directory = "/tmp/wgsigd-state"
[group.lab]
id = 0
secret_file = "/tmp/secret"
[relay]
address = "192.0.2.1"
listen = "192.0.2.1"
ports = "40000-40009"
lifetime = $LIFETIME
idle_timeout = 30
rate = 100000
burst = 50000
EOF2
(cd /tmp && ip netns exec pub python3 -m wgsigd --config /tmp/wgsigd.toml > /tmp/wgsigd.log 2>&1 &)
cd /tmp
ip netns exec pub python3 -m wgsigd relay --config /tmp/wgsigd.toml > /tmp/relay.log 2>&1 &
relay_pid=$!
for i in $(seq 100); do ip netns exec pub ss -Hlun | grep -q ':1223 ' && break; sleep 0.2; done

for k in a b; do wg genkey > "/tmp/$k.key"; wg pubkey < "/tmp/$k.key" > "/tmp/$k.pub"; done
wg_peer() {  # NS TUNNEL_IP OTHER OTHER_TUNNEL_IP
    ip -n "$1" link add wg0 type wireguard
    ip netns exec "$1" wg set wg0 private-key "/tmp/$1.key" listen-port 51820 peer "$(cat "/tmp/$3.pub")" \
        allowed-ips "$4/32"
    ip -n "$1" addr add "$2/24" dev wg0; ip -n "$1" link set wg0 up
    { echo "state_directory = \"/tmp/state-$1\""; echo "[interface.wg0]"
      echo 'servers = ["192.0.2.1:1223"]'; echo 'secret_file = "/tmp/secret"'; } > "/tmp/$1.toml"
}
wg_peer a 10.99.0.1 b 10.99.0.2
wg_peer b 10.99.0.2 a 10.99.0.1

stamp "wgsigc rounds"
ip netns exec a ping -D -n -O -i 0.5 -W 1 10.99.0.2 > /tmp/ping 2>&1 &
pinger=$!
t0=$(now_s)
for round in 1 2 3; do
    start=$(now_s)
    ip netns exec a python3 -m wgsigc --config /tmp/a.toml > /tmp/a.out 2>&1 &
    runa=$!
    sleep 2
    ip netns exec b python3 -m wgsigc --config /tmp/b.toml > /tmp/b.out 2>&1 &
    runb=$!
    wait "$runa"; rca=$?; wait "$runb"; rcb=$?
    fact_run "a$round" "$rca" "$(cat /tmp/a.out)"
    fact_run "b$round" "$rcb" "$(cat /tmp/b.out)"
    grep -q 'bytes from' /tmp/ping && break
done
kill "$pinger"; wait "$pinger" 2>/dev/null
first=$(awk -F'[][]' '/bytes from/ {print $2; exit}' /tmp/ping)
fact rounds "$round"
[ -n "$first" ] && echo "FIGURE first_reply $(awk -v a="$first" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')"
fact_endpoint ep_in_a a wg0 /tmp/b.pub
fact_endpoint ep_in_b b wg0 /tmp/a.pub
fact_ping ping_relayed a 10.99.0.2 5
fact allocations "$(cat /tmp/wgsigd-state/relay-allocations)"
ip netns exec a python3 -m wgsigc status --config /tmp/a.toml > /tmp/a.status 2>&1 &
status_a=$!
ip netns exec b python3 -m wgsigc status --config /tmp/b.toml > /tmp/b.status 2>&1
wait "$status_a"  # not a bare wait: wgsigd and the relay run in the background
fact status_a "$(cat /tmp/a.status)"
fact status_b "$(cat /tmp/b.status)"
fact nat_ports "$(ip netns exec nata conntrack -L -p udp 2>/dev/null | grep -c 'dport=40' || true)"

stamp "rate limit"
# 200 pings of 1,300 bytes (1,360-byte WireGuard datagrams) at 100 a second: about 270 kB/s
# through a relay that allows 100 kB/s (both directions together) after a burst of 50 kB.
ip netns exec a ping -q -n -c 200 -i 0.01 -s 1300 -W 1 10.99.0.2 > /tmp/flood 2>&1
fact flood "$(grep -E 'transmitted|loss' /tmp/flood)"
sleep 1
fact_ping ping_after_flood a 10.99.0.2 5

stamp "expiry"
# No more runs: nobody renews the allocation; it ends LIFETIME s after the last requests.
t1=$(now_s)
gone=""
for i in $(seq 40); do
    if ! ip netns exec a ping -c1 -W2 10.99.0.2 >/dev/null 2>&1; then
        if ! ip netns exec a ping -c1 -W2 10.99.0.2 >/dev/null 2>&1; then gone=yes; break; fi
    fi
    sleep 2
done
fact expired "$gone"
echo "FIGURE expired_after $(awk -v a="$(now_s)" -v b="$t1" 'BEGIN {printf "%.1f", a - b}')"
for i in $(seq 20); do [ "$(wc -l < /tmp/wgsigd-state/relay-allocations)" = 1 ] && break; sleep 1; done
fact allocations_after "$(cat /tmp/wgsigd-state/relay-allocations)"
kill -TERM "$relay_pid"; wait "$relay_pid"
fact relay_log "$(cat /tmp/relay.log)"
fact wgsigd_log "$(tail -20 /tmp/wgsigd.log)"
stamp "done"
