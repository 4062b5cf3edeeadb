# The NAT lab of the VM tests (sourced by tests/kernel_lab.sh and the story of tests/test_deb_vm.py).
#
# natlab_setup PUB: a "public" network 192.0.2.0/24 on bridge br0 in namespace PUB ("" = the root
# namespace, 192.0.2.1 there), and for x in a, b: namespace natX (WAN 192.0.2.11 / .12, LAN
# 10.1.0.1 / 10.2.0.1) masquerading for namespace X (10.1.0.2 / 10.2.0.2) behind it.
# The NATs drop unsolicited inbound WAN traffic, as real routers do: otherwise the first punch
# packet creates a conntrack entry that clashes with the peer's own mapping, and masquerade
# picks another public port.
natlab_setup() {
    _pub=$1
    for _n in nata natb a b $_pub; do ip netns add "$_n"; ip -n "$_n" link set lo up; done
    _in_pub() { if [ -n "$_pub" ]; then ip -n "$_pub" "$@"; else ip "$@"; fi; }
    _in_pub link add br0 type bridge
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
        ip netns exec "nat$_x" nft -f - <<'NFT'
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
    done
}
