"""The whole story with the installed package, in a QEMU VM with kernel WireGuard (no fakes).

The real .deb is installed with apt; the server is the shipped wgsigd.socket/wgsigd.service
in the VM's root namespace (on the lab's public bridge), configured with the shipped example
and ``wgsigd genkey``. Two peers live in network namespaces behind two masquerading NATs that
drop unsolicited inbound traffic, forwarded or addressed to the NAT itself (the lab of
tests/test_kernel_vm.py). Each has a kernel WireGuard interface with keys and allowed IPs but
no endpoint, and a wgsigc timer enabled; nobody runs wgsigc by hand. The test waits until
the tunnel comes up by itself (ping through it).

What differs from the shipped units, and why:
* peer A uses the shipped wgsigc.timer and wgsigc.service with one drop-in,
  ``NetworkNamespacePath=/run/netns/a``: the peer is a namespace, not a machine;
* peer B needs a second copy, wgsigc-b.timer/.service: the shipped files with the
  configuration path /etc/wgsig/wgsigc.toml replaced by /etc/wgsig/wgsigc-b.toml, plus the
  same kind of drop-in (namespace ``b``) and ``StateDirectory=wgsig-b``, so that the two
  dynamic users do not share one state directory.

After the tunnel is up, with the shipped units and defaults throughout:
* time to tunnel, three times: a's timer runs, 8 s later a new peer b (fresh key) starts its timer;
  from b's first run to the first ping through the tunnel;
* NAT A's public address changes: the tunnel comes back once a's next run has registered the new
  address and b's next run follows it (FIGURE lines give the seconds);
* systemd-networkd restart: wgsigc.service now serves peer r, a networkd-managed interface in the
  root namespace, run only by the shipped wgsigc-networkd.service; networkd's restart wipes r's
  endpoint and the repair unit brings it back;
* roaming: b's NAT moves b to a new public port; r's WireGuard follows by itself, and wgsigc on r
  leaves that endpoint alone;
* wg-quick restart: peer q, a wg-quick interface in the root namespace; the shipped
  wgsigc-wg-quick@wgq.service writes its endpoints back after ``systemctl restart wg-quick@wgq``.
"""

from __future__ import annotations

import re
import shutil
import statistics
import time
from pathlib import Path

import pytest

from tests.debpkg import VERSION, GuestRun, build_deb
from tests.vmlib import run_in_qemu, write_payload

pytestmark = pytest.mark.vm

STORY = r"""
set +e
export DEBIAN_FRONTEND=noninteractive
check() { name=$1; shift; echo "--- $name: $*"; "$@"; echo "CHECK $name $?"; }
stamp() { echo "=== $(cut -d' ' -f1 /proc/uptime) s: $*"; }

. /srv/payload/deb_tunnel.sh   # install, NAT lab, server, interfaces without endpoints, peers
deb_tunnel_setup ./wgsig___VERSION___all.deb
deb_tunnel_enable
stamp "waiting for the tunnel"
deb_tunnel_wait 240
up=$TUNNEL_UP
stamp "tunnel wait over (rc $up, $TUNNEL_S s after enabling the timers)"
check tunnel_up test $up = 0
check ping_back ip netns exec b ping -c1 -W3 10.99.0.1
ip netns exec a wg show wga; ip netns exec b wg show wgb
check endpoint_is_nat_b sh -c 'ip netns exec a wg show wga endpoints | grep -q "192.0.2.12:"'
check endpoint_is_nat_a sh -c 'ip netns exec b wg show wgb endpoints | grep -q "192.0.2.11:"'
check timers_active systemctl is-active wgsigc.timer wgsigc-b.timer wgsigd.socket
check runs_logged sh -c 'journalctl -q -u wgsigc.service --no-pager | grep -q .'
check status_a ip netns exec a wgsigc status --config /etc/wgsig/wgsigc.toml

stamp "time to tunnel: a's timer runs, then a new peer b starts its timer (shipped units, defaults)"
mono() { cut -d' ' -f1 /proc/uptime; }
calc() { awk "BEGIN {print $*}"; }
started_b() { calc "$(systemctl show -p ExecMainStartTimestampMonotonic --value wgsigc-b.service) / 1000000"; }
for try in 1 2 3; do
    systemctl stop wgsigc.timer wgsigc-b.timer wgsigc.service wgsigc-b.service
    old=$(cat /tmp/b.pub)
    wg genkey > /tmp/b.key; wg pubkey < /tmp/b.key > /tmp/b.pub   # a peer nobody has seen yet
    ip netns exec a wg set wga peer "$old" remove peer "$(cat /tmp/b.pub)" allowed-ips 10.99.0.2/32
    ip -n b link del wgb; ip -n b link add wgb type wireguard
    ip netns exec b wg set wgb private-key /tmp/b.key listen-port 51820 peer "$(cat /tmp/a.pub)" allowed-ips 10.99.0.1/32
    ip -n b addr add 10.99.0.2/24 dev wgb; ip -n b link set wgb up
    systemctl start wgsigc.timer
    sleep 8
    # b pings a from before its timer starts (without an endpoint a ping fails at once, then one
    # waits up to 1 s): the first reply is the first ping through the tunnel; ping -D stamps it
    # with the wall clock, wall0 and mono0 convert that to uptime
    wall0=$(date +%s.%N); mono0=$(mono)   # raw: awk prints big numbers with 6 digits
    since=$(date +%s)
    systemctl start wgsigc-b.timer
    up=1
    for i in $(seq 300); do
        if ip netns exec b ping -n -D -c1 -W1 10.99.0.1 >/tmp/ping.out 2>&1; then up=0; break; fi
        sleep 0.1
    done
    check tunnel_try_$try test $up = 0
    first=$(awk -F'[][]' '/bytes from/ {print $2; exit}' /tmp/ping.out)
    echo "FIGURE time_to_tunnel_s $(calc "${first:-0} - $wall0 + $mono0 - $(started_b)")"
    echo "b's run started at uptime $(started_b) s; first reply at $(calc "${first:-0} - $wall0 + $mono0") s"
    timeline=$(journalctl -q -o short-monotonic --since "@$since" -u wgsigc.service -u wgsigc-b.service \
        -u wgsigd.service --no-pager | grep -v "Deactivated\|Consumed")
    echo "$timeline"
    at() { echo "$timeline" | grep -F "$1" | head -n 1 | sed 's/^\[ *\([0-9.]*\)\].*/\1/'; }
    registered=$(at "$(cat /tmp/b.pub) inserted"); wrote=$(at "wgb: peer")
    echo "FIGURE tunnel_registered_s $(calc "${registered:-0} - $(started_b)")"
    echo "FIGURE tunnel_written_s $(calc "${wrote:-0} - $(started_b)")"
done
t=$(mono); python3 -c 'import wgsigc.kernelmode'; echo "FIGURE start_and_wgsigc_imports_s $(calc "$(mono) - $t")"
t=$(mono); python3 -c 'from wgsigc import pyroute2load; pyroute2load.wireguard_class()'
echo "FIGURE start_and_wireguard_import_s $(calc "$(mono) - $t")"
t=$(mono); ip netns exec b python3 -c 'from wgsigc import localaddrs; localaddrs.read_local("wgb")'
echo "FIGURE start_and_address_dump_s $(calc "$(mono) - $t")"
t=$(mono); python3 -c 'import pyroute2'; echo "FIGURE start_and_whole_pyroute2_import_s $(calc "$(mono) - $t")"
t=$(mono); python3 -c pass; echo "FIGURE python_start_s $(calc "$(mono) - $t")"

stamp "NAT A's public address changes (shipped defaults: timer 30 s, handshake_threshold 180 s)"
started_a() { calc "$(systemctl show -p ExecMainStartTimestampMonotonic --value wgsigc.service) / 1000000"; }
ip -n nata addr del 192.0.2.11/24 dev wan0; ip -n nata addr add 192.0.2.21/24 dev wan0  # (a secondary would go with the primary)
ip netns exec nata conntrack -F >/dev/null 2>&1
changed=$(mono)
check moved_tunnel_broken sh -c '! ip netns exec b ping -c1 -W2 10.99.0.1 >/dev/null 2>&1'
first_a=
up=1
while [ "$(calc "($(mono) - $changed < 100)")" = 1 ]; do
    if [ -z "$first_a" ] && [ "$(calc "($(started_a) > $changed)")" = 1 ]; then first_a=$(started_a); fi
    if ip netns exec b ping -c1 -W1 10.99.0.1 >/dev/null 2>&1; then up=0; break; fi
    sleep 0.2
done
back=$(mono)
check moved_tunnel_back test $up = 0
check moved_b_followed sh -c 'ip netns exec b wg show wgb endpoints | grep -q "192.0.2.21:51820"'
echo "FIGURE moved_back_after_change_s $(calc "$back - $changed")"
echo "FIGURE moved_back_after_a_run_s $(calc "$back - ${first_a:-$changed}")"
journalctl -q -u wgsigc-b.service --no-pager | grep -i "follow" | tail -n 3
check moved_logged_as_follow sh -c 'journalctl -q -u wgsigc-b.service --no-pager | grep -q "follow moved peer"'

stamp "systemd-networkd restart: wgsigc-networkd.service repairs the endpoints (peer r in the root namespace)"
# wgsigc.service (the shipped unit, without a drop-in from here on) now serves peer r, a WireGuard
# interface managed by systemd-networkd in the VM's root namespace (the public side); its timer is
# stopped, so only the shipped wgsigc-networkd.service runs it.
systemctl disable --now wgsigc.timer; systemctl stop wgsigc.service
rm /etc/systemd/system/wgsigc.service.d/test-netns.conf
wg genkey > /etc/systemd/network/wgr.key; wg pubkey < /etc/systemd/network/wgr.key > /tmp/r.pub
chown root:systemd-network /etc/systemd/network/wgr.key; chmod 640 /etc/systemd/network/wgr.key
printf '[NetDev]\nName=wgr\nKind=wireguard\n[WireGuard]\nPrivateKeyFile=/etc/systemd/network/wgr.key\nListenPort=51830\n[WireGuardPeer]\nPublicKey=%s\nAllowedIPs=10.99.0.2/32\n' \
    "$(cat /tmp/b.pub)" > /etc/systemd/network/50-wgr.netdev
printf '[Match]\nName=wgr\n[Network]\nAddress=10.99.0.4/24\n' > /etc/systemd/network/50-wgr.network
printf '[interface.wgr]\nservers = ["192.0.2.1:1223"]\nsecret_file = "keys_group0.key"\n' > /etc/wgsig/wgsigc.toml
ip netns exec b wg set wgb peer "$(cat /tmp/r.pub)" allowed-ips 10.99.0.4/32
systemctl daemon-reload
check networkd_up systemctl start systemd-networkd
check repair_unit_enabled systemctl enable --now wgsigc-networkd.service
up=1
started_r=$(mono)
while [ "$(calc "($(mono) - $started_r < 90)")" = 1 ]; do
    if ping -c1 -W1 10.99.0.2 >/dev/null 2>&1; then up=0; break; fi
    sleep 0.5
done
check networkd_tunnel_up test $up = 0
wg show wgr
# restart_repaired TAG IFACE UNIT: restart UNIT, which re-creates IFACE without endpoints; wait
# until IFACE has its endpoint back and reaches b (checks TAG_repaired, TAG_repair_ran_wgsigc)
restart_repaired() {
    before=$(wg show "$2" endpoints | awk '{print $2}')
    restarted=$(mono)
    systemctl restart "$3"
    wiped=no
    up=1
    while [ "$(calc "($(mono) - $restarted < 40)")" = 1 ]; do
        now_ep=$(wg show "$2" endpoints 2>/dev/null | awk '{print $2}')
        [ "$now_ep" = "(none)" ] && wiped=yes
        if [ "$now_ep" = "$before" ] && ping -c1 -W1 -I "$2" 10.99.0.2 >/dev/null 2>&1; then up=0; break; fi
        sleep 0.1
    done
    back=$(mono)
    echo "$2's endpoint before the restart: $before; seen wiped after it: $wiped"
    check "$1_repaired" test $up = 0
    ran=$(systemctl show -p ExecMainStartTimestampMonotonic --value wgsigc.service)
    check "$1_repair_ran_wgsigc" test "$(calc "($ran / 1000000 > $restarted)")" = 1
    echo "FIGURE $1_repair_s $(calc "$back - $restarted")"
}
restart_repaired networkd wgr systemd-networkd
journalctl -q -u wgsigc-networkd.service -u wgsigc.service --no-pager | tail -n 8
# networkd's lighter resets keep the endpoint wgsigc wrote (nothing to repair)
for op in reload reconfigure downup; do
    before=$(wg show wgr endpoints | awk '{print $2}')
    case $op in
        reload) networkctl reload ;;
        reconfigure) networkctl reconfigure wgr ;;
        downup) networkctl down wgr; networkctl up wgr ;;
    esac
    up=1
    for i in $(seq 40); do
        if ping -c1 -W1 10.99.0.2 >/dev/null 2>&1; then up=0; break; fi
        sleep 0.5
    done
    check networkd_${op}_kept sh -c "test $up = 0 && test \"\$(wg show wgr endpoints | awk '{print \$2}')\" = '$before'"
done

stamp "a roaming peer is left alone: b's NAT gives it a new public port, r's WireGuard follows by itself"
systemctl stop wgsigc-b.timer wgsigc-b.service   # b does not re-register: only WireGuard knows
ip netns exec natb nft flush chain ip nat post
check roam_nat_rule ip netns exec natb nft add rule ip nat post oifname "wan0" meta l4proto udp masquerade to :40000-40100
ip netns exec natb nft add rule ip nat post oifname "wan0" masquerade
ip netns exec natb conntrack -F >/dev/null 2>&1
ip netns exec b ping -c2 -W2 10.99.0.4 >/dev/null 2>&1
roamed=$(wg show wgr endpoints | awk '{print $2}')
echo "r's endpoint for b after the roam: $roamed"
check roam_learned_by_wireguard sh -c "echo '$roamed' | grep -q '^192.0.2.12:400'"
systemctl start wgsigc.service
journalctl -q -u wgsigc.service --no-pager | tail -n 3
check roam_left_alone test "$(wg show wgr endpoints | awk '{print $2}')" = "$roamed"
check roam_ping ping -c1 -W2 10.99.0.2

stamp "wg-quick restart: wgsigc-wg-quick@wgq.service repairs the endpoints (peer q in the root namespace)"
# q is a wg-quick interface next to r; b knows q (allowed IP 10.99.0.5) and registers again,
# behind its usual port-preserving NAT.
ip netns exec natb nft flush chain ip nat post
ip netns exec natb nft add rule ip nat post oifname "wan0" masquerade
ip netns exec natb conntrack -F >/dev/null 2>&1
wg genkey > /tmp/q.key; wg pubkey < /tmp/q.key > /tmp/q.pub
mkdir -p /etc/wireguard
printf '[Interface]\nPrivateKey = %s\nListenPort = 51840\nAddress = 10.99.0.5/32\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.99.0.2/32\n' \
    "$(cat /tmp/q.key)" "$(cat /tmp/b.pub)" > /etc/wireguard/wgq.conf
chmod 600 /etc/wireguard/wgq.conf
printf '[interface.wgq]\nservers = ["192.0.2.1:1223"]\nsecret_file = "keys_group0.key"\n' >> /etc/wgsig/wgsigc.toml
ip netns exec b wg set wgb peer "$(cat /tmp/q.pub)" allowed-ips 10.99.0.5/32
systemctl start wgsigc-b.timer
check wgquick_repair_enabled systemctl enable wgsigc-wg-quick@wgq.service
check wgquick_up systemctl start wg-quick@wgq
up=1
started_q=$(mono)
while [ "$(calc "($(mono) - $started_q < 90)")" = 1 ]; do
    if ping -c1 -W1 -I wgq 10.99.0.2 >/dev/null 2>&1; then up=0; break; fi
    sleep 0.5
done
check wgquick_tunnel_up test $up = 0
# a run still converging would see the interface vanish mid-way: restart once it has ended
for i in $(seq 60); do systemctl is-active -q wgsigc.service || break; sleep 0.5; done
restart_repaired wgquick wgq wg-quick@wgq
journalctl -q -u wgsigc-wg-quick@wgq.service -u wgsigc.service --no-pager | tail -n 6

echo "--- journal"
journalctl -q -u wgsigc.service -u wgsigc-b.service -u wgsigd.service --no-pager | tail -n 60
systemctl list-timers --all --no-pager | grep wgsig
stamp "done"
"""


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> GuestRun:
    payload = tmp_path_factory.mktemp("deb-vm")
    build_deb(payload)
    write_payload(payload, "exec sh /srv/payload/story.sh")
    (payload / "story.sh").write_text(STORY.replace("__VERSION__", VERSION))
    for lab in ("natlab.sh", "deb_tunnel.sh"):
        shutil.copy(Path(__file__).with_name(lab), payload / lab)
    start = time.monotonic()
    rc, out = run_in_qemu(payload, timeout=600)
    print(f"\n[package story VM run: {time.monotonic() - start:.1f} s]")
    print("".join(line + "\n" for line in out.splitlines() if line.startswith("=== ")))
    assert rc == 0, out
    return GuestRun(out)


def test_package_installs_in_vm(story: GuestRun) -> None:
    story.check("install", "nat_rules", "lab_a_reaches_server", "genkey", "enable_server")
    story.check("no_endpoints", "enable_peers")


def test_tunnel_comes_up_by_itself_through_two_nats(story: GuestRun) -> None:
    story.check("tunnel_up", "ping_back", "endpoint_is_nat_b", "endpoint_is_nat_a")


def test_timers_keep_running(story: GuestRun) -> None:
    story.check("timers_active", "runs_logged", "status_a")


def test_a_networkd_restart_is_repaired_within_seconds(story: GuestRun) -> None:
    """Issue 17.4: the shipped wgsigc-networkd.service runs wgsigc once networkd reconfigured wgr."""
    story.check("networkd_up", "repair_unit_enabled", "networkd_tunnel_up", "networkd_repaired",
                "networkd_repair_ran_wgsigc")
    story.check("networkd_reload_kept", "networkd_reconfigure_kept", "networkd_downup_kept")
    (seconds,) = _figures(story, "networkd_repair_s")
    print(f"networkd restart repaired in {seconds:.1f} s")
    assert seconds < 30, seconds  # sooner than the next timer run


def test_a_wg_quick_restart_is_repaired_by_the_shipped_unit(story: GuestRun) -> None:
    """Issue 17.4: "systemctl restart wg-quick@wgq" re-creates the interface without endpoints."""
    story.check("wgquick_repair_enabled", "wgquick_up", "wgquick_tunnel_up", "wgquick_repaired",
                "wgquick_repair_ran_wgsigc")
    (seconds,) = _figures(story, "wgquick_repair_s")
    print(f"wg-quick restart repaired in {seconds:.1f} s")
    assert seconds < 30, seconds  # sooner than the next timer run


def test_a_roaming_peer_is_left_alone(story: GuestRun) -> None:
    """Issue 17: an endpoint WireGuard learned by roaming is not the peer's record: never moved."""
    story.check("roam_nat_rule", "roam_learned_by_wireguard", "roam_left_alone", "roam_ping")


def _figures(story: GuestRun, name: str) -> list[float]:
    return [float(m) for m in re.findall(rf"^FIGURE {name} (-?[0-9.]+)", story.output, re.M)]


def test_a_new_peer_gets_a_tunnel_within_seconds_with_the_shipped_timer(story: GuestRun) -> None:
    """Issue 11's goal: median from the second peer's first run to the first ping <= 3 s. Under
    software emulation Python runs about 14x slower than on hardware; the figure is printed."""
    story.check("tunnel_try_1", "tunnel_try_2", "tunnel_try_3")
    times = sorted(_figures(story, "time_to_tunnel_s"))
    print(f"time to tunnel (s): {times}, median {statistics.median(times):.1f}; of it, until b's"
          f" registration reached wgsigd: {_figures(story, 'tunnel_registered_s')}, until b wrote a's"
          f" endpoint: {_figures(story, 'tunnel_written_s')}; python3 alone, started and importing"
          f" nothing {_figures(story, 'python_start_s')}, wgsigc.kernelmode"
          f" {_figures(story, 'start_and_wgsigc_imports_s')}, pyroute2's WireGuard"
          f" {_figures(story, 'start_and_wireguard_import_s')}, the LAN candidates' address dump"
          f" {_figures(story, 'start_and_address_dump_s')}, the whole pyroute2 package"
          f" {_figures(story, 'start_and_whole_pyroute2_import_s')} s")
    assert len(times) == 3 and statistics.median(times) < 15, times  # far below one timer period (30 s)


def test_a_moved_peer_is_followed_within_one_timer_period_with_the_shipped_defaults(story: GuestRun) -> None:
    """Issue 17: with handshake_threshold 180 the tunnel used to come back after ~178 s."""
    story.check("moved_tunnel_broken", "moved_tunnel_back", "moved_b_followed", "moved_logged_as_follow")
    (after_run,) = _figures(story, "moved_back_after_a_run_s")
    (after_change,) = _figures(story, "moved_back_after_change_s")
    print(f"tunnel back {after_change:.1f} s after the change, {after_run:.1f} s after a's next run")
    assert after_run <= 30 + 3 + 4, after_run  # one timer period + 3 s (+ the timer's randomized delay)
