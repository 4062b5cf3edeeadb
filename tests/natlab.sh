# The NAT lab of the VM tests (sourced by tests/kernel_lab.sh, the other labs and the story of
# tests/test_deb_vm.py).
#
# natlab_setup PUB [MASQUERADE]: a "public" network 192.0.2.0/24 on bridge br0 in namespace PUB
# ("" = the root namespace, 192.0.2.1 there), and for x in a, b: namespace natX (WAN 192.0.2.11 /
# .12, LAN 10.1.0.1 / 10.2.0.1) masquerading for namespace X (10.1.0.2 / 10.2.0.2) behind it, with
# natlab_nat_rules' MASQUERADE ("masquerade fully-random": symmetric NATs, as tests/relay_lab.sh's).
# The NATs drop unsolicited inbound WAN traffic, as real routers do: otherwise the first punch
# packet creates a conntrack entry that clashes with the peer's own mapping, and masquerade
# picks another public port.
# natlab_nat_rules NS [MASQUERADE]: MASQUERADE (default "masquerade") on wan0 and drop unsolicited
# inbound WAN traffic, as real routers do.
natlab_nat_rules() {
    ip netns exec "$1" nft -f - <<NFT
table ip nat {
    chain post { type nat hook postrouting priority srcnat; oifname "wan0" ${2:-masquerade}; }
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
}

natlab_setup() {
    _pub=$1; _masquerade=${2:-masquerade}
    for _n in nata natb a b $_pub; do ip netns add "$_n"; ip -n "$_n" link set lo up; done
    _in_pub() { if [ -n "$_pub" ]; then ip -n "$_pub" "$@"; else ip "$@"; fi; }
    # A fixed address: a bridge without one takes its ports' lowest, so it changes as scenarios
    # attach namespaces, and a neighbour that cached the old one (a ping at set-up) blackholes
    # its traffic for the ~8 s its entry takes to be probed and re-resolved (frames to a port's
    # address reach the bridge as PACKET_OTHERHOST and IP drops them).
    _in_pub link add br0 address 02:00:00:00:02:01 type bridge
    _in_pub addr add 192.0.2.1/24 dev br0
    _in_pub link set br0 up
    for _x in a b; do
        case $_x in a) _wan=192.0.2.11; _lan=10.1;; b) _wan=192.0.2.12; _lan=10.2;; esac
        if [ -n "$_pub" ]; then
            ip link add wan0 netns "nat$_x" type veth peer name "p$_x" netns "$_pub"
        else
            ip link add wan0 netns "nat$_x" type veth peer name "p$_x"
        fi
        _in_pub link set "p$_x" master br0 up
        ip -n "nat$_x" addr add "$_wan/24" dev wan0; ip -n "nat$_x" link set wan0 up
        ip link add lan0 netns "nat$_x" type veth peer name eth0 netns "$_x"
        ip -n "nat$_x" addr add "$_lan.0.1/24" dev lan0; ip -n "nat$_x" link set lan0 up
        ip -n "$_x" addr add "$_lan.0.2/24" dev eth0; ip -n "$_x" link set eth0 up
        ip -n "$_x" route add default via "$_lan.0.1"
        ip netns exec "nat$_x" sysctl -qw net.ipv4.ip_forward=1
        natlab_nat_rules "nat$_x" "$_masquerade"
    done
}

# natlab_same_lan PUB NAT WAN LAN24 P1 P2: namespace NAT (WAN address WAN on PUB's bridge br0)
# masquerading for two peers P1 (LAN24.2) and P2 (LAN24.3) on one LAN bridge (LAN24.1), dropping
# unsolicited inbound WAN traffic like natlab_setup's NATs. No hairpinning (natlab_hairpin adds it).
natlab_same_lan() {
    _pub=$1; _nat=$2; _wan=$3; _lan=$4
    ip netns add "$_nat"; ip -n "$_nat" link set lo up
    ip link add wan0 netns "$_nat" type veth peer name "p$_nat" netns "$_pub"
    ip -n "$_pub" link set "p$_nat" master br0 up
    ip -n "$_nat" addr add "$_wan/24" dev wan0; ip -n "$_nat" link set wan0 up
    ip -n "$_nat" link add lanbr address "02:00:00:00:$(echo "$_wan" | awk -F. '{printf "%02x", $4}'):01" type bridge  # fixed: see br0
    ip -n "$_nat" addr add "$_lan.1/24" dev lanbr; ip -n "$_nat" link set lanbr up
    _i=2
    for _p in $5 $6; do
        ip netns add "$_p"; ip -n "$_p" link set lo up
        ip link add "v$_p" netns "$_nat" type veth peer name eth0 netns "$_p"
        ip -n "$_nat" link set "v$_p" master lanbr up
        ip -n "$_p" addr add "$_lan.$_i/24" dev eth0; ip -n "$_p" link set eth0 up
        ip -n "$_p" route add default via "$_lan.1"
        _i=$((_i + 1))
    done
    ip netns exec "$_nat" sysctl -qw net.ipv4.ip_forward=1
    natlab_nat_rules "$_nat"
}

# natlab_hairpin NAT WAN LAN24 "LANIP:PORT ...": NAT loopback for port-preserving mappings: a LAN
# packet to WAN:PORT goes to LANIP:PORT, masqueraded so that the answer comes back through NAT.
natlab_hairpin() {
    {
        echo "table ip hairpin {"
        echo "  chain pre { type nat hook prerouting priority dstnat;"
        for _m in $4; do echo "    iifname \"lanbr\" ip daddr $2 udp dport ${_m#*:} dnat to $_m"; done
        echo "  }"
        echo "  chain post { type nat hook postrouting priority srcnat; oifname \"lanbr\" ip saddr $3.0/24 ct status dnat masquerade; }"
        echo "}"
    } | ip netns exec "$1" nft -f -
    ip netns exec "$1" conntrack -F >/dev/null 2>&1 || true
}
natlab_hairpin_off() { ip netns exec "$1" nft delete table ip hairpin; }

# natlab_ipv6 PUB: IPv6 only. PUB's bridge gets 2001:db8:ff::1/64; for x in a, b a router r6X (WAN
# 2001:db8:ff::X) routes 2001:db8:X::/64 to peer v6X (2001:db8:X::2, no IPv4 at all), with the
# stateful firewall of a home router: inbound only for established or related connections.
natlab_ipv6() {
    _pub=$1
    ip -n "$_pub" addr add 2001:db8:ff::1/64 dev br0 nodad
    ip netns exec "$_pub" sysctl -qw net.ipv6.conf.all.forwarding=1  # the "internet" between the routers
    for _x in a b; do
        _r=r6$_x; _p=v6$_x
        ip netns add "$_r"; ip netns add "$_p"; ip -n "$_r" link set lo up; ip -n "$_p" link set lo up
        ip link add wan0 netns "$_r" type veth peer name "p$_r" netns "$_pub"
        ip -n "$_pub" link set "p$_r" master br0 up
        ip -n "$_r" addr add "2001:db8:ff::$_x/64" dev wan0 nodad; ip -n "$_r" link set wan0 up
        ip -n "$_r" route add default via 2001:db8:ff::1
        ip link add lan0 netns "$_r" type veth peer name eth0 netns "$_p"
        ip -n "$_r" addr add "2001:db8:$_x::1/64" dev lan0 nodad; ip -n "$_r" link set lan0 up
        ip -n "$_p" addr add "2001:db8:$_x::2/64" dev eth0 nodad; ip -n "$_p" link set eth0 up
        ip -n "$_p" route add default via "2001:db8:$_x::1"
        ip -n "$_pub" route add "2001:db8:$_x::/64" via "2001:db8:ff::$_x"
        ip netns exec "$_r" sysctl -qw net.ipv6.conf.all.forwarding=1
        ip netns exec "$_r" nft -f - <<'NFT'
table inet filter {
    chain inbound { type filter hook forward priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        iifname "wan0" drop
    }
}
NFT
    done
}

# natlab_dual_stack PUB: IPv6 for natlab_setup's peers too. NAT X (a: 11, b: 12) routes
# 2001:db8:X::/64 to its peer (2001:db8:X::2) with a stateful IPv6 firewall (table ip6 v6fw);
# IPv4 stays masqueraded as before. Needs natlab_ipv6 first (PUB's IPv6 address and forwarding).
natlab_dual_stack() {
    _pub=$1
    for _x in a b; do
        case $_x in a) _n=11;; b) _n=12;; esac
        ip -n "nat$_x" addr add "2001:db8:ff::$_n/64" dev wan0 nodad
        ip -n "nat$_x" route add default via 2001:db8:ff::1
        ip -n "nat$_x" addr add "2001:db8:$_n::1/64" dev lan0 nodad
        ip -n "$_x" addr add "2001:db8:$_n::2/64" dev eth0 nodad
        ip -n "$_x" route add default via "2001:db8:$_n::1"
        ip -n "$_pub" route add "2001:db8:$_n::/64" via "2001:db8:ff::$_n"
        ip netns exec "nat$_x" sysctl -qw net.ipv6.conf.all.forwarding=1
        ip netns exec "nat$_x" nft -f - <<'NFT'
table ip6 v6fw {
    chain inbound { type filter hook forward priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        iifname "wan0" drop
    }
}
NFT
    done
}

# natlab_miniupnpd NS LAN24: NS (its WAN wan0, its LAN lan0) becomes a symmetric NAT running
# miniupnpd (Debian's miniupnpd-nftables): masquerade fully-random, unsolicited inbound traffic
# dropped except what miniupnpd forwards; PCP and NAT-PMP for LAN24.0/24; its pid in
# NATLAB_MINIUPNPD, its log in /tmp/NS.miniupnpd.log. Its WAN address is 192.0.3.N: miniupnpd
# refuses the documentation range 192.0.2.0/24 as a "reserved" external address.
natlab_miniupnpd() {
    _ns=$1; _lan=$2
    ip netns exec "$_ns" nft -f - <<'NFT'
table inet filter {
    chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump prerouting_miniupnpd; }
    chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump postrouting_miniupnpd
        oifname "wan0" masquerade fully-random
    }
    chain prerouting_miniupnpd { }
    chain postrouting_miniupnpd { }
    # after dstnat: what miniupnpd forwards is accepted, other unsolicited traffic dropped before
    # it makes a conntrack entry (as natlab_nat_rules)
    chain pre { type filter hook prerouting priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        iifname "wan0" ct status dnat accept
        iifname "wan0" drop
    }
    chain forward { type filter hook forward priority filter; policy accept; jump miniupnpd; }
    chain miniupnpd { }
}
NFT
    printf '%s\n' ext_ifname=wan0 listening_ip=lan0 enable_natpmp=yes enable_upnp=no secure_mode=yes \
        min_lifetime=60 max_lifetime=120 upnp_table_name=filter upnp_nat_table_name=filter \
        upnp_forward_chain=miniupnpd upnp_nat_chain=prerouting_miniupnpd \
        upnp_nat_postrouting_chain=postrouting_miniupnpd uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b \
        "allow 1024-65535 $_lan.0/24 1024-65535" "deny 0-65535 0.0.0.0/0 0-65535" > "/tmp/$_ns.miniupnpd.conf"
    ip netns exec "$_ns" miniupnpd -d -f "/tmp/$_ns.miniupnpd.conf" -P "/tmp/$_ns.miniupnpd.pid" \
        > "/tmp/$_ns.miniupnpd.log" 2>&1 &
    NATLAB_MINIUPNPD=$!
    for _ in $(seq 50); do ip netns exec "$_ns" ss -Hlun | grep -q ':5351 ' && break; sleep 0.2; done
}
