"""wgsigc kernel mode against real kernel WireGuard, in a QEMU VM with a NAT lab (real, no fakes).

One VM boot runs every scenario in sequence (software emulation is slow). The guest script
(tests/kernel_lab.sh) does what needs the VM -- runs wgsigc, reads the kernel's endpoints,
allowed IPs and handshakes, pings -- and prints what it saw as ``FACT`` lines
(tests/labfacts.sh); the tests below judge those values. Only the lab's own preconditions
(servers listening, NAT rulesets, ...) are shell checks.

Lab: namespace ``pub`` (bridge 192.0.2.1/24) runs two wgsigd on ports 1223 and 1224 with
one secret; NAT namespaces ``nata`` (WAN 192.0.2.11) and ``natb`` (192.0.2.12) masquerade and
drop unsolicited inbound WAN traffic; peers ``a`` (10.1.0.2) and ``b`` (10.2.0.2) behind them
each have a kernel WireGuard ``wg0`` (port 51820) with keys and allowed IPs but no endpoint.

Keys d and e register with server 1 (the C client's mode, from the public network): d is in
a's ``[[interface.wg0.peer]]`` list but not on its interface, e is known to the server only.

Scenarios:
1. pyroute2 0.7.2 (Debian's): the errors pyroute2 raises for a vanished / non-WireGuard interface
   are those the fake kernel of tests/test_wgsigc_vanish.py raises; wgsigc in a with wg0 down
   (port free) and without CAP_NET_RAW registers from the port itself; then b, a -> handshake,
   ping, allowed IPs unchanged; a fourth run leaves the healthy peer alone and adds d with
   exactly its configured allowed IPs, ignores e; ``wgsigc status --json`` shows it.
2. Same from scratch with pyroute2 0.9.5 (PYTHONPATH).
3. Server 2 stopped, NAT A's public address changes (192.0.2.11 -> .21): the tunnel breaks;
   the next wgsigc runs (a, then b) restore it, with one server answering.
4. NAT A switches to ``masquerade fully-random``: no tunnel, wgsigc names a symmetric NAT
   (a: two servers saw different ports; b: no handshake since the endpoint was set), exits 5,
   and every peer keeps its keys and allowed IPs.
5. Server answers to b delayed 1.5 s (netem); b's wg0 is deleted right after b registered:
   exit 4 with one line; then re-created with a new key mid-run: exit 4, nothing written to it.
"""

from __future__ import annotations

import errno
import json
import re
import tempfile
from pathlib import Path

import pytest

from tests import vmlane
from tests.labfacts import LabRun, run_sources_lab
from tests.vmlib import add_pyroute2

pytestmark = pytest.mark.vm

PYROUTE2_NEW = "0.9.5"

LAB = Path(__file__).resolve().parent / "kernel_lab.sh"


VM_LANE_ORDER = 1  # tests/vmlane.py: the first lab in the background lane


def boot_lab() -> LabRun:
    with tempfile.TemporaryDirectory(prefix="wgsig-kernel-lab.") as tmp:
        add_pyroute2(Path(tmp), PYROUTE2_NEW)
        return run_sources_lab(Path(tmp), LAB, 420, "kernel lab")


@pytest.fixture(scope="module")
def lab() -> LabRun:
    return vmlane.lab_of(__name__, boot_lab)


# Debian's pyroute2, which sends the wrong peer flags, and a recent one (PYTHONPATH) that sends the kernel's
TAGS = {"p072": ("0.7.2", "False"), "p095": ("0.9.5", "True")}
NAT_A, NAT_A_MOVED, NAT_B, SERVER = "192.0.2.11", "192.0.2.21", "192.0.2.12", "192.0.2.1"


def _ips(lab: LabRun, name: str) -> dict[str, set[str]]:
    """``wg show wg0 allowed-ips`` as peer key -> its allowed IPs."""
    peers = {}
    for line in lab.lines(name):
        key, _, ips = line.partition("\t")
        peers[key] = set(ips.split()) - {"(none)"}
    return peers


def _keys(lab: LabRun, *names: str) -> list[str]:
    return [lab.fact(f"key_{n}") for n in names]


def test_lab_servers_listen(lab: LabRun) -> None:
    lab.passed(servers_listening="both wgsigd (ports 1223 and 1224) listen in the public namespace",
               nata_ruleset="NAT A masquerades", natb_ruleset="NAT B masquerades")


@pytest.mark.parametrize("tag", TAGS)
def test_tunnel_comes_up_through_two_nats(lab: LabRun, tag: str) -> None:
    version, kernel_flags = TAGS[tag]
    assert lab.fact(f"{tag}_pyroute2_version") == version, "the lab runs the pyroute2 version it means to"
    assert lab.fact(f"{tag}_sends_kernel_peer_flags") == kernel_flags, \
        f"pyroute2 {version}'s UPDATE_ONLY constant tells whether it sends the kernel's peer flags"
    assert lab.fact(f"{tag}_package_init_ran") == "False", "WireGuard and IPRoute load without pyroute2's __init__"
    for name in (f"{tag}_a_down_no_raw", f"{tag}_b_first", f"{tag}_a_second"):
        run = lab.run(name)
        assert run.rc == 0, f"every wgsigc run that brings the tunnel up succeeds; {run}"
    assert lab.fact(f"{tag}_endpoint_of_b_in_a") == f"{NAT_B}:51820", \
        "peer b's endpoint in a's kernel is NAT B's public address with b's port (port-preserving NAT)"
    assert lab.fact(f"{tag}_endpoint_of_a_in_b") == f"{NAT_A}:51820", \
        "peer a's endpoint in b's kernel is NAT A's public address with a's port"
    assert int(lab.fact(f"{tag}_handshake_a_with_b")) > 0, "a's kernel had a handshake with b"
    assert lab.fact(f"{tag}_ping_a_to_b") == "answered", "a ping from a to b's tunnel address is answered"


@pytest.mark.parametrize("tag", TAGS)
def test_real_pyroute2_errors_match_the_fake_kernel(lab: LabRun, tag: str) -> None:
    """tests/test_wgsigc_vanish.py fakes the kernel with these codes: info and set on a vanished
    interface raise ENODEV, on one that is not WireGuard EOPNOTSUPP."""
    codes = [int(c) for c in lab.fact(f"{tag}_netlink_error_codes").split()]
    assert codes == [errno.ENODEV, errno.ENODEV, errno.EOPNOTSUPP, errno.EOPNOTSUPP], \
        f"real pyroute2 raises the errors the fake kernel of test_wgsigc_vanish raises: {codes}"


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("interface", ["wg0", "wgbig"])
def test_stdlib_reader_matches_pyroute2_on_the_real_kernel(lab: LabRun, tag: str, interface: str) -> None:
    """wgsig/wgnetlink.py reads what pyroute2 reads (wg0 with a tunnel up: endpoints, handshakes; wgbig:
    300 peers, which the kernel's dump splits over several messages), without loading pyroute2, and
    the kernel refuses a vanished and a non-WireGuard interface with the fake kernel's codes."""
    assert lab.fact(f"{tag}_{interface}_reader_matches_pyroute2").startswith("True"), lab.tail()
    if interface == "wgbig":
        _, peers, parts = lab.fact(f"{tag}_{interface}_reader_matches_pyroute2").split()
        assert int(peers) == 300 and int(parts) > 1, "the dump was split over several messages"
    assert lab.fact(f"{tag}_{interface}_pyroute2_loaded_by_read") == "False"
    codes = [int(c) for c in lab.fact(f"{tag}_{interface}_reader_error_codes").split()]
    assert codes == [errno.ENODEV, errno.EOPNOTSUPP]


@pytest.mark.parametrize("tag", TAGS)
def test_interface_down_registers_from_the_port_itself_without_raw_socket(lab: LabRun, tag: str) -> None:
    lab.passed(raw_denied_without_cap="the lab's setpriv really denies raw sockets")
    assert lab.fact(f"{tag}_listeners_on_51820_while_down") == "", "with wg0 down nothing listens on port 51820"
    run = lab.run(f"{tag}_a_down_no_raw")
    assert run.rc == 0, f"wgsigc without CAP_NET_RAW, wg0 down, succeeds; {run}"
    assert f"public endpoint {NAT_A}:51820; 2 of 2 servers answered" in run.out, \
        f"it registered from port 51820 itself (both servers saw NAT A's address with that port); {run}"


@pytest.mark.parametrize("tag", TAGS)
def test_configured_peer_added_with_its_allowed_ips_unconfigured_key_ignored(lab: LabRun, tag: str) -> None:
    lab.passed(d_registered="key d registered with server 1 (C client mode)",
               e_registered="key e registered with server 1 (C client mode)")
    b, c, d = _keys(lab, "b", "c", "d")
    run = lab.run(f"{tag}_a_healthy_with_d")
    assert run.rc == 0, f"the run with d in the configuration succeeds; {run}"
    ips = _ips(lab, f"{tag}_with_d_ips_a")
    assert ips.get(d) == {"10.99.0.4/32", "10.201.0.0/16"}, \
        f"d, configured but not on the interface, is added with exactly its configured allowed IPs: {ips}"
    assert lab.fact(f"{tag}_endpoint_of_d_in_a") == f"{SERVER}:40002", \
        "d's endpoint in a's kernel is where d registered from (the public network, port 40002)"
    peers = set(lab.lines(f"{tag}_peers_of_a_with_d"))
    assert peers == {b, c, d}, f"e, registered but neither on the interface nor configured, is not added: {peers}"
    del ips[d]
    assert ips == _ips(lab, f"{tag}_setup_ips_a"), "adding d changes no other peer's allowed IPs"


def test_interface_deleted_mid_run_exits_4_with_one_line(lab: LabRun) -> None:
    lab.passed(slow_link="answers to b are delayed 1.5 s (netem)")
    run = lab.run("vanish")
    assert run.rc == 4, f"a run whose interface is deleted while it waits for the servers exits 4; {run}"
    assert len(run.lines) == 1 and re.match(
        r"^wgsigc: wg0: interface wg0 does not exist.*nothing was written to it$", run.lines[0]), \
        f"... and says so in one line: the interface is gone and nothing was written; {run}"


def test_interface_rekeyed_mid_run_gets_nothing_written(lab: LabRun) -> None:
    lab.passed(slow_link="answers to b are delayed 1.5 s (netem)")
    run = lab.run("rekeyed")
    assert run.rc == 4 and "wg0 changed during the run" in run.out, \
        f"a run whose interface is re-created with a new key mid-run exits 4 and says it changed; {run}"
    assert lab.fact("rekeyed_peers_of_b") == "", "nothing was written to the re-created interface (no peers)"


@pytest.mark.parametrize("tag", TAGS)
def test_allowed_ips_unchanged(lab: LabRun, tag: str) -> None:
    for x in "ab":
        assert _ips(lab, f"{tag}_connected_ips_{x}") == _ips(lab, f"{tag}_setup_ips_{x}"), \
            f"bringing the tunnel up leaves every allowed IP on {x}'s interface as it was set up"


@pytest.mark.parametrize("tag", TAGS)
def test_healthy_peer_left_alone(lab: LabRun, tag: str) -> None:
    (b,) = _keys(lab, "b")
    run = lab.run(f"{tag}_a_healthy_with_d")
    assert run.rc == 0 and "1 peers updated, 1 healthy" in run.out, \
        f"with a young handshake b counts as healthy (d is the one peer updated); {run}"
    assert not any(f"peer {b}: " in line for line in run.lines), f"nothing is said about (or done to) b; {run}"
    before = lab.fact(f"{tag}_endpoint_of_b_in_a_before_healthy_run")
    assert lab.fact(f"{tag}_endpoint_of_b_in_a_after_healthy_run") == before == f"{NAT_B}:51820", \
        "b's endpoint in a's kernel is the same after the run"


def test_status_json_reports_both_endpoints(lab: LabRun) -> None:
    (b,) = _keys(lab, "b")
    run = lab.run("p072_status_json")
    assert run.rc == 0, f"wgsigc status --json succeeds; {run}"
    view = json.loads(run.out)["interfaces"][0]
    peer = {p["public_key"]: p for p in view["peers"]}[b]
    assert peer["kernel_endpoint"] == peer["server_endpoint"] == f"{NAT_B}:51820", \
        f"status shows b's endpoint as the kernel and the servers have it: {peer}"
    assert peer["handshake_age"] is not None and peer["last_action"] == "healthy, left alone", \
        f"... its handshake and what the last run did: {peer}"
    assert view["last_run"]["own_endpoint"] == f"{NAT_A}:51820", f"... and a's own public endpoint: {view}"


def test_nat_address_change_is_restored_by_next_run(lab: LabRun) -> None:
    assert lab.fact("mapping_ping_after_change") == "no answer", "NAT A's new address breaks the tunnel"
    for name in ("mapping_a", "mapping_b"):
        run = lab.run(name)
        assert run.rc == 0, f"the next runs of a and b succeed; {run}"
    assert f"-> {NAT_A_MOVED}:51820" in lab.run("mapping_b").out, "b's run says it follows a to NAT A's new address"
    assert lab.fact("mapping_endpoint_of_a_in_b") == f"{NAT_A_MOVED}:51820", \
        "a's endpoint in b's kernel is NAT A's new address"
    assert lab.fact("mapping_ping_after_runs") == "answered", "the tunnel is back"
    for x in "ab":
        assert _ips(lab, f"mapping_ips_{x}") == _ips(lab, f"p095_setup_ips_{x}"), \
            f"following the move leaves the allowed IPs on {x}'s interface as they were set up"


def test_one_server_down_changes_nothing(lab: LabRun) -> None:
    lab.passed(server2_stopped="server 2 (port 1224) was stopped")
    run = lab.run("mapping_a")
    assert run.rc == 0, f"one server answering is enough: the run succeeds; {run}"
    assert re.search(r"warning: .*192\.0\.2\.1:1224", run.out), f"... and warns about the silent one; {run}"


def test_fully_random_nat_is_diagnosed(lab: LabRun) -> None:
    lab.passed(random_ruleset="NAT A masquerades fully-random")
    first = lab.run("random_a")
    assert "symmetric NAT" in first.out, f"a, whose two servers saw different ports, names a symmetric NAT; {first}"
    # Whether the first run already fails depends on how long a has waited for b by then (the
    # tunnel went quiet only seconds before): a symmetric NAT fails a run only once a peer was not
    # reached, and a's run after b's three runs is well past every candidate's step.
    run = lab.run("random_a2")
    assert run.rc == 5 and "symmetric NAT" in run.out and "hole punching cannot work" in run.out, \
        f"a's run once b was not reached exits 5 naming a symmetric NAT; {run}"
    second = lab.run("random_b2")
    assert "(candidate 2 of 2)" in second.out, f"b's second run tries its second candidate for a; {second}"
    third = lab.run("random_b3")
    assert third.rc == 5 and re.search(r"no handshake [0-9]+ s after its endpoint was set", third.out), \
        f"once every candidate had its step, b exits 5: no handshake since the endpoint was set; {third}"
    assert lab.fact("random_ping") == "no answer", "there is no tunnel through the fully-random NAT"
    status = lab.run("random_b_status")
    assert "problem: peer" in status.out, f"wgsigc status on b shows the problem; {status}"


def test_fully_random_nat_damages_nothing(lab: LabRun) -> None:
    for x in "ab":
        assert _ips(lab, f"random_ips_{x}") == _ips(lab, f"p095_setup_ips_{x}"), \
            f"the failed runs leave the allowed IPs on {x}'s interface as they were set up"
    assert set(lab.lines("random_peers_of_a")) == set(_keys(lab, "b", "c")), "a keeps exactly its peers b and c"
