#!/bin/bash
# The X1 lab run inside the QEMU VM by tests/test_x1_vm.py (see its docstring): real kernel
# WireGuard, real NATs and stateful firewalls (nftables in namespaces), wgsigc with the shipped
# defaults (candidates on, converge_seconds 25, handshake_threshold 180) unless a scenario says.
# What the scenarios observe (wgsigc's exit codes and output, the kernel's endpoints, pings,
# wgsigd's log) is printed as FACT lines (tests/labfacts.sh) for the tests to judge; RESULT lines
# are the lab's own preconditions, FIGURE lines measured seconds.
set -u
. /srv/payload/labfacts.sh
PASSES=0; FAILS=0
result() { echo "RESULT $1 $2 ${3:-}"; if [ "$2" = PASS ]; then PASSES=$((PASSES+1)); else FAILS=$((FAILS+1)); fi; }
check() { name=$1; shift; if "$@"; then result "$name" PASS; else result "$name" FAIL "$*"; fi; }
stamp() { echo "=== $(cut -d' ' -f1 /proc/uptime) s: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
SRC=/srv/payload/src
export PYTHONPATH=$SRC

wgsigc() {  # wgsigc NAME NS ARGS...: run in the foreground, output in $OUT, code in $RC, facts NAME.rc/.out
    name=$1; ns=$2; shift 2
    OUT=$(ip netns exec "$ns" python3 -m wgsigc "$@" 2>&1); RC=$?
    echo "--- wgsigc[$ns] $* -> rc=$RC"; echo "$OUT"
    fact_run "$name" "$RC" "$OUT"
}
wgsigc_bg() {  # wgsigc_bg NAME NS CONFIG: a run in the background (it converges while the other peer starts)
    BGNAME=$1
    ip netns exec "$2" python3 -m wgsigc --config "$3" >/tmp/bg.out 2>&1 &
    BG=$!
}
wait_bg() {  # the background run's code in $BGRC, output in $BGOUT, facts NAME.rc/.out
    wait "$BG"; BGRC=$?; BGOUT=$(cat /tmp/bg.out); rm -f /tmp/bg.out
    echo "--- wgsigc[background] -> rc=$BGRC"; echo "$BGOUT"
    fact_run "$BGNAME" "$BGRC" "$BGOUT"
}
endpoint() {  # endpoint NAME NS PEER: fact NAME, the endpoint NS's wg0 holds for peer PEER (a key name)
    fact_endpoint "$1" "$2" wg0 "/tmp/$3.pub"
}
config() {  # config NAME SERVER [EXTRA LINES...]
    name=$1; server=$2; shift 2
    { echo "state_directory = \"/tmp/state-$name\""; echo "[interface.wg0]"; echo "servers = [\"$server\"]"
      echo 'secret_file = "/tmp/secret"'; for line in "$@"; do echo "$line"; done; } > /tmp/$name.toml
}
wg_peer() {  # wg_peer NS KEYNAME PORT TUNNEL_IP OTHER_KEYNAME OTHER_TUNNEL_IP: a fresh wg0, no endpoint
    ip -n "$1" link del wg0 2>/dev/null
    rm -rf "/tmp/state-$1"
    ip -n "$1" link add wg0 type wireguard
    ip netns exec "$1" wg set wg0 private-key "/tmp/$2.key" listen-port "$3" peer "$(cat /tmp/$5.pub)" allowed-ips "$6/32"
    ip -n "$1" addr add "$4/24" dev wg0; ip -n "$1" link set wg0 up
}
for k in a b l1 l2 v6a v6b; do wg genkey > /tmp/$k.key; wg pubkey < /tmp/$k.key > /tmp/$k.pub; fact key_$k "$(cat /tmp/$k.pub)"; done

stamp "lab setup"
. /srv/payload/natlab.sh
natlab_setup pub
natlab_same_lan pub natc 192.0.2.13 10.3.0 l1 l2
natlab_ipv6 pub
head -c 32 /dev/urandom > /tmp/secret; chmod 600 /tmp/secret
cat > /tmp/wgsigd.toml <<'EOF'
listen = "::"
port = 1223
state_directory = "/tmp/wgsigd-state"
[group.lab]
id = 0
secret_file = "/tmp/secret"
EOF
(cd /tmp && ip netns exec pub python3 -m wgsigd --config /tmp/wgsigd.toml -v >/tmp/wgsigd.log 2>&1 &)
for i in $(seq 50); do ip netns exec pub ss -Hlun | grep -q ':1223 ' && break; sleep 0.2; done
check server_dual_stack sh -c "ip netns exec pub ss -Hlun | grep -q '\[::\]:1223\|\*:1223'"
check v6_reaches_server ip netns exec v6a ping -c1 -W5 2001:db8:ff::1
check lan_reaches_server ip netns exec l1 ping -c1 -W5 192.0.2.1

stamp "scenario 7 (set up now, checked at the end): a LAN endpoint set by hand, shipped defaults"
# h1 and h2 behind NAT D without hairpinning, candidates off: the admin set each other's LAN
# endpoint by hand. wgsigc runs while the handshake is young, then again once it is older than
# handshake_threshold (180 s, the default): the endpoint that worked must stay.
natlab_same_lan pub natd 192.0.2.14 10.4.0 h1 h2
for k in h1 h2; do wg genkey > /tmp/$k.key; wg pubkey < /tmp/$k.key > /tmp/$k.pub; fact key_$k "$(cat /tmp/$k.pub)"; done
wg_peer h1 h1 51820 10.94.0.1 h2 10.94.0.2
wg_peer h2 h2 51820 10.94.0.2 h1 10.94.0.1
ip netns exec h1 wg set wg0 peer "$(cat /tmp/h2.pub)" endpoint 10.4.0.3:51820
ip netns exec h2 wg set wg0 peer "$(cat /tmp/h1.pub)" endpoint 10.4.0.2:51820
config h1 192.0.2.1:1223 "candidates = false"; config h2 192.0.2.1:1223 "candidates = false"
fact_ping handset_young_ping h1 10.94.0.2
handset_at=$(date +%s)
wgsigc handset_young_h2 h2 --config /tmp/h2.toml
wgsigc handset_young_h1 h1 --config /tmp/h1.toml
endpoint handset_young_endpoint_of_h2_in_h1 h1 h2

stamp "scenario 1: two peers behind one NAT without hairpinning: tunnel over the LAN"
wg_peer l1 l1 51820 10.97.0.1 l2 10.97.0.2
wg_peer l2 l2 51821 10.97.0.2 l1 10.97.0.1
config l1 192.0.2.1:1223; config l2 192.0.2.1:1223
wgsigc_bg lan_l1 l1 /tmp/l1.toml
sleep 4
t0=$(uptime_s)
wgsigc lan_l2 l2 --config /tmp/l2.toml
wait_bg
fact_ping lan_ping l1 10.97.0.2
echo "FIGURE lan_seconds $(awk -v a="$(uptime_s)" -v b="$t0" "BEGIN {print a - b}")"
ip netns exec l1 wg show wg0
endpoint lan_endpoint_of_l2_in_l1 l1 l2
endpoint lan_endpoint_of_l1_in_l2 l2 l1
wgsigc lan_status_l2 l2 status --config /tmp/l2.toml --json   # l2 reached l1 through its LAN candidate
fact wgsigd_log_l1 "$(grep -F "$(cat /tmp/l1.pub)" /tmp/wgsigd.log)"

stamp "scenario 2a: same NAT, no hairpinning, candidates off: no tunnel, and the hairpin warning"
wg_peer l1 l1 51820 10.97.0.1 l2 10.97.0.2
wg_peer l2 l2 51821 10.97.0.2 l1 10.97.0.1
config l1 192.0.2.1:1223 "candidates = false" "converge_seconds = 0"
config l2 192.0.2.1:1223 "candidates = false" "converge_seconds = 16" "handshake_timeout = 8"
wgsigc nohairpin_l1 l1 --config /tmp/l1.toml
wgsigc nohairpin_l2 l2 --config /tmp/l2.toml
fact_ping nohairpin_ping l2 10.97.0.1

stamp "scenario 2b: the same NAT with hairpinning: tunnel through the public endpoints, no warning"
natlab_hairpin natc 192.0.2.13 10.3.0 "10.3.0.2:51820 10.3.0.3:51821"
wg_peer l1 l1 51820 10.97.0.1 l2 10.97.0.2
wg_peer l2 l2 51821 10.97.0.2 l1 10.97.0.1
config l1 192.0.2.1:1223 "candidates = false"
config l2 192.0.2.1:1223 "candidates = false"
wgsigc_bg hairpin_l1 l1 /tmp/l1.toml
sleep 4
wgsigc hairpin_l2 l2 --config /tmp/l2.toml
wait_bg
fact_ping hairpin_ping l1 10.97.0.2
endpoint hairpin_endpoint_of_l1_in_l2 l2 l1
natlab_hairpin_off natc

stamp "scenario 3: IPv6 only, behind stateful firewalls"
wg_peer v6a v6a 51820 10.96.0.1 v6b 10.96.0.2
wg_peer v6b v6b 51820 10.96.0.2 v6a 10.96.0.1
config v6a "[2001:db8:ff::1]:1223"; config v6b "[2001:db8:ff::1]:1223"
check v6_firewall_drops_unsolicited sh -c "ip netns exec r6a nft list ruleset | grep -q 'iifname \"wan0\" drop'"
wgsigc_bg v6_a v6a /tmp/v6a.toml
sleep 4
t0=$(uptime_s)
wgsigc v6_b v6b --config /tmp/v6b.toml
wait_bg
fact_ping v6_ping v6a 10.96.0.2
echo "FIGURE ipv6_seconds $(awk -v a="$(uptime_s)" -v b="$t0" "BEGIN {print a - b}")"
endpoint v6_endpoint_of_v6b_in_v6a v6a v6b
fact wgsigd_log_v6b "$(grep -F "$(cat /tmp/v6b.pub)" /tmp/wgsigd.log)"

stamp "scenario 4: mixed group: an X1 peer and a peer on the C-compatible print mode"
wg_peer a a 51820 10.95.0.1 b 10.95.0.2
wg_peer b b 51820 10.95.0.2 a 10.95.0.1
ip -n b link set wg0 down   # the port is free: print mode registers from it, as the C client does
config a 192.0.2.1:1223
wgsigc_bg mixed_a a /tmp/a.toml
sleep 4
skeleton=$(ip netns exec b python3 -m wgsigc 192.0.2.1 1223 "$(cat /tmp/b.pub)" /tmp/secret 51820); prc=$?
echo "--- print mode -> rc=$prc"; echo "$skeleton"
fact_run mixed_print_mode_b "$prc" "$skeleton"
# b is set up by hand from the skeleton, as a user of the C client would
a_endpoint=$(echo "$skeleton" | awk -v k="$(cat /tmp/a.pub)" '/^PublicKey/ {key=$3} /^Endpoint/ && key == k {print $3}')
ip -n b link set wg0 up
ip netns exec b wg set wg0 peer "$(cat /tmp/a.pub)" endpoint "$a_endpoint" persistent-keepalive 25
wait_bg
fact_ping mixed_ping a 10.95.0.2
endpoint mixed_endpoint_of_b_in_a a b

stamp "scenario 5: the first candidate is wrong (the same private address elsewhere): cycled to the next"
wg_peer a a 51820 10.95.0.1 b 10.95.0.2
wg_peer b b 51820 10.95.0.2 a 10.95.0.1
ip -n b addr add 10.1.0.77/24 dev eth0      # b's LAN has a's LAN prefix too ...
ip -n natb addr add 10.1.0.2/24 dev lan0    # ... and a's LAN address is another host there
config a 192.0.2.1:1223; config b 192.0.2.1:1223
for n in nata natb; do ip netns exec $n conntrack -F >/dev/null 2>&1; done  # no hole left from scenario 4
t0=$(uptime_s)
wgsigc_bg cycle_b b /tmp/b.toml
sleep 4
wgsigc cycle_a a --config /tmp/a.toml
wait_bg
fact_ping cycle_ping b 10.95.0.1
echo "FIGURE cycle_seconds $(awk -v a="$(ip netns exec b wg show wg0 latest-handshakes | awk '{print $2}')" -v b="$(date +%s)" -v u="$(uptime_s)" -v t="$t0" "BEGIN {print a - (b - (u - t))}")"
endpoint cycle_endpoint_of_a_in_b b a
ip -n b addr del 10.1.0.77/24 dev eth0; ip -n natb addr del 10.1.0.2/24 dev lan0

stamp "scenario 9: a symmetric NAT with miniupnpd (PCP/NAT-PMP): port mapping gets a tunnel"
# NAT P (natp): WAN 192.0.3.2 on pub's bridge (miniupnpd refuses the documentation range 192.0.2.0/24
# as a "reserved" external address; on-link routes join the two subnets), LAN 10.5.0.1 for peer m
# (10.5.0.2); a symmetric NAT (masquerade fully-random) that drops unsolicited inbound traffic
# except what miniupnpd forwards (ct status dnat). miniupnpd grants at most 120 s, so that a later
# run renews (at half the lifetime) within the lab's time. The other peer is a, behind NAT A.
# Run before scenario 7's end: its waits overlap with scenario 7's.
ip netns add natp; ip netns add m; ip -n natp link set lo up; ip -n m link set lo up
ip link add wan0 netns natp type veth peer name pnatp netns pub
ip -n pub link set pnatp master br0 up
ip -n natp addr add 192.0.3.2/24 dev wan0; ip -n natp link set wan0 up
ip -n natp route add 192.0.2.0/24 dev wan0
ip -n pub route add 192.0.3.0/24 dev br0; ip -n nata route add 192.0.3.0/24 dev wan0
ip link add lan0 netns natp type veth peer name eth0 netns m
ip -n natp addr add 10.5.0.1/24 dev lan0; ip -n natp link set lan0 up
ip -n m addr add 10.5.0.2/24 dev eth0; ip -n m link set eth0 up; ip -n m route add default via 10.5.0.1
ip netns exec natp sysctl -qw net.ipv4.ip_forward=1
natlab_miniupnpd natp 10.5.0
MINIUPNPD=$NATLAB_MINIUPNPD
check miniupnpd_listens sh -c "ip netns exec natp ss -Hlun | grep -q ':5351 '"
check portmap_lab_reaches_server ip netns exec m ping -c1 -W5 192.0.2.1
wg genkey > /tmp/m.key; wg pubkey < /tmp/m.key > /tmp/m.pub; fact key_m "$(cat /tmp/m.pub)"
pm_rules() { ip netns exec natp nft list chain inet filter prerouting_miniupnpd; }

# 9a, the baseline: port mapping off, the symmetric NAT against NAT A: no tunnel
wg_peer a a 51820 10.93.0.1 m 10.93.0.2; wg_peer m m 51820 10.93.0.2 a 10.93.0.1
config a 192.0.2.1:1223 "converge_seconds = 10"; config m 192.0.2.1:1223 "converge_seconds = 10"
for n in nata natp; do ip netns exec $n conntrack -F >/dev/null 2>&1; done
wgsigc_bg pm_off_a a /tmp/a.toml
sleep 2
wgsigc pm_off_m m --config /tmp/m.toml
wait_bg
fact_ping pm_off_ping m 10.93.0.1

# 9b: port mapping on in m: PCP to miniupnpd, the mapping announced (X1 MAPPED4), a reaches m.
# m gets a new key: a first meets it now (no record left from 9a), as a peer that comes online.
wg genkey > /tmp/m.key; wg pubkey < /tmp/m.key > /tmp/m.pub; fact key_m2 "$(cat /tmp/m.pub)"
wg_peer a a 51820 10.93.0.1 m 10.93.0.2; wg_peer m m 51820 10.93.0.2 a 10.93.0.1
config a 192.0.2.1:1223; config m 192.0.2.1:1223 'port_mapping = "auto"'
for n in nata natp; do ip netns exec $n conntrack -F >/dev/null 2>&1; done
wgsigc_bg pm_a a /tmp/a.toml
sleep 4
pm_start=$(date +%s)
t0=$(uptime_s)
( while ! pm_rules | grep -q 'dport 51820'; do sleep 0.05; done
  echo "FIGURE portmap_mapping_seconds $(awk -v a="$(uptime_s)" -v b="$t0" "BEGIN {print a - b}")" ) &
POLL=$!
wgsigc pm_m m --config /tmp/m.toml
wait_bg
kill $POLL 2>/dev/null; wait $POLL 2>/dev/null
fact_ping pm_ping m 10.93.0.1
echo "FIGURE portmap_tunnel_seconds $(awk -v a="$(ip netns exec a wg show wg0 latest-handshakes | awk '{print $2}')" -v b="$(date +%s)" -v u="$(uptime_s)" -v t="$t0" "BEGIN {print a - (b - (u - t))}")"
ip netns exec a wg show wg0; ip netns exec m wg show wg0
endpoint pm_endpoint_of_m_in_a a m
fact pm_rules "$(pm_rules)"
wgsigc pm_status_m m status --config /tmp/m.toml
# 9c: a later run past half the granted lifetime (120 s) renews the mapping
while [ $(( $(date +%s) - pm_start )) -le 70 ]; do sleep 2; done
wgsigc pm_renew_m m --config /tmp/m.toml
# 9d: turned off: the next run deletes the mapping on the router
config m 192.0.2.1:1223 'port_mapping = "off"'
wgsigc pm_offrun_m m --config /tmp/m.toml
fact pm_rules_after_off "$(pm_rules)"
# 9e: without miniupnpd, port mapping on: the run still succeeds, with one line about it
kill "$MINIUPNPD"; wait "$MINIUPNPD" 2>/dev/null
echo "--- miniupnpd log"; tail -n 15 /tmp/natp.miniupnpd.log
config m 192.0.2.1:1223 'port_mapping = "auto"'
wgsigc pm_absent_m m --config /tmp/m.toml

stamp "scenario 7, end: the hand-set LAN endpoint after its handshake grew older than 180 s"
while [ $(( $(date +%s) - handset_at )) -le 185 ]; do sleep 2; done
ip netns exec h1 wg show wg0 latest-handshakes
hs=$(ip netns exec h1 wg show wg0 latest-handshakes | awk -v k="$(cat /tmp/h2.pub)" '$1 == k {print $2}')
fact handset_old_handshake_age $(( $(date +%s) - ${hs:-0} ))
wgsigc handset_old_h1 h1 --config /tmp/h1.toml
endpoint handset_old_endpoint_of_h2_in_h1 h1 h2
fact_ping handset_old_ping h1 10.94.0.2

stamp "scenario 8: dual-stack peers prefer the path that works"
natlab_dual_stack pub
printf '192.0.2.1 sig.lab\n2001:db8:ff::1 sig.lab\n' >> /etc/hosts   # a server name with A and AAAA
wg_peer a a 51820 10.95.0.1 b 10.95.0.2
wg_peer b b 51820 10.95.0.2 a 10.95.0.1
config a sig.lab:1223; config b sig.lab:1223
for n in nata natb; do ip netns exec $n conntrack -F >/dev/null 2>&1; done
wgsigc_bg dual_a a /tmp/a.toml
sleep 4
wgsigc dual_b b --config /tmp/b.toml
wait_bg
fact_ping dual_ping b 10.95.0.1
endpoint dual_endpoint_of_a_in_b b a
# Now IPv6 UDP is blocked on NAT B's router: the IPv6 candidate fails, IPv4 is used.
ip netns exec natb nft insert rule ip6 v6fw inbound oifname "wan0" meta l4proto udp drop
wg_peer a a 51820 10.95.0.1 b 10.95.0.2
wg_peer b b 51820 10.95.0.2 a 10.95.0.1
for n in nata natb; do ip netns exec $n conntrack -F >/dev/null 2>&1; done
wgsigc_bg dual_v4_a a /tmp/a.toml
sleep 4
wgsigc dual_v4_b b --config /tmp/b.toml
wait_bg
fact_ping dual_v4_ping b 10.95.0.1
endpoint dual_v4_endpoint_of_a_in_b b a

stamp "done: $PASSES lab checks passed, $FAILS failed"
echo "--- wgsigd log"; tail -n 30 /tmp/wgsigd.log
[ "$FAILS" = 0 ]
