"""X1 in a QEMU VM with a NAT lab: real kernel WireGuard, real NATs and stateful firewalls.

One VM boot runs tests/x1_lab.sh. It does what needs the VM -- runs wgsigc, reads the kernel's
endpoints, pings through the tunnels -- and prints what it saw as ``FACT`` lines
(tests/labfacts.sh) and the seconds it measured as ``FIGURE`` lines; each test below judges the
values of one behaviour (the lab's own preconditions are shell checks). wgsigc runs with the
shipped defaults (candidates on, converge_seconds 25) unless a scenario says otherwise; one peer's
run starts first and converges while the other peer's run starts, as two timers would.

Lab (tests/natlab.sh): namespace ``pub`` (192.0.2.1 and 2001:db8:ff::1) runs one dual-stack wgsigd
(``listen = "::"``); NATs A (192.0.2.11) and B (.12) masquerade for peers a (10.1.0.2) and b
(10.2.0.2); NAT C (.13) masquerades for l1 (10.3.0.2) and l2 (10.3.0.3) on one LAN; routers r6a and
r6b route 2001:db8:a::/64 and 2001:db8:b::/64 to IPv6-only peers v6a and v6b behind stateful
firewalls (inbound only when established or related). Every NAT drops unsolicited inbound traffic.

1. l1 and l2 behind NAT C without hairpinning: tunnel over the LAN; status shows the LAN candidate.
2. The same with candidates off: no tunnel and the hairpin warning (exit 5, after the public
   endpoint's step failed); with a NAT that hairpins: tunnel through the public endpoints, no warning.
3. v6a and v6b, IPv6 only: tunnel over IPv6 through both firewalls.
4. a (kernel mode, X1) and b (the C-compatible print mode, wg set by hand): tunnel over IPv4.
5. b's LAN also holds a's private address on another host: the LAN candidate fails, the next
   (public) one is used.
7. h1 and h2 behind NAT D, candidates off, each other's LAN endpoint set by hand: wgsigc (shipped
   handshake_threshold, 180 s) keeps it while the handshake is young and after it grew older than
   180 s (the lab waits that long while the other scenarios run), never writing the hairpin one.
8. a and b dual-stack (IPv4 behind the NATs, IPv6 behind stateful firewalls, a server name with A
   and AAAA): the tunnel goes over IPv6; with IPv6 UDP blocked at b's router, over IPv4.
9. m behind a symmetric NAT (``masquerade fully-random``) running miniupnpd (Debian's
   miniupnpd-nftables, PCP/NAT-PMP), a behind NAT A: no tunnel without port mapping; with
   ``port_mapping = "auto"`` m maps WireGuard's port, announces it (X1 MAPPED4), a reaches m there;
   status shows the mapping; a later run renews it, one with port mapping off deletes it; with
   miniupnpd gone the run still succeeds, with one line.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest

from tests import vmlane
from tests.labfacts import LabRun, run_sources_lab

pytestmark = pytest.mark.vm

HERE = Path(__file__).resolve().parent


VM_LANE_ORDER = 4  # tests/vmlane.py: the last lab in the background lane (its tests run last)


def boot_lab() -> LabRun:
    with tempfile.TemporaryDirectory(prefix="wgsig-x1-lab.") as tmp:
        return run_sources_lab(Path(tmp), HERE / "x1_lab.sh", 600, "X1 lab")


@pytest.fixture(scope="module")
def lab() -> LabRun:
    return vmlane.lab_of(__name__, boot_lab)


def _succeeded(lab: LabRun, *names: str) -> None:
    for name in names:
        run = lab.run(name)
        assert run.rc == 0, f"wgsigc run {name} succeeds; {run}"


def _answered(lab: LabRun, name: str, what: str) -> None:
    lab.answered(name, what)


def test_lab_is_up(lab: LabRun) -> None:
    lab.passed(server_dual_stack="wgsigd listens dual-stack on port 1223",
               v6_reaches_server="an IPv6-only peer reaches the server",
               lan_reaches_server="a peer behind NAT C reaches the server")


def test_same_lan_without_hairpinning_connects_over_the_lan(lab: LabRun) -> None:
    _succeeded(lab, "lan_l1", "lan_l2")
    _answered(lab, "lan_ping", "l1 to l2, behind one NAT that does not hairpin")
    assert lab.fact("lan_endpoint_of_l2_in_l1") == "10.3.0.3:51821", "l2's endpoint in l1's kernel is l2's LAN address"
    assert lab.fact("lan_endpoint_of_l1_in_l2") == "10.3.0.2:51820", "l1's endpoint in l2's kernel is l1's LAN address"


def test_status_shows_the_candidate_in_use_and_what_worked(lab: LabRun) -> None:
    status = lab.run("lan_status_l2")
    assert status.rc == 0, f"wgsigc status --json succeeds; {status}"
    peers = json.loads(status.out)["interfaces"][0]["peers"]
    peer = next(p for p in peers if p["public_key"] == lab.fact("key_l1"))  # the group has other peers too
    assert "(lan)" in (peer["in_use"] or ""), f"status says l2 uses l1's LAN candidate: {peer}"
    assert any(c["kind"] == "lan" for c in peer["candidates"]), f"... lists a LAN candidate: {peer}"
    assert peer["worked"], f"... and what worked: {peer}"


def test_journal_says_which_extension_was_used(lab: LabRun) -> None:
    assert "X1 with candidates" in lab.fact("wgsigd_log_l1"), \
        f"wgsigd's log says l1 registered with X1 and candidates: {lab.fact('wgsigd_log_l1')!r}"
    assert "over IPv6" in lab.fact("wgsigd_log_v6b"), \
        f"wgsigd's log says v6b registered over IPv6: {lab.fact('wgsigd_log_v6b')!r}"


def test_no_hairpinning_and_no_candidates_is_diagnosed(lab: LabRun) -> None:
    run = lab.run("nohairpin_l2")
    assert run.rc == 5 and "hairpinning" in run.out, \
        f"behind one NAT without hairpinning and without candidates, l2 exits 5 naming hairpinning; {run}"
    assert lab.fact("nohairpin_ping") == "no answer", "there is no tunnel between l1 and l2"


def test_hairpinning_nat_with_candidates_off_connects_through_public_endpoints_without_warning(lab: LabRun) -> None:
    _succeeded(lab, "hairpin_l1", "hairpin_l2")
    assert "hairpinning" not in lab.run("hairpin_l2").out, "with a NAT that hairpins there is no hairpin warning"
    _answered(lab, "hairpin_ping", "l1 to l2 through NAT C's loopback")
    endpoint = lab.fact("hairpin_endpoint_of_l1_in_l2")
    assert endpoint == "192.0.2.13:51820" or endpoint.startswith("10.3.0.1:"), \
        f"l1's endpoint in l2's kernel is l1's public endpoint (or NAT C masquerading the loopback): {endpoint}"


def test_ipv6_only_peers_behind_stateful_firewalls_connect(lab: LabRun) -> None:
    lab.passed(v6_firewall_drops_unsolicited="the IPv6 routers drop unsolicited inbound traffic")
    _succeeded(lab, "v6_a", "v6_b")
    _answered(lab, "v6_ping", "v6a to v6b over IPv6")
    assert lab.fact("v6_endpoint_of_v6b_in_v6a") == "[2001:db8:b::2]:51820", \
        "v6b's endpoint in v6a's kernel is v6b's global IPv6 address"
    print(f"IPv6-only tunnel: {lab.figure('ipv6_seconds'):.1f} s")


def test_mixed_group_with_a_print_mode_peer_connects_over_ipv4(lab: LabRun) -> None:
    skeleton = lab.run("mixed_print_mode_b")
    assert skeleton.rc == 0, f"the C-compatible print mode succeeds; {skeleton}"
    peers, key = {}, None
    for line in skeleton.lines:
        if line.startswith("PublicKey = "):
            key = line.removeprefix("PublicKey = ")
        elif line.startswith("Endpoint = ") and key is not None:
            peers[key] = line.removeprefix("Endpoint = ")
    assert peers.get(lab.fact("key_a")) == "192.0.2.11:51820", \
        f"the print mode's skeleton gives a (an X1 peer) with its public IPv4 endpoint; {skeleton}"
    assert "0.0.0.0" not in skeleton.out, f"... and no peer seen only over IPv6 as 0.0.0.0; {skeleton}"
    _succeeded(lab, "mixed_a")
    _answered(lab, "mixed_ping", "a to b (print mode, endpoint set by hand)")
    assert lab.fact("mixed_endpoint_of_b_in_a") == "192.0.2.12:51820", \
        "b's endpoint in a's kernel is NAT B's public address, from b's registration"


def test_a_hand_set_lan_endpoint_is_kept_after_its_handshake_grew_old(lab: LabRun) -> None:
    _answered(lab, "handset_young_ping", "h1 to h2 over the LAN endpoints set by hand")
    _succeeded(lab, "handset_young_h2", "handset_young_h1", "handset_old_h1")
    assert lab.fact("handset_young_endpoint_of_h2_in_h1") == "10.4.0.3:51820", \
        "while its handshake is young, the hand-set LAN endpoint stays in h1's kernel"
    age = int(lab.fact("handset_old_handshake_age"))
    assert age > 180, f"the lab waited until the handshake was older than handshake_threshold: {age} s"
    assert lab.fact("handset_old_endpoint_of_h2_in_h1") == "10.4.0.3:51820", \
        "once the handshake is older than 180 s, the endpoint that worked still stays in h1's kernel"
    run = lab.run("handset_old_h1")
    # A reopen's line names this host's own public endpoint change ("public endpoint A -> B"): not a write.
    wrote_hairpin = re.search(r"set endpoint: .*-> 192\.0\.2\.14:|handshake with 192\.0\.2\.14:", run.out)
    assert not wrote_hairpin, f"... and h1 never writes the (hairpin) public endpoint; {run}"
    _answered(lab, "handset_old_ping", "h1 to h2, still over the LAN")


def test_dual_stack_peers_prefer_the_path_that_works(lab: LabRun) -> None:
    _answered(lab, "dual_ping", "b to a, dual-stack")
    assert lab.fact("dual_endpoint_of_a_in_b") == "[2001:db8:11::2]:51820", \
        "a's endpoint in b's kernel is a's IPv6 address: IPv6 is preferred"
    _answered(lab, "dual_v4_ping", "b to a with IPv6 UDP blocked at b's router")
    assert lab.fact("dual_v4_endpoint_of_a_in_b") == "192.0.2.11:51820", \
        "with IPv6 UDP blocked, a's endpoint in b's kernel is NAT A's public IPv4 address"


def test_a_wrong_first_candidate_is_cycled_past(lab: LabRun) -> None:
    _succeeded(lab, "cycle_a", "cycle_b")
    run = lab.run("cycle_b")
    assert "10.1.0.2:51820 (lan) (candidate 1 of 2)" in run.out, f"b tried a's LAN address first; {run}"
    for name in ("cycle_a", "cycle_b"):
        assert "1 healthy" in lab.run(name).out, f"{name}'s run saw a handshake before it ended; {lab.run(name)}"
    assert lab.fact("cycle_endpoint_of_a_in_b") == "192.0.2.11:51820", \
        "a's endpoint in b's kernel is the next candidate, NAT A's public address"
    _answered(lab, "cycle_ping", "b to a, after the wrong LAN candidate")
    # one LAN step (2 s) and the public one, plus the run's own start-up under emulation
    seconds = lab.figure("cycle_seconds")
    print(f"wrong first candidate cycled past in {seconds:.1f} s")
    assert seconds < 25, f"the wrong candidate costs one step, not a timer period: {seconds} s"


def test_symmetric_nat_with_port_mapping_gets_a_tunnel(lab: LabRun) -> None:
    lab.passed(miniupnpd_listens="miniupnpd (miniupnpd-nftables) listens for PCP/NAT-PMP on NAT P",
               portmap_lab_reaches_server="peer m behind NAT P reaches the server")
    assert lab.fact("pm_off_ping") == "no answer", \
        "without port mapping there is no tunnel between m (symmetric NAT) and a (port-restricted NAT)"
    _succeeded(lab, "pm_a", "pm_m")
    run = lab.run("pm_m")
    assert "port mapping obtained: PCP 192.0.3.2:51820 -> port 51820, 120 s" in run.out, \
        f"m's run obtains a PCP mapping of WireGuard's port from miniupnpd; {run}"
    assert "dport 51820" in lab.fact("pm_rules"), f"miniupnpd forwards the port: {lab.fact('pm_rules')!r}"
    _answered(lab, "pm_ping", "m to a through the symmetric NAT, over the mapped port")
    assert lab.fact("pm_endpoint_of_m_in_a") == "192.0.3.2:51820", \
        "m's endpoint in a's kernel is the mapped endpoint m announced"
    print(f"port mapping obtained {lab.figure('portmap_mapping_seconds'):.1f} s after m's run started;"
          f" tunnel {lab.figure('portmap_tunnel_seconds'):.1f} s after it")


def test_status_shows_the_port_mapping(lab: LabRun) -> None:
    status = lab.run("pm_status_m")
    assert status.rc == 0, f"wgsigc status succeeds; {status}"
    assert re.search(r"port mapping: PCP 192\.0\.3\.2:51820 -> port 51820 \(gateway 10\.5\.0\.1\), expires in \d+ s",
                     status.out), f"status shows the mapping's protocol, external endpoint and expiry; {status}"


def test_port_mapping_is_renewed_then_deleted_when_turned_off(lab: LabRun) -> None:
    _succeeded(lab, "pm_renew_m", "pm_offrun_m")
    renew = lab.run("pm_renew_m")
    assert "port mapping renewed: PCP 192.0.3.2:51820 -> port 51820" in renew.out, \
        f"a run past half the granted lifetime renews the mapping; {renew}"
    off = lab.run("pm_offrun_m")
    assert "port mapping PCP 192.0.3.2:51820 -> port 51820 deleted (port mapping was turned off)" in off.out, \
        f"with port_mapping off the next run deletes the mapping; {off}"
    assert "dport 51820" not in lab.fact("pm_rules_after_off"), \
        f"... on the router too: {lab.fact('pm_rules_after_off')!r}"


def test_without_a_mapping_server_the_run_succeeds_with_one_line(lab: LabRun) -> None:
    _succeeded(lab, "pm_absent_m")
    lines = [line for line in lab.run("pm_absent_m").lines if "port mapping" in line]
    assert len(lines) == 1 and "warning: no port mapping (PCP: " in lines[0], \
        f"one line says there is no mapping and why: {lines}"
