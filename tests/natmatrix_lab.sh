#!/bin/bash
# The NAT behaviour matrix, run inside the QEMU VM by tests/test_natmatrix_vm.py and
# scripts/natmatrix.sh (tests/natmatrix.py says what each behaviour is and what to expect).
# One "public" network with two wgsigd (192.0.2.1 and 192.0.2.2: a NAT that maps per destination
# shows two servers two ports). Each line "ID LANE KIND_A KIND_B" of /srv/payload/pairs.txt is a
# pair; the lanes run side by side (their pairs one after the other), each with its own addresses
# (public 192.0.2.(11 + 10 LANE) and up, LANs 10.(10 + LANE).x.0/24), so that the pairs that wait
# for two timer rounds overlap with the others. Each pair: fresh NAT namespaces, fresh keys, two
# peers with kernel WireGuard and no endpoints, wgsigc with the shipped defaults started as two
# timers would (a first, b 2 s later; a second round 30 s after the first if there is no tunnel
# yet), a ping from a every 0.2 s from the start.
# Prints FACT lines (tests/labfacts.sh): ID.a1 / ID.b1 (/ ID.a2, ID.b2) runs, ID.first_reply
# (seconds from b's first start to a's first ping reply, "" for none), ID.ep_in_a / ID.ep_in_b
# (the endpoint each kernel holds for the other), ID.status_a / ID.status_b (wgsigc status
# afterwards), ID.ping_end. tests/natmatrix.py judges them.
set -u
umask 077  # keys and the secret
. /srv/payload/labfacts.sh
. /srv/payload/natlab.sh
SRC=/srv/payload/src
export PYTHONPATH=$SRC
stamp() { echo "=== $(cut -d' ' -f1 /proc/uptime) s: $*"; }

# nat_rules NS KIND INNER: NS translates for INNER (its LAN host) on its interface wan0. All kinds
# drop unsolicited inbound traffic in prerouting (natlab.sh says why) unless said otherwise.
nat_rules() {
    local ns=$1 kind=$2 inner=$3 masq inbound
    case $kind in
        symmetric) masq="masquerade fully-random";;  # a new public port for each destination
        *) masq="masquerade";;  # keeps the source port when it is free: endpoint-independent mapping
    esac
    case $kind in
        full-cone)  # any host may send to the mapped port (a static forward of WireGuard's port)
            inbound="iifname \"wan0\" udp dport 51820 dnat to $inner:51820";;
        address-restricted)  # any port of a host that INNER sent to may send to the mapped port
            inbound="iifname \"wan0\" udp dport 51820 ip saddr @contacted dnat to $inner:51820";;
        *)  # port-restricted, symmetric, each level of cgnat: only the exact remote endpoint
            inbound="";;
    esac
    ip netns exec "$ns" nft -f - <<NFT
table ip nat {
    set contacted { type ipv4_addr; flags timeout; timeout 120s; }
    chain pre { type nat hook prerouting priority dstnat;
        $inbound
    }
    chain post { type nat hook postrouting priority srcnat;
        oifname "wan0" $masq
    }
    chain seen { type filter hook postrouting priority 0;
        oifname "wan0" update @contacted { ip daddr }
    }
}
table ip filter {
    chain pre { type filter hook prerouting priority 10; policy accept;
        iifname "wan0" ct state established,related accept
        iifname "wan0" ct status dnat accept
        iifname "wan0" drop
    }
}
NFT
}

# side X N LAN KIND: peer X (LAN.2) behind NAT natX (public 192.0.2.N) of behaviour KIND; a cgnat
# is a home NAT (100.64.N.2 outside) behind a carrier's NAT cgnX (192.0.2.N), both port-restricted;
# symmetric-pcp is symmetric with miniupnpd (public 192.0.3.N) and wgsigc's port_mapping = "auto".
side() {
    local x=$1 n=$2 lan=$3 kind=$4
    ip netns add "nat$x"; ip netns add "$x"
    ip -n "nat$x" link set lo up; ip -n "$x" link set lo up
    : > "/tmp/$x.extra"
    if [ "$kind" = cgnat ]; then
        ip netns add "cgn$x"; ip -n "cgn$x" link set lo up
        ip link add wan0 netns "cgn$x" type veth peer name "p$x" netns pub
        ip -n "cgn$x" addr add "192.0.2.$n/24" dev wan0; ip -n "cgn$x" link set wan0 up
        ip -n "cgn$x" route add 192.0.3.0/24 dev wan0
        ip link add lan0 netns "cgn$x" type veth peer name wan0 netns "nat$x"
        ip -n "cgn$x" addr add "100.64.$n.1/24" dev lan0; ip -n "cgn$x" link set lan0 up
        ip -n "nat$x" addr add "100.64.$n.2/24" dev wan0; ip -n "nat$x" link set wan0 up
        ip -n "nat$x" route add default via "100.64.$n.1"
        ip netns exec "cgn$x" sysctl -qw net.ipv4.ip_forward=1
        nat_rules "cgn$x" port-restricted "100.64.$n.2"
        nat_rules "nat$x" port-restricted "$lan.2"
    elif [ "$kind" = symmetric-pcp ]; then
        ip link add wan0 netns "nat$x" type veth peer name "p$x" netns pub
        ip -n "nat$x" addr add "192.0.3.$n/24" dev wan0; ip -n "nat$x" link set wan0 up
        ip -n "nat$x" route add 192.0.2.0/24 dev wan0
        echo 'port_mapping = "auto"' > "/tmp/$x.extra"
    else
        ip link add wan0 netns "nat$x" type veth peer name "p$x" netns pub
        ip -n "nat$x" addr add "192.0.2.$n/24" dev wan0; ip -n "nat$x" link set wan0 up
        ip -n "nat$x" route add 192.0.3.0/24 dev wan0
        nat_rules "nat$x" "$kind" "$lan.2"
    fi
    ip -n pub link set "p$x" master br0 up
    ip link add lan0 netns "nat$x" type veth peer name eth0 netns "$x"
    ip -n "nat$x" addr add "$lan.1/24" dev lan0; ip -n "nat$x" link set lan0 up
    ip -n "$x" addr add "$lan.2/24" dev eth0; ip -n "$x" link set eth0 up
    ip -n "$x" route add default via "$lan.1"
    ip netns exec "nat$x" sysctl -qw net.ipv4.ip_forward=1
    [ "$kind" = symmetric-pcp ] && natlab_miniupnpd "nat$x" "$lan"
    return 0
}

# teardown NS...: these namespaces go (and miniupnpd with its NAT); pub forgets their MAC addresses
# (the lane's next pair has new ones at the same public addresses)
teardown() {
    for ns in "$@"; do
        if [ -f "/tmp/$ns.miniupnpd.pid" ]; then kill "$(cat "/tmp/$ns.miniupnpd.pid")" 2>/dev/null; fi
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "$ns" 2>/dev/null
        rm -rf "/tmp/state-$ns"
    done
    for ip in $LANE_IPS; do ip -n pub neigh flush to "$ip" 2>/dev/null; done
    return 0
}

config() {  # config NS [EXTRA LINES...]
    ns=$1; shift
    { echo "state_directory = \"/tmp/state-$ns\""; echo "[interface.wg0]"
      echo 'servers = ["192.0.2.1:1223", "192.0.2.2:1223"]'; echo 'secret_file = "/tmp/secret"'
      for line in "$@"; do echo "$line"; done
      [ -f "/tmp/$ns.extra" ] && cat "/tmp/$ns.extra"; } > "/tmp/$ns.toml"
}

wg_peer() {  # wg_peer NS PORT TUNNEL_IP OTHER_NS OTHER_TUNNEL_IP: fresh keys were made for NS and OTHER_NS
    ip -n "$1" link add wg0 type wireguard
    ip netns exec "$1" wg set wg0 private-key "/tmp/$1.key" listen-port "$2" peer "$(cat "/tmp/$4.pub")" \
        allowed-ips "$5/32"
    ip -n "$1" addr add "$3/24" dev wg0; ip -n "$1" link set wg0 up
}

now_s() { date +%s.%N; }

# run_pair ID NS_A PORT_A NS_B PORT_B [CONFIG LINES...]: the two peers' runs and what came of them.
run_pair() {
    local id=$1 na=$2 pa=$3 nb=$4 pb=$5 k pinger t0 round start runa runb rca rcb first
    shift 5
    for k in "$na" "$nb"; do wg genkey > "/tmp/$k.key"; wg pubkey < "/tmp/$k.key" > "/tmp/$k.pub"; done
    wg_peer "$na" "$pa" 10.99.0.1 "$nb" 10.99.0.2
    wg_peer "$nb" "$pb" 10.99.0.2 "$na" 10.99.0.1
    config "$na" "$@"; config "$nb" "$@"
    ip netns exec "$na" ping -D -n -O -i 0.2 -W 1 10.99.0.2 > "/tmp/$id.ping" 2>&1 &
    pinger=$!
    t0=""
    for round in 1 2; do  # two timer periods (the timer starts a run every 30 s)
        start=$(now_s)
        ip netns exec "$na" python3 -m wgsigc --config "/tmp/$na.toml" > "/tmp/$id.a.out" 2>&1 &
        runa=$!
        sleep 2
        [ -n "$t0" ] || t0=$(now_s)
        ip netns exec "$nb" python3 -m wgsigc --config "/tmp/$nb.toml" > "/tmp/$id.b.out" 2>&1 &
        runb=$!
        wait "$runa"; rca=$?; wait "$runb"; rcb=$?
        fact_run "$id.a$round" "$rca" "$(cat "/tmp/$id.a.out")"
        fact_run "$id.b$round" "$rcb" "$(cat "/tmp/$id.b.out")"
        grep -q 'bytes from' "/tmp/$id.ping" && break
        [ "$round" = 2 ] || sleep "$(awk -v s="$start" -v n="$(now_s)" 'BEGIN {w = 30 - (n - s); print (w > 0 ? w : 0)}')"
    done
    kill "$pinger"; wait "$pinger" 2>/dev/null
    first=$(awk -F'[][]' '/bytes from/ {print $2; exit}' "/tmp/$id.ping")
    fact "$id.first_reply" "$( [ -n "$first" ] && awk -v a="$first" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')"
    fact_endpoint "$id.ep_in_a" "$na" wg0 "/tmp/$nb.pub"
    fact_endpoint "$id.ep_in_b" "$nb" wg0 "/tmp/$na.pub"
    # both status commands at once (each is a Python start, seconds in the emulated VM)
    ip netns exec "$na" python3 -m wgsigc status --config "/tmp/$na.toml" > "/tmp/$id.a.status" 2>&1 &
    ip netns exec "$nb" python3 -m wgsigc status --config "/tmp/$nb.toml" > "/tmp/$id.b.status" 2>&1
    wait $!
    fact "$id.status_a" "$(cat "/tmp/$id.a.status")"
    fact "$id.status_b" "$(cat "/tmp/$id.b.status")"
    fact_ping "$id.ping_end" "$na" 10.99.0.2
}

# pair ID LANE KIND_A KIND_B: peers aLANE and bLANE behind NATs of those behaviours
pair() {
    local id=$1 l=$2 ha=$((11 + 10 * $2)) hb=$((12 + 10 * $2))
    LANE_IPS="192.0.2.$ha 192.0.2.$hb 192.0.3.$ha 192.0.3.$hb"
    stamp "pair $id (lane $l): $3 / $4"
    side "a$l" "$ha" "10.$((10 + l)).1" "$3"; side "b$l" "$hb" "10.$((10 + l)).2" "$4"
    run_pair "$id" "a$l" 51820 "b$l" 51820
    teardown "a$l" "b$l" "nata$l" "natb$l" "cgna$l" "cgnb$l"
}

# shared ID LANE KIND: peers lLANE and mLANE behind one NAT (ports 51820, 51821)
shared() {
    local id=$1 l=$2 wan="192.0.2.$((13 + 10 * $2))" lan="10.$((10 + $2)).3"
    LANE_IPS=$wan
    stamp "pair $id (lane $l): $3"
    natlab_same_lan pub "natc$l" "$wan" "$lan" "l$l" "m$l"
    : > "/tmp/l$l.extra"; : > "/tmp/m$l.extra"
    case $3 in
        shared) run_pair "$id" "l$l" 51820 "m$l" 51821;;
        shared-hairpin) natlab_hairpin "natc$l" "$wan" "$lan" "$lan.2:51820 $lan.3:51821"
            run_pair "$id" "l$l" 51820 "m$l" 51821;;
        shared-hairpin-nocand) natlab_hairpin "natc$l" "$wan" "$lan" "$lan.2:51820 $lan.3:51821"
            run_pair "$id" "l$l" 51820 "m$l" 51821 "candidates = false";;
    esac
    teardown "l$l" "m$l" "natc$l"
}

lane() {  # lane L: this lane's pairs, one after the other
    while read -r id l ka kb; do
        [ "$l" = "$1" ] || continue
        case $ka in shared*) shared "$id" "$l" "$ka";; *) pair "$id" "$l" "$ka" "$kb";; esac
    done < /srv/payload/pairs.txt
}

stamp "servers"
head -c 32 /dev/urandom > /tmp/secret; chmod 600 /tmp/secret
ip netns add pub; ip -n pub link set lo up
# a fixed address, or the bridge takes its lowest port's and changes as NATs attach (tests/natlab.sh)
ip -n pub link add br0 address 02:00:00:00:02:01 type bridge; ip -n pub link set br0 up
ip -n pub route add 192.0.3.0/24 dev br0 2>/dev/null || true  # symmetric-pcp NATs: on-link as well
for s in 1 2; do
    ip -n pub addr add "192.0.2.$s/24" dev br0
    printf 'listen = "192.0.2.%s"\nport = 1223\nstate_directory = "/tmp/wgsigd-%s"\n[group.lab]\nid = 0\nsecret_file = "/tmp/secret"\n' \
        "$s" "$s" > "/tmp/wgsigd-$s.toml"
    (cd /tmp && ip netns exec pub python3 -m wgsigd --config "/tmp/wgsigd-$s.toml" > "/tmp/wgsigd-$s.log" 2>&1 &)
done
for i in $(seq 50); do
    [ "$(ip netns exec pub ss -Hlun | grep -c ':1223 ')" = 2 ] && break; sleep 0.2
done
fact servers "$(ip netns exec pub ss -Hlun | grep ':1223 ' | awk '{print $4}' | sort | tr '\n' ' ')"

lanes=$(awk '{print $2}' /srv/payload/pairs.txt | sort -u)
for l in $lanes; do lane "$l" > "/tmp/lane$l.log" 2>&1 & done
wait
for l in $lanes; do cat "/tmp/lane$l.log"; done
stamp "matrix done"
