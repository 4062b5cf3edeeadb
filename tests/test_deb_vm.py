"""The whole story with the installed package, in a QEMU VM with kernel WireGuard (no fakes).

The real .deb is installed with apt; the server is the shipped wgsigd.socket/wgsigd.service
in the VM's root namespace (on the lab's public bridge), configured with the shipped example
and ``wgsigd genkey``. Two peers live in network namespaces behind two masquerading NATs that
drop unsolicited inbound traffic, forwarded or addressed to the NAT itself (the lab of
tests/test_kernel_vm.py). Each has a kernel WireGuard interface with keys and allowed IPs but
no endpoint, and a wgsigc timer enabled; nobody runs wgsigc by hand. The test waits until
the tunnel comes up by itself (ping through it). The story's shell does what needs the VM and
prints what it saw -- endpoints in the kernels, pings, units, journal lines -- as ``FACT`` lines
(tests/labfacts.sh) and the seconds it measured as ``FIGURE`` lines; the tests judge those values
(the steps that are only set-up are ``CHECK`` lines).

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
  wgsigc-wg-quick@wgq.service writes its endpoints back after ``systemctl restart wg-quick@wgq``;
* a real reboot, at the end, in the same QEMU process (``run_in_qemu(reboot=True)``; the guest's
  writes are kept): wgq is brought up at boot by wg-quick@wgq.service and wgr by systemd-networkd,
  wgsigc.timer and both repair units enabled; the second boot's journal shows in what order the
  units ran and that wgsigc's first run did not fail (see that test's docstring).
"""

from __future__ import annotations

import re
import shutil
import statistics
import time
from pathlib import Path

import pytest

from tests.debpkg import VERSION, build_deb
from tests.labfacts import LabRun
from tests.vmlib import run_in_qemu, write_payload

pytestmark = pytest.mark.vm

STORY = r"""
set +e
export DEBIAN_FRONTEND=noninteractive
check() { name=$1; shift; echo "--- $name: $*"; "$@"; echo "CHECK $name $?"; }
stamp() { echo "=== $(cut -d' ' -f1 /proc/uptime) s: $*"; }
. /srv/payload/labfacts.sh     # fact, fact_run, fact_endpoint, fact_ping: what the story saw
answered() { if [ "$1" = 0 ]; then echo answered; else echo "no answer"; fi; }

. /srv/payload/deb_tunnel.sh   # install, NAT lab, server, interfaces without endpoints, peers
deb_tunnel_setup ./wgsig___VERSION___all.deb
deb_tunnel_enable
stamp "waiting for the tunnel"
deb_tunnel_wait 240
stamp "tunnel wait over (rc $TUNNEL_UP, $TUNNEL_S s after enabling the timers)"
fact key_a "$(cat /tmp/a.pub)"; fact key_b_first "$(cat /tmp/b.pub)"
fact tunnel_ping_a_to_b "$(answered "$TUNNEL_UP")"; fact tunnel_seconds "$TUNNEL_S"
fact_ping ping_b_to_a b 10.99.0.1 3
ip netns exec a wg show wga; ip netns exec b wg show wgb
fact_endpoint endpoint_of_b_in_a a wga /tmp/b.pub
fact_endpoint endpoint_of_a_in_b b wgb /tmp/a.pub
fact units_active "$(systemctl is-active wgsigc.timer wgsigc-b.timer wgsigd.socket)"
fact wgsigc_journal_lines "$(journalctl -q -u wgsigc.service --no-pager | wc -l)"
out=$(ip netns exec a wgsigc status --config /etc/wgsig/wgsigc.toml 2>&1); fact_run status_a $? "$out"

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
    fact tunnel_try_$try "$(answered $up)"
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
fact_ping moved_ping_after_change b 10.99.0.1
first_a=
up=1
while [ "$(calc "($(mono) - $changed < 100)")" = 1 ]; do
    if [ -z "$first_a" ] && [ "$(calc "($(started_a) > $changed)")" = 1 ]; then first_a=$(started_a); fi
    if ip netns exec b ping -c1 -W1 10.99.0.1 >/dev/null 2>&1; then up=0; break; fi
    sleep 0.2
done
back=$(mono)
fact moved_tunnel_back "$(answered $up)"
fact_endpoint moved_endpoint_of_a_in_b b wgb /tmp/a.pub
echo "FIGURE moved_back_after_change_s $(calc "$back - $changed")"
echo "FIGURE moved_back_after_a_run_s $(calc "$back - ${first_a:-$changed}")"
fact moved_b_journal_follow "$(journalctl -q -u wgsigc-b.service --no-pager | grep -i "follow" | tail -n 3)"

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
fact networkd_tunnel_up "$(answered $up)"
wg show wgr
# restart_repaired TAG IFACE UNIT: restart UNIT, which re-creates IFACE without endpoints; wait
# until IFACE has its endpoint back and reaches b (facts TAG_endpoint_before, _seen_wiped,
# _endpoint_after, _repaired, _wgsigc_runs_since_restart; FIGURE TAG_repair_s)
restart_repaired() {
    before=$(wg show "$2" endpoints | awk '{print $2}')
    restarted=$(mono); restarted_wall=$(date +%s)
    systemctl restart "$3"
    wiped=no
    up=1
    # wgsigc.service's runs since the restart, from the journal (its ExecMain timestamps read 0 once
    # systemd has unloaded the finished oneshot unit)
    runs_since() { journalctl -q -u wgsigc.service --since "@$restarted_wall" --no-pager | grep -c "Starting wgsigc.service"; }
    # done once the endpoint is back, reaches b, and the repair unit's wgsigc run has started: the
    # unit may reconfigure IFACE a moment after the restart returned, so the old endpoint alone is
    # not yet a repair
    while [ "$(calc "($(mono) - $restarted < 40)")" = 1 ]; do
        now_ep=$(wg show "$2" endpoints 2>/dev/null | awk '{print $2}')
        [ "$now_ep" = "(none)" ] && wiped=yes
        if [ "$now_ep" = "$before" ] && [ "$(runs_since)" -gt 0 ] &&
            ping -c1 -W1 -I "$2" 10.99.0.2 >/dev/null 2>&1; then up=0; break; fi
        sleep 0.1
    done
    back=$(mono)
    echo "$2's endpoint before the restart: $before; seen wiped after it: $wiped"
    fact "$1_endpoint_before" "$before"; fact "$1_seen_wiped" "$wiped"
    fact "$1_endpoint_after" "$(wg show "$2" endpoints | awk '{print $2}')"
    if ping -c1 -W2 -I "$2" 10.99.0.2 >/dev/null 2>&1; then fact "$1_repaired" answered; else fact "$1_repaired" "no answer"; fi
    fact "$1_wgsigc_runs_since_restart" "$(runs_since)"
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
    fact networkd_${op}_endpoint_before "$before"; fact networkd_${op}_ping "$(answered $up)"
    fact networkd_${op}_endpoint_after "$(wg show wgr endpoints | awk '{print $2}')"
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
fact roam_endpoint_of_b_in_r "$roamed"
systemctl start wgsigc.service
journalctl -q -u wgsigc.service --no-pager | tail -n 3
fact roam_endpoint_of_b_in_r_after_wgsigc "$(wg show wgr endpoints | awk '{print $2}')"
fact_ping roam_ping "" 10.99.0.2

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
fact wgquick_tunnel_up "$(answered $up)"
# a run still converging would see the interface vanish mid-way: restart once it has ended
for i in $(seq 60); do systemctl is-active -q wgsigc.service || break; sleep 0.5; done
restart_repaired wgquick wgq wg-quick@wgq
journalctl -q -u wgsigc-wg-quick@wgq.service -u wgsigc.service --no-pager | tail -n 6

echo "--- journal"
journalctl -q -u wgsigc.service -u wgsigc-b.service -u wgsigd.service --no-pager | tail -n 60
systemctl list-timers --all --no-pager | grep wgsig

stamp "reboot: wgq and wgr brought up at boot by wg-quick@wgq.service and systemd-networkd"
# The NAT lab is runtime state (namespaces, bridge, 192.0.2.1): wgsig-lab.service, the test's own,
# re-creates it at boot before the network (network-pre.target), with peer b's host in it (wgb:
# its key and peers, no endpoints) -- the other side of the tunnels, and the server's address.
mkdir -p /etc/wgsig-lab
cp /srv/payload/natlab.sh /etc/wgsig-lab/; cp /tmp/b.pub /etc/wgsig-lab/b.pub
cat /proc/sys/kernel/random/boot_id > /etc/wgsig-lab/boot_id
(umask 077; ip netns exec b wg showconf wgb | grep -v '^Endpoint' > /etc/wgsig-lab/wgb.conf)
printf '%s\n' '. /etc/wgsig-lab/natlab.sh' 'natlab_setup ""' 'ip -n b link add wgb type wireguard' \
    'ip netns exec b wg setconf wgb /etc/wgsig-lab/wgb.conf' 'ip -n b addr add 10.99.0.2/24 dev wgb' \
    'ip -n b link set wgb up' > /etc/wgsig-lab/boot.sh
printf '[Unit]\nDescription=test lab: NATs and peer b at boot\nBefore=network-pre.target\nWants=network-pre.target\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh /etc/wgsig-lab/boot.sh\n[Install]\nWantedBy=multi-user.target\n' \
    > /etc/systemd/system/wgsig-lab.service
printf '[Unit]\nRequires=wgsig-lab.service\nAfter=wgsig-lab.service\n' > /etc/systemd/system/wgsigc-b.service.d/boot-lab.conf
# A wg-quick that takes its time before it creates the interface (PreUp: a hook, a DNS wait):
# wgq is created 8 s after wg-quick@wgq starts. wgq comes first in wgsigc.toml, so a first run
# that does not wait for wg-quick finds no wgq and fails (exit 4).
sed -i '/^\[Interface\]/a PreUp = sleep 8' /etc/wireguard/wgq.conf
printf '[interface.wgq]\nservers = ["192.0.2.1:1223"]\nsecret_file = "keys_group0.key"\n[interface.wgr]\nservers = ["192.0.2.1:1223"]\nsecret_file = "keys_group0.key"\n' \
    > /etc/wgsig/wgsigc.toml
systemctl daemon-reload
check boot_enable systemctl enable systemd-networkd.service wg-quick@wgq.service wgsigc.timer wgsig-lab.service
check boot_repair_units_enabled systemctl is-enabled wgsigc-networkd.service wgsigc-wg-quick@wgq.service
touch "$WGSIG_REBOOT_REQUEST"   # the runner reboots the guest; the second boot runs AFTER_REBOOT
stamp "done"
"""

# The second boot (WGSIG_STAGE=2): what the boot did, from its journal (journalctl -b).
AFTER_REBOOT = r"""
set +e
. /srv/payload/labfacts.sh
stamp() { echo "=== $(cut -d' ' -f1 /proc/uptime) s: $*"; }
stamp "second boot"
if [ "$(cat /proc/sys/kernel/random/boot_id)" = "$(cat /etc/wgsig-lab/boot_id)" ]; then
    fact boot_new_boot no; else fact boot_new_boot yes; fi
b=$(cat /etc/wgsig-lab/b.pub)
hs() { wg show "$1" latest-handshakes 2>/dev/null | awk -v k="$b" '$1 == k {print $2}'; }
# wait (at most 120 s) for a handshake with b on both interfaces and for wgsigc.service's first run to end
for i in $(seq 240); do
    ended=$(journalctl -b -q -u wgsigc.service --no-pager | grep -c "Finished wgsigc\|Failed to start wgsigc")
    [ "$(hs wgq)" -gt 0 ] 2>/dev/null && [ "$(hs wgr)" -gt 0 ] 2>/dev/null && [ "$ended" -gt 0 ] && break
    sleep 0.5
done
stamp "waited"
btime=$(awk '/^btime/ {print $2}' /proc/stat)
for ifc in wgq wgr; do
    h=$(hs $ifc)
    echo "FIGURE boot_handshake_${ifc}_s $(( ${h:-0} > 0 ? ${h:-0} - btime : -1 ))"
    fact_endpoint boot_endpoint_of_b_in_$ifc "" $ifc /etc/wgsig-lab/b.pub
    if ping -c1 -W2 -I $ifc 10.99.0.2 >/dev/null 2>&1; then fact boot_ping_$ifc answered; else fact boot_ping_$ifc "no answer"; fi
done
fact boot_units_active "$(systemctl is-active wgsig-lab.service systemd-networkd.service wgsigc-networkd.service \
    wg-quick@wgq.service wgsigc-wg-quick@wgq.service wgsigc.timer)"
# systemd's start and end lines of the units, wg-quick's commands, networkd's lines about wgr,
# wgsigc's own lines
fact boot_timeline "$(journalctl -b -q -o short-monotonic --no-pager -u wgsig-lab.service \
    -u systemd-networkd.service -u wgsigc-networkd.service -u wg-quick@wgq.service \
    -u wgsigc-wg-quick@wgq.service -u wgsigc.service -u network-online.target | grep -v 'Consumed')"
echo "--- wgsigc-b.service in this boot"
journalctl -b -q -o short-monotonic -u wgsigc-b.service --no-pager | head -n 20
stamp "second boot done"
"""


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> LabRun:
    payload = tmp_path_factory.mktemp("deb-vm")
    build_deb(payload)
    write_payload(payload, 'if [ "${WGSIG_STAGE:-1}" = 2 ]; then exec sh /srv/payload/after_reboot.sh; fi\n'
                           "exec sh /srv/payload/story.sh")
    (payload / "story.sh").write_text(STORY.replace("__VERSION__", VERSION))
    (payload / "after_reboot.sh").write_text(AFTER_REBOOT)
    for lab in ("natlab.sh", "deb_tunnel.sh", "labfacts.sh"):
        shutil.copy(Path(__file__).with_name(lab), payload / lab)
    start = time.monotonic()
    rc, out = run_in_qemu(payload, timeout=600, reboot=True)
    print(f"\n[package story VM run: {time.monotonic() - start:.1f} s]")
    print("".join(line + "\n" for line in out.splitlines() if line.startswith("=== ")))
    assert rc == 0, out
    return LabRun(out)


NAT_A, NAT_A_MOVED, NAT_B = "192.0.2.11", "192.0.2.21", "192.0.2.12"


def test_package_installs_in_vm(story: LabRun) -> None:
    story.checked(install="apt installs the .deb", nat_rules="the lab's NATs masquerade",
                  lab_a_reaches_server="peer a reaches the server's address", genkey="wgsigd genkey writes a key",
                  enable_server="systemctl enable --now wgsigd.socket succeeds")
    story.checked(no_endpoints="the peers' interfaces start without endpoints",
                  enable_peers="systemctl enable --now of both wgsigc timers succeeds")


def test_tunnel_comes_up_by_itself_through_two_nats(story: LabRun) -> None:
    assert story.fact("tunnel_ping_a_to_b") == "answered", \
        f"the tunnel comes up by itself, with the timers only (waited {story.fact('tunnel_seconds')} s)"
    assert story.fact("ping_b_to_a") == "answered", "a ping from b to a through the tunnel is answered"
    assert story.fact("endpoint_of_b_in_a").startswith(f"{NAT_B}:"), \
        f"b's endpoint in a's kernel is NAT B's public address: {story.fact('endpoint_of_b_in_a')}"
    assert story.fact("endpoint_of_a_in_b").startswith(f"{NAT_A}:"), \
        f"a's endpoint in b's kernel is NAT A's public address: {story.fact('endpoint_of_a_in_b')}"


def test_timers_keep_running(story: LabRun) -> None:
    assert story.lines("units_active") == ["active"] * 3, \
        f"wgsigc.timer, wgsigc-b.timer and wgsigd.socket are active: {story.lines('units_active')}"
    assert int(story.fact("wgsigc_journal_lines")) > 0, "wgsigc.service's runs are in the journal"
    status = story.run("status_a")
    assert status.rc == 0 and f"peer {story.fact('key_b_first')}" in status.out, \
        f"wgsigc status on a succeeds and shows peer b; {status}"


def _repaired(story: LabRun, tag: str, what: str) -> None:
    before = story.fact(f"{tag}_endpoint_before")
    assert before.startswith(f"{NAT_B}:"), f"before the restart, {what} holds b's public endpoint: {before}"
    assert story.fact(f"{tag}_repaired") == "answered", f"after the restart, {what} reaches b again"
    assert story.fact(f"{tag}_endpoint_after") == before, "... with the endpoint it had before the restart"
    runs = int(story.fact(f"{tag}_wgsigc_runs_since_restart"))
    assert runs > 0, f"wgsigc.service (pulled in by the repair unit) ran after the restart\n{story.tail()}"
    seconds = story.figure(f"{tag}_repair_s")
    print(f"{what}: repaired in {seconds:.1f} s; endpoint seen wiped by the restart: {story.fact(f'{tag}_seen_wiped')}")
    assert seconds < 30, f"the repair comes sooner than the next timer run: {seconds} s"


def test_a_networkd_restart_is_repaired_within_seconds(story: LabRun) -> None:
    """Issue 17.4: the shipped wgsigc-networkd.service runs wgsigc once networkd reconfigured wgr."""
    story.checked(networkd_up="systemd-networkd starts", repair_unit_enabled="wgsigc-networkd.service enables")
    assert story.fact("networkd_tunnel_up") == "answered", "networkd's wgr gets a tunnel to b (wgsigc's run)"
    _repaired(story, "networkd", "networkd's wgr")
    for op in ("reload", "reconfigure", "downup"):
        assert story.fact(f"networkd_{op}_ping") == "answered", f"after networkctl {op}, wgr still reaches b"
        assert story.fact(f"networkd_{op}_endpoint_after") == story.fact(f"networkd_{op}_endpoint_before"), \
            f"networkctl {op} keeps the endpoint wgsigc wrote"


def test_a_wg_quick_restart_is_repaired_by_the_shipped_unit(story: LabRun) -> None:
    """Issue 17.4: "systemctl restart wg-quick@wgq" re-creates the interface without endpoints."""
    story.checked(wgquick_repair_enabled="wgsigc-wg-quick@wgq.service enables", wgquick_up="wg-quick@wgq starts")
    assert story.fact("wgquick_tunnel_up") == "answered", "wg-quick's wgq gets a tunnel to b (wgsigc's run)"
    _repaired(story, "wgquick", "wg-quick's wgq")


def test_a_roaming_peer_is_left_alone(story: LabRun) -> None:
    """Issue 17: an endpoint WireGuard learned by roaming is not the peer's record: never moved."""
    story.checked(roam_nat_rule="NAT B maps b to ports 40000-40100")
    roamed = story.fact("roam_endpoint_of_b_in_r")
    assert re.fullmatch(rf"{re.escape(NAT_B)}:400\d\d", roamed), \
        f"r's WireGuard learned b's new public port by itself: {roamed}"
    assert story.fact("roam_endpoint_of_b_in_r_after_wgsigc") == roamed, \
        "wgsigc's run on r leaves the endpoint WireGuard learned (b's record still has the old port)"
    assert story.fact("roam_ping") == "answered", "r still reaches b"


def test_a_new_peer_gets_a_tunnel_within_seconds_with_the_shipped_timer(story: LabRun) -> None:
    """Issue 11's goal: median from the second peer's first run to the first ping <= 3 s. Under
    software emulation Python runs about 14x slower than on hardware; the figure is printed."""
    for attempt in (1, 2, 3):
        assert story.fact(f"tunnel_try_{attempt}") == "answered", f"new peer b, try {attempt}: the tunnel comes up"
    times = sorted(story.figures("time_to_tunnel_s"))
    print(f"time to tunnel (s): {times}, median {statistics.median(times):.1f}; of it, until b's"
          f" registration reached wgsigd: {story.figures('tunnel_registered_s')}, until b wrote a's"
          f" endpoint: {story.figures('tunnel_written_s')}; python3 alone, started and importing"
          f" nothing {story.figures('python_start_s')}, wgsigc.kernelmode"
          f" {story.figures('start_and_wgsigc_imports_s')}, pyroute2's WireGuard"
          f" {story.figures('start_and_wireguard_import_s')}, the LAN candidates' address dump"
          f" {story.figures('start_and_address_dump_s')}, the whole pyroute2 package"
          f" {story.figures('start_and_whole_pyroute2_import_s')} s")
    assert len(times) == 3 and statistics.median(times) < 15, \
        f"a new peer's tunnel comes far sooner than one timer period (30 s): {times}"


def test_a_moved_peer_is_followed_within_one_timer_period_with_the_shipped_defaults(story: LabRun) -> None:
    """Issue 17: with handshake_threshold 180 the tunnel used to come back after ~178 s."""
    assert story.fact("moved_ping_after_change") == "no answer", "NAT A's new public address breaks the tunnel"
    assert story.fact("moved_tunnel_back") == "answered", "the tunnel comes back by itself"
    assert story.fact("moved_endpoint_of_a_in_b") == f"{NAT_A_MOVED}:51820", \
        "a's endpoint in b's kernel is NAT A's new address"
    follow = story.fact("moved_b_journal_follow")
    assert "follow moved peer" in follow and story.fact("key_a") in follow, \
        f"b's journal says it followed a, the moved peer: {follow!r}"
    after_run = story.figure("moved_back_after_a_run_s")
    after_change = story.figure("moved_back_after_change_s")
    print(f"tunnel back {after_change:.1f} s after the change, {after_run:.1f} s after a's next run")
    assert after_run <= 30 + 3 + 4, \
        f"back within one timer period + 3 s (+ the timer's randomized delay) of a's run: {after_run} s"


def _timeline(story: LabRun) -> list[tuple[float, str]]:
    """The second boot's journal lines as (seconds since boot, text)."""
    lines = []
    for line in story.lines("boot_timeline"):
        match = re.match(r"\[\s*([0-9.]+)\]\s+\S+\s+(.*)$", line)
        if match:
            lines.append((float(match[1]), match[2]))
    return lines


def _first(timeline: list[tuple[float, str]], *needles: str, after: float = -1.0) -> tuple[float, str] | None:
    return next(((t, text) for t, text in timeline if t > after and all(n in text for n in needles)), None)


def test_a_reboot_with_wg_quick_and_networkd_interfaces_converges_without_a_failed_run(story: LabRun) -> None:
    """Issue 18.5: the guest really reboots (one QEMU process, a new boot id) with the package
    installed, wgsigc.timer enabled, wgq brought up at boot by wg-quick@wgq.service and wgr by
    systemd-networkd (a .netdev with [WireGuardPeer] and no Endpoint=), and both repair units
    enabled as the README says. From that boot's journal: wgsigc.service's first run started after
    wg-quick had created wgq and networkd had created wgr, after both repair units had finished
    (their Before=wgsigc.service), and it did not fail (no "does not exist", no failed unit); both
    interfaces then hold peer b's public endpoint and reach b through the tunnel. The timer fires
    at once at boot and wgsigc.service and wg-quick@ both only wait for network-online.target, so
    without the repair units' Before= the run races wg-quick: here wg-quick takes 8 s before it
    creates wgq (PreUp = sleep 8) and wgq is wgsigc.toml's first interface, so a run that does not
    wait fails with exit 4 (checked by removing the Before= lines: this test then fails). The
    networkd side is only observed: networkd has created wgr well before wg-quick is done, so the
    networkd unit's Before= is not what holds the run back in this boot.
    Peer b's host and the NAT lab, runtime state, are re-created at boot by the test's own
    wgsig-lab.service before the network (network-pre.target)."""
    story.checked(boot_enable="systemctl enable of systemd-networkd, wg-quick@wgq, wgsigc.timer and the lab",
                  boot_repair_units_enabled="both repair units are enabled")
    assert story.fact("boot_new_boot") == "yes", "the guest really rebooted (a new boot id)"
    timeline = _timeline(story)
    shown = "\n".join(f"{t:8.2f} {text}" for t, text in timeline)
    first_run = _first(timeline, "Starting wgsigc.service")
    assert first_run is not None, f"wgsigc.service ran in the second boot (the timer, at boot)\n{shown}"
    started = first_run[0]
    wgq_created = _first(timeline, "wg-quick", "[#] ip link add wgq type wireguard")
    assert wgq_created is not None and wgq_created[0] < started, \
        f"wgsigc's first run started after wg-quick created wgq\n{shown}"
    wgr_seen = _first(timeline, "systemd-networkd", "wgr:")
    assert wgr_seen is not None and wgr_seen[0] < started, \
        f"wgsigc's first run started after networkd brought up wgr\n{shown}"
    for unit in ("wgsigc-wg-quick@wgq.service", "wgsigc-networkd.service"):
        done = _first(timeline, f"Finished {unit}")
        assert done is not None and done[0] <= started, \
            f"{unit} finished before wgsigc.service's first run started (Before=wgsigc.service)\n{shown}"
    end = next(((t, text) for t, text in timeline if t >= started and text.startswith("systemd[1]: ")
                and ("Finished wgsigc.service" in text or "Failed to start wgsigc.service" in text)), None)
    assert end is not None and "Finished" in end[1], f"wgsigc.service's first run at boot succeeded\n{shown}"
    assert not [text for _, text in timeline if "does not exist" in text], \
        f"no wgsigc run in this boot looked for an interface that did not exist yet\n{shown}"
    assert not [text for _, text in timeline if "wgsigc.service: Failed" in text], \
        f"wgsigc.service did not fail in this boot\n{shown}"
    for ifc in ("wgq", "wgr"):
        endpoint = story.fact(f"boot_endpoint_of_b_in_{ifc}")
        assert endpoint.startswith(f"{NAT_B}:"), f"after the boot, {ifc} holds b's public endpoint: {endpoint!r}"
        assert story.fact(f"boot_ping_{ifc}") == "answered", f"after the boot, {ifc} reaches b through the tunnel"
    order = [f"{t:.1f} s {text}" for t, text in timeline if text.startswith("systemd[1]: ")
             and ("Finished" in text or "Starting wgsigc.service" in text or "Reached target" in text)]
    print("second boot, seconds since the kernel started:\n  " + "\n  ".join(order))
    print(f"wg-quick created wgq at {wgq_created[0]:.1f} s, networkd's first line on wgr at {wgr_seen[0]:.1f} s"
          f" ({wgr_seen[1]})")
    print(f"wgsigc's first run started at {started:.1f} s and ended at {end[0]:.1f} s; first handshake"
          f" with b: wgq {story.figure('boot_handshake_wgq_s'):.0f} s, wgr {story.figure('boot_handshake_wgr_s'):.0f} s"
          " after boot (whole seconds)")
