# The start of the package story in the QEMU VM: the installed .deb brings two peers behind two
# NATs together by itself. Sourced (POSIX sh, as root, in the guest) by the story of
# tests/test_deb_vm.py and by `scripts/demo.sh --vm`; needs natlab.sh next to it.
#
# The sourcing script defines  check NAME CMD...  (run CMD, report its exit status under NAME)
# and  stamp TEXT  (announce a step). In order:
#   deb_tunnel_setup DEB   install DEB with apt, the NAT lab (namespaces a and b behind nata and
#                          natb, the server on 192.0.2.1 in the root namespace), wgsigd.socket
#                          with the shipped example and `wgsigd genkey`, WireGuard interfaces wga
#                          (10.99.0.1) and wgb (10.99.0.2) with keys and allowed IPs but no
#                          endpoints, wgsigc.toml for each and the peers' units (not enabled):
#                          peer a the shipped wgsigc.timer/.service with a drop-in
#                          NetworkNamespacePath=/run/netns/a; peer b a copy wgsigc-b.timer/.service
#                          reading /etc/wgsig/wgsigc-b.toml, namespace b, StateDirectory=wgsig-b
#   deb_tunnel_enable      systemctl enable --now wgsigc.timer wgsigc-b.timer; sets
#                          TUNNEL_ENABLED (uptime, seconds)
#   deb_tunnel_wait [S]    ping a -> b through the tunnel until it answers or S seconds (default
#                          240) passed; sets TUNNEL_UP (0: up), TUNNEL_AT (uptime of the first
#                          reply) and TUNNEL_S (seconds from deb_tunnel_enable to it)
deb_tunnel_here=$(dirname "$0")
[ -f "$deb_tunnel_here/natlab.sh" ] || deb_tunnel_here=/srv/payload
# shellcheck source=natlab.sh
. "$deb_tunnel_here/natlab.sh"

deb_tunnel_uptime() { cut -d' ' -f1 /proc/uptime; }

deb_tunnel_apt() {
    apt-get -y -q "$@" >/tmp/apt.log 2>&1; _rc=$?
    grep -v "^(Reading database" /tmp/apt.log
    return $_rc
}

deb_tunnel_setup() {
    export DEBIAN_FRONTEND=noninteractive
    stamp "install $(basename "$1") with apt"
    check install deb_tunnel_apt install "$1"

    stamp "NAT lab: peers a and b in namespaces behind NATs nata (192.0.2.11) and natb (192.0.2.12)"
    natlab_setup ""
    check nat_rules sh -c 'ip netns exec nata nft list chain ip nat post | grep -q masquerade'
    check lab_a_reaches_server ip netns exec a ping -c1 -W5 192.0.2.1

    stamp "server on 192.0.2.1 (README Install: server)"
    check genkey wgsigd genkey /etc/wgsig/keys/group0.key
    cp /usr/share/doc/wgsig/examples/wgsigd.toml /etc/wgsig/wgsigd.toml
    check enable_server systemctl enable --now wgsigd.socket

    stamp "WireGuard interfaces: keys and allowed IPs, no endpoints"
    (umask 077; wg genkey > /tmp/a.key; wg genkey > /tmp/b.key)
    wg pubkey < /tmp/a.key > /tmp/a.pub; wg pubkey < /tmp/b.key > /tmp/b.pub
    ip -n a link add wga type wireguard
    ip netns exec a wg set wga private-key /tmp/a.key listen-port 51820 peer "$(cat /tmp/b.pub)" allowed-ips 10.99.0.2/32
    ip -n a addr add 10.99.0.1/24 dev wga; ip -n a link set wga up
    ip -n b link add wgb type wireguard
    ip netns exec b wg set wgb private-key /tmp/b.key listen-port 51820 peer "$(cat /tmp/a.pub)" allowed-ips 10.99.0.1/32
    ip -n b addr add 10.99.0.2/24 dev wgb; ip -n b link set wgb up
    check no_endpoints sh -c '! ip netns exec a wg show wga endpoints | grep -q :'

    stamp "peers (README Install: peer): wgsigc.toml and the timers' units"
    for _x in a b; do
        cat > /tmp/wgsigc-$_x.toml <<EOF
[interface.wg$_x]
servers = ["192.0.2.1:1223"]
secret_file = "keys_group0.key"
EOF
    done
    cp /tmp/wgsigc-a.toml /etc/wgsig/wgsigc.toml
    cp /tmp/wgsigc-b.toml /etc/wgsig/wgsigc-b.toml
    mkdir -p /etc/systemd/system/wgsigc.service.d
    printf '[Service]\nNetworkNamespacePath=/run/netns/a\n' > /etc/systemd/system/wgsigc.service.d/test-netns.conf
    for _unit in service timer; do
        sed 's#/etc/wgsig/wgsigc.toml#/etc/wgsig/wgsigc-b.toml#g' /lib/systemd/system/wgsigc.$_unit \
            > /etc/systemd/system/wgsigc-b.$_unit
    done
    mkdir -p /etc/systemd/system/wgsigc-b.service.d
    printf '[Service]\nNetworkNamespacePath=/run/netns/b\nStateDirectory=\nStateDirectory=wgsig-b\n' \
        > /etc/systemd/system/wgsigc-b.service.d/test-netns.conf
    systemctl daemon-reload
}

deb_tunnel_enable() {
    TUNNEL_ENABLED=$(deb_tunnel_uptime)
    check enable_peers systemctl enable --now wgsigc.timer wgsigc-b.timer
}

deb_tunnel_wait() {
    _limit=${1:-240}
    TUNNEL_UP=1
    while [ "$(awk "BEGIN {print ($(deb_tunnel_uptime) - $TUNNEL_ENABLED < $_limit)}")" = 1 ]; do
        if ip netns exec a ping -n -c1 -W1 10.99.0.2 >/dev/null 2>&1; then TUNNEL_UP=0; break; fi
        sleep 0.2
    done
    TUNNEL_AT=$(deb_tunnel_uptime)
    TUNNEL_S=$(awk "BEGIN {printf \"%.1f\", $TUNNEL_AT - $TUNNEL_ENABLED}")
}
