#!/bin/bash
# The X1 lab run inside the QEMU VM by tests/test_x1_vm.py (see its docstring): real kernel
# WireGuard, real NATs and stateful firewalls (nftables in namespaces), wgsigc with the shipped
# defaults (candidates on, converge_seconds 25, handshake_threshold 180) unless a scenario says.
set -u
PASSES=0; FAILS=0
result() { echo "RESULT $1 $2 ${3:-}"; if [ "$2" = PASS ]; then PASSES=$((PASSES+1)); else FAILS=$((FAILS+1)); fi; }
check() { name=$1; shift; if "$@"; then result "$name" PASS; else result "$name" FAIL "$*"; fi; }
stamp() { echo "=== $(cut -d' ' -f1 /proc/uptime) s: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
SRC=/srv/payload/src
export PYTHONPATH=$SRC

wgsigc() {  # wgsigc NS ARGS...: run in the foreground, output in $OUT, code in $RC
    ns=$1; shift
    OUT=$(ip netns exec "$ns" python3 -m wgsigc "$@" 2>&1); RC=$?
    echo "--- wgsigc[$ns] $* -> rc=$RC"; echo "$OUT"
}
wgsigc_bg() {  # wgsigc_bg NS CONFIG: a run in the background (it converges while the other peer starts)
    ip netns exec "$1" python3 -m wgsigc --config "$2" >/tmp/bg-$1.out 2>&1 &
    BG=$!
}
wait_bg() { wait "$BG"; BGRC=$?; BGOUT=$(cat /tmp/bg-*.out); rm -f /tmp/bg-*.out; echo "--- wgsigc[background] -> rc=$BGRC"; echo "$BGOUT"; }
endpoint_of() {  # endpoint_of NS PUBFILE: the kernel's endpoint for that peer
    ip netns exec "$1" wg show wg0 endpoints | awk -v k="$(cat "$2")" '$1 == k {print $2}'
}
ping_ok() { ip netns exec "$1" ping -c1 -W2 "$2" >/dev/null 2>&1; }
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
for k in a b l1 l2 v6a v6b; do wg genkey > /tmp/$k.key; wg pubkey < /tmp/$k.key > /tmp/$k.pub; done

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
for k in h1 h2; do wg genkey > /tmp/$k.key; wg pubkey < /tmp/$k.key > /tmp/$k.pub; done
wg_peer h1 h1 51820 10.94.0.1 h2 10.94.0.2
wg_peer h2 h2 51820 10.94.0.2 h1 10.94.0.1
ip netns exec h1 wg set wg0 peer "$(cat /tmp/h2.pub)" endpoint 10.4.0.3:51820
ip netns exec h2 wg set wg0 peer "$(cat /tmp/h1.pub)" endpoint 10.4.0.2:51820
config h1 192.0.2.1:1223 "candidates = false"; config h2 192.0.2.1:1223 "candidates = false"
check handset_young_ping ping_ok h1 10.94.0.2
handset_at=$(date +%s)
wgsigc h2 --config /tmp/h2.toml
wgsigc h1 --config /tmp/h1.toml
check handset_young_kept sh -c "test $RC = 0 && test \"$(endpoint_of h1 /tmp/h2.pub)\" = 10.4.0.3:51820"

stamp "scenario 1: two peers behind one NAT without hairpinning: tunnel over the LAN"
wg_peer l1 l1 51820 10.97.0.1 l2 10.97.0.2
wg_peer l2 l2 51821 10.97.0.2 l1 10.97.0.1
config l1 192.0.2.1:1223; config l2 192.0.2.1:1223
wgsigc_bg l1 /tmp/l1.toml
sleep 4
t0=$(uptime_s)
wgsigc l2 --config /tmp/l2.toml
check lan_run_l2 test $RC = 0
wait_bg
check lan_run_l1 test $BGRC = 0
check lan_ping ping_ok l1 10.97.0.2
echo "FIGURE lan_seconds $(awk -v a="$(uptime_s)" -v b="$t0" "BEGIN {print a - b}")"
ip netns exec l1 wg show wg0
check lan_endpoint_l1 test "$(endpoint_of l1 /tmp/l2.pub)" = "10.3.0.3:51821"
check lan_endpoint_l2 test "$(endpoint_of l2 /tmp/l1.pub)" = "10.3.0.2:51820"
wgsigc l2 status --config /tmp/l2.toml --json   # l2 reached l1 through its LAN candidate
check lan_status_json sh -c "echo \"\$0\" | python3 -c '
import json, sys
peers = json.load(sys.stdin)[\"interfaces\"][0][\"peers\"]
peer = next(p for p in peers if p[\"public_key\"] == sys.argv[1])  # the group has other peers too
assert \"(lan)\" in (peer[\"in_use\"] or \"\"), peer
assert any(c[\"kind\"] == \"lan\" for c in peer[\"candidates\"]), peer
assert peer[\"worked\"], peer
' \"\$1\"" "$OUT" "$(cat /tmp/l1.pub)"
check journal_names_x1 grep -q "X1 with candidates" /tmp/wgsigd.log

stamp "scenario 2a: same NAT, no hairpinning, candidates off: no tunnel, and the hairpin warning"
wg_peer l1 l1 51820 10.97.0.1 l2 10.97.0.2
wg_peer l2 l2 51821 10.97.0.2 l1 10.97.0.1
config l1 192.0.2.1:1223 "candidates = false" "converge_seconds = 0"
config l2 192.0.2.1:1223 "candidates = false" "converge_seconds = 12" "handshake_timeout = 8"
wgsigc l1 --config /tmp/l1.toml
wgsigc l2 --config /tmp/l2.toml
check nohairpin_exit_5 sh -c "test $RC = 5 && echo \"\$0\" | grep -q 'hairpinning'" "$OUT"
check nohairpin_no_tunnel sh -c '! ip netns exec l2 ping -c1 -W2 10.97.0.1'

stamp "scenario 2b: the same NAT with hairpinning: tunnel through the public endpoints, no warning"
natlab_hairpin natc 192.0.2.13 10.3.0 "10.3.0.2:51820 10.3.0.3:51821"
wg_peer l1 l1 51820 10.97.0.1 l2 10.97.0.2
wg_peer l2 l2 51821 10.97.0.2 l1 10.97.0.1
config l1 192.0.2.1:1223 "candidates = false"
config l2 192.0.2.1:1223 "candidates = false"
wgsigc_bg l1 /tmp/l1.toml
sleep 4
wgsigc l2 --config /tmp/l2.toml
check hairpin_run_l2 sh -c "test $RC = 0 && ! echo \"\$0\" | grep -q 'hairpinning'" "$OUT"
wait_bg
check hairpin_run_l1 sh -c "test $BGRC = 0"
check hairpin_ping ping_ok l1 10.97.0.2
check hairpin_public_endpoint sh -c "ip netns exec l2 wg show wg0 endpoints | grep -q '192.0.2.13:51820\|10.3.0.1:'"
natlab_hairpin_off natc

stamp "scenario 3: IPv6 only, behind stateful firewalls"
wg_peer v6a v6a 51820 10.96.0.1 v6b 10.96.0.2
wg_peer v6b v6b 51820 10.96.0.2 v6a 10.96.0.1
config v6a "[2001:db8:ff::1]:1223"; config v6b "[2001:db8:ff::1]:1223"
check v6_firewall_drops_unsolicited sh -c "ip netns exec r6a nft list ruleset | grep -q 'iifname \"wan0\" drop'"
wgsigc_bg v6a /tmp/v6a.toml
sleep 4
t0=$(uptime_s)
wgsigc v6b --config /tmp/v6b.toml
check v6_run_b test $RC = 0
wait_bg
check v6_run_a test $BGRC = 0
check v6_ping ping_ok v6a 10.96.0.2
echo "FIGURE ipv6_seconds $(awk -v a="$(uptime_s)" -v b="$t0" "BEGIN {print a - b}")"
check v6_endpoint sh -c "test \"$(endpoint_of v6a /tmp/v6b.pub)\" = '[2001:db8:b::2]:51820'"
check journal_names_ipv6 grep -q "over IPv6" /tmp/wgsigd.log

stamp "scenario 4: mixed group: an X1 peer and a peer on the C-compatible print mode"
wg_peer a a 51820 10.95.0.1 b 10.95.0.2
wg_peer b b 51820 10.95.0.2 a 10.95.0.1
ip -n b link set wg0 down   # the port is free: print mode registers from it, as the C client does
config a 192.0.2.1:1223
wgsigc_bg a /tmp/a.toml
sleep 4
skeleton=$(ip netns exec b python3 -m wgsigc 192.0.2.1 1223 "$(cat /tmp/b.pub)" /tmp/secret 51820); prc=$?
echo "--- print mode -> rc=$prc"; echo "$skeleton"
a_endpoint=$(echo "$skeleton" | awk -v k="$(cat /tmp/a.pub)" '/^PublicKey/ {key=$3} /^Endpoint/ && key == k {print $3}')
check mixed_print_mode_sees_a sh -c "test $prc = 0 && test '$a_endpoint' = '192.0.2.11:51820'"
check mixed_print_mode_plain_ipv4 sh -c "! echo \"\$0\" | grep -q '0.0.0.0'" "$skeleton"
ip -n b link set wg0 up
ip netns exec b wg set wg0 peer "$(cat /tmp/a.pub)" endpoint "$a_endpoint" persistent-keepalive 25
wait_bg
check mixed_run_a test $BGRC = 0
check mixed_ping ping_ok a 10.95.0.2
check mixed_endpoint test "$(endpoint_of a /tmp/b.pub)" = "192.0.2.12:51820"

stamp "scenario 5: the first candidate is wrong (the same private address elsewhere): cycled to the next"
wg_peer a a 51820 10.95.0.1 b 10.95.0.2
wg_peer b b 51820 10.95.0.2 a 10.95.0.1
ip -n b addr add 10.1.0.77/24 dev eth0      # b's LAN has a's LAN prefix too ...
ip -n natb addr add 10.1.0.2/24 dev lan0    # ... and a's LAN address is another host there
config a 192.0.2.1:1223; config b 192.0.2.1:1223
for n in nata natb; do ip netns exec $n conntrack -F >/dev/null 2>&1; done  # no hole left from scenario 4
t0=$(uptime_s)
wgsigc_bg b /tmp/b.toml
sleep 4
wgsigc a --config /tmp/a.toml
check cycle_run_a test $RC = 0
wait_bg
check cycle_run_b test $BGRC = 0
check cycle_tried_lan_first sh -c "echo \"\$0\" | grep -q '10.1.0.2:51820 (lan) (candidate 1 of 2)'" "$BGOUT"
check cycle_ping ping_ok b 10.95.0.1
echo "FIGURE cycle_seconds $(awk -v a="$(ip netns exec b wg show wg0 latest-handshakes | awk '{print $2}')" -v b="$(date +%s)" -v u="$(uptime_s)" -v t="$t0" "BEGIN {print a - (b - (u - t))}")"
check cycle_public_endpoint test "$(endpoint_of b /tmp/a.pub)" = "192.0.2.11:51820"
ip -n b addr del 10.1.0.77/24 dev eth0; ip -n natb addr del 10.1.0.2/24 dev lan0

stamp "scenario 7, end: the hand-set LAN endpoint after its handshake grew older than 180 s"
while [ $(( $(date +%s) - handset_at )) -le 185 ]; do sleep 2; done
ip netns exec h1 wg show wg0 latest-handshakes
wgsigc h1 --config /tmp/h1.toml
check handset_old_kept test "$(endpoint_of h1 /tmp/h2.pub)" = "10.4.0.3:51820"
# no endpoint written towards NAT D's public address (the line of a reopen names this host's own
# public endpoint change, "public endpoint A -> B", which is not a write)
check handset_old_no_hairpin_written sh -c "! echo \"\$0\" | grep -q -- 'set endpoint: .*-> 192.0.2.14:\|handshake with 192.0.2.14:'" "$OUT"
check handset_old_ping ping_ok h1 10.94.0.2

stamp "scenario 8: dual-stack peers prefer the path that works"
natlab_dual_stack pub
printf '192.0.2.1 sig.lab\n2001:db8:ff::1 sig.lab\n' >> /etc/hosts   # a server name with A and AAAA
wg_peer a a 51820 10.95.0.1 b 10.95.0.2
wg_peer b b 51820 10.95.0.2 a 10.95.0.1
config a sig.lab:1223; config b sig.lab:1223
for n in nata natb; do ip netns exec $n conntrack -F >/dev/null 2>&1; done
wgsigc_bg a /tmp/a.toml
sleep 4
wgsigc b --config /tmp/b.toml
wait_bg
check dual_ipv6_preferred sh -c "ping_ok() { ip netns exec \$1 ping -c1 -W2 \$2 >/dev/null 2>&1; }; ping_ok b 10.95.0.1 &&
    test \"$(endpoint_of b /tmp/a.pub)\" = '[2001:db8:11::2]:51820'"
# Now IPv6 UDP is blocked on NAT B's router: the IPv6 candidate fails, IPv4 is used.
ip netns exec natb nft insert rule ip6 v6fw inbound oifname "wan0" meta l4proto udp drop
wg_peer a a 51820 10.95.0.1 b 10.95.0.2
wg_peer b b 51820 10.95.0.2 a 10.95.0.1
for n in nata natb; do ip netns exec $n conntrack -F >/dev/null 2>&1; done
wgsigc_bg a /tmp/a.toml
sleep 4
wgsigc b --config /tmp/b.toml
wait_bg
check dual_falls_back_to_ipv4 sh -c "ip netns exec b ping -c1 -W2 10.95.0.1 >/dev/null &&
    test \"$(endpoint_of b /tmp/a.pub)\" = '192.0.2.11:51820'"

stamp "done: $PASSES passed, $FAILS failed"
echo "--- wgsigd log"; tail -n 30 /tmp/wgsigd.log
[ "$FAILS" = 0 ]
