#!/bin/bash
# The NAT behaviour matrix, run inside the QEMU VM by tests/test_natmatrix_vm.py and
# scripts/natmatrix.sh (see the test's docstring): for each pair of NAT behaviours, a fresh lab,
# two peers with kernel WireGuard and no endpoints, wgsigc with the shipped defaults started as
# two timers would (a first, b 2 s later, a second round 30 s after the first), and a ping.
# Prints "MATRIX A_KIND B_KIND yes|no PATH SECONDS" per pair.
set -u
SRC=/srv/payload/src
export PYTHONPATH=$SRC
KINDS=${MATRIX_KINDS:-"full-cone address-restricted port-restricted symmetric cgnat"}
stamp() { echo "=== $(cut -d' ' -f1 /proc/uptime) s: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

# nat_rules NS KIND INNER: NS translates for INNER (its LAN host) on its interface wan0.
nat_rules() {
    ns=$1; kind=$2; inner=$3
    case $kind in
        symmetric) masq="masquerade fully-random";;  # a new public port for each destination
        *) masq="masquerade";;  # keeps the source port when it is free: endpoint-independent mapping
    esac
    case $kind in
        full-cone)  # any host may send to the mapped port (a static port forward of WireGuard's port)
            inbound="iifname \"wan0\" udp dport 51820 dnat to $inner:51820"
            filter="iifname \"wan0\" ct state established,related accept
                    iifname \"wan0\" ct status dnat accept
                    iifname \"wan0\" drop";;
        address-restricted)  # any port of a host that INNER sent to may send to the mapped port
            inbound="iifname \"wan0\" udp dport 51820 ip saddr @contacted dnat to $inner:51820"
            filter="iifname \"wan0\" ct state established,related accept
                    iifname \"wan0\" ct status dnat accept
                    iifname \"wan0\" drop";;
        *)  # port-restricted, symmetric, cgnat (each of its two levels): only the exact remote
            inbound=""
            filter="iifname \"wan0\" ct state established,related accept
                    iifname \"wan0\" drop";;
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
        $filter
    }
}
NFT
}

# side X N LAN KIND: peer X (LAN.2) behind NAT natX (public 192.0.2.N) of behaviour KIND; a cgnat
# is a home NAT (100.64.N.2 outside) behind a carrier's NAT cgnX (192.0.2.N), both port-restricted.
side() {
    x=$1; n=$2; lan=$3; kind=$4
    ip netns add "nat$x"; ip netns add "$x"
    ip -n "nat$x" link set lo up; ip -n "$x" link set lo up
    if [ "$kind" = cgnat ]; then
        ip netns add "cgn$x"; ip -n "cgn$x" link set lo up
        ip link add wan0 netns "cgn$x" type veth peer name "p$x" netns pub
        ip -n "cgn$x" addr add "192.0.2.$n/24" dev wan0; ip -n "cgn$x" link set wan0 up
        ip link add lan0 netns "cgn$x" type veth peer name wan0 netns "nat$x"
        ip -n "cgn$x" addr add "100.64.$n.1/24" dev lan0; ip -n "cgn$x" link set lan0 up
        ip -n "nat$x" addr add "100.64.$n.2/24" dev wan0; ip -n "nat$x" link set wan0 up
        ip -n "nat$x" route add default via "100.64.$n.1"
        ip netns exec "cgn$x" sysctl -qw net.ipv4.ip_forward=1
        nat_rules "cgn$x" port-restricted "100.64.$n.2"
        nat_rules "nat$x" port-restricted "$lan.2"
    else
        ip link add wan0 netns "nat$x" type veth peer name "p$x" netns pub
        ip -n "nat$x" addr add "192.0.2.$n/24" dev wan0; ip -n "nat$x" link set wan0 up
        nat_rules "nat$x" "$kind" "$lan.2"
    fi
    ip -n pub link set "p$x" master br0 up
    ip link add lan0 netns "nat$x" type veth peer name eth0 netns "$x"
    ip -n "nat$x" addr add "$lan.1/24" dev lan0; ip -n "nat$x" link set lan0 up
    ip -n "$x" addr add "$lan.2/24" dev eth0; ip -n "$x" link set eth0 up
    ip -n "$x" route add default via "$lan.1"
    ip netns exec "nat$x" sysctl -qw net.ipv4.ip_forward=1
}

teardown() {
    pkill -f "wgsigd --config /tmp/wgsigd.toml" 2>/dev/null
    for ns in $(ip netns list | cut -d' ' -f1); do ip netns del "$ns"; done
    rm -rf /tmp/state-* /tmp/wgsigd-state
    sleep 0.2
}

for k in a b; do wg genkey > /tmp/$k.key; wg pubkey < /tmp/$k.key > /tmp/$k.pub; done
head -c 32 /dev/urandom > /tmp/secret; chmod 600 /tmp/secret
cat > /tmp/wgsigd.toml <<'EOF'
port = 1223
state_directory = "/tmp/wgsigd-state"
[group.lab]
id = 0
secret_file = "/tmp/secret"
EOF
for x in a b; do
    printf 'state_directory = "/tmp/state-%s"\n[interface.wg0]\nservers = ["192.0.2.1:1223"]\nsecret_file = "/tmp/secret"\n' \
        "$x" > "/tmp/$x.toml"
done

pair() {  # pair KIND_A KIND_B
    stamp "pair $1 / $2"
    ip netns add pub; ip -n pub link set lo up
    ip -n pub link add br0 type bridge; ip -n pub addr add 192.0.2.1/24 dev br0; ip -n pub link set br0 up
    side a 11 10.1.0 "$1"; side b 12 10.2.0 "$2"
    (cd /tmp && ip netns exec pub python3 -m wgsigd --config /tmp/wgsigd.toml >/tmp/wgsigd.log 2>&1 &)
    for i in $(seq 50); do ip netns exec pub ss -Hlun | grep -q ':1223 ' && break; sleep 0.2; done
    for x in a b; do
        case $x in a) o=b; mine=1; theirs=2;; b) o=a; mine=2; theirs=1;; esac
        ip -n $x link add wg0 type wireguard
        ip netns exec $x wg set wg0 private-key /tmp/$x.key listen-port 51820 \
            peer "$(cat /tmp/$o.pub)" allowed-ips "10.99.0.$theirs/32"
        ip -n $x addr add "10.99.0.$mine/24" dev wg0; ip -n $x link set wg0 up
    done
    up=""
    for round in 1 2; do  # two timer periods
        ip netns exec a python3 -m wgsigc --config /tmp/a.toml >/tmp/a-$round.out 2>&1 &
        runa=$!
        sleep 2
        [ "$round" = 1 ] && t0=$(uptime_s)
        ip netns exec b python3 -m wgsigc --config /tmp/b.toml >/tmp/b-$round.out 2>&1 &
        runb=$!
        for i in $(seq 60); do  # until both runs ended (at most converge_seconds, 25 s)
            if [ -z "$up" ] && ip netns exec a ping -c1 -W1 10.99.0.2 >/dev/null 2>&1; then up=$(uptime_s); fi
            kill -0 $runa 2>/dev/null || kill -0 $runb 2>/dev/null || break
            [ -n "$up" ] || sleep 0.3
            [ -n "$up" ] && sleep 0.5
        done
        wait $runa; rca=$?; wait $runb; rcb=$?
        echo "--- round $round: a exit $rca, b exit $rcb"; tail -n 4 /tmp/a-$round.out /tmp/b-$round.out
        [ -n "$up" ] && break
        sleep 4  # the rest of the timer period (the runs took about 25 s)
    done
    [ -z "$up" ] && ip netns exec a ping -c1 -W2 10.99.0.2 >/dev/null 2>&1 && up=$(uptime_s)
    endpoint=$(ip netns exec a wg show wg0 endpoints | awk '{print $2}')
    recorded=$(ip netns exec a python3 -m wgsigc status --config /tmp/a.toml --json 2>/dev/null | python3 -c '
import json, sys
peers = json.load(sys.stdin)["interfaces"][0]["peers"]
print(next((p["server_endpoint"] or "") for p in peers if p["public_key"] == sys.argv[1]))' "$(cat /tmp/b.pub)" 2>/dev/null)
    case $endpoint in
        10.2.0.*) path=LAN;;
        192.0.2.*) if [ "$endpoint" = "$recorded" ]; then path=public; else path=public-roamed; fi;;
        *) path=none;;
    esac
    if [ -n "$up" ]; then
        echo "MATRIX $1 $2 yes $path $(awk -v a="$up" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')"
    else
        echo "MATRIX $1 $2 no - -"
        grep -h "symmetric\|NAT\|hairpin" /tmp/a-*.out /tmp/b-*.out | sort -u | head -n 4 | sed 's/^/DIAGNOSIS /'
    fi
    echo "a: endpoint of b $endpoint, b's record $recorded"
    teardown
}

stamp "matrix: $KINDS"
done_kinds=""
for ka in $KINDS; do
    done_kinds="$done_kinds $ka"
    for kb in $done_kinds; do pair "$ka" "$kb"; done
done
stamp "matrix done"
