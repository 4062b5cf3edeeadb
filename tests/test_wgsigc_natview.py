"""What this host's NAT was seen to do (wgsigc/natview.py, pure) and how a kernel-mode run words it
(``kernelmode._problems`` on a hand-made plan: no sockets, no kernel)."""

from __future__ import annotations

from wgsig.keys import PublicKey
from wgsigc.config import InterfaceConfig
from wgsigc.kernelmode import Run, _problems
from wgsigc.natview import Registration, observe, verdict
from wgsigc.plan import Action, PeerDecision, Plan

S1, S2 = "192.0.2.1:1223", "192.0.2.2:1223"
PEER = PublicKey(bytes(range(32)))


def test_a_new_port_per_server_is_named_a_symmetric_nat_with_what_each_server_saw() -> None:
    view = observe([Registration(S1, ("198.51.100.1", 3000)), Registration(S2, ("198.51.100.1", 4000))], 51820)
    assert view is not None and view.per_destination
    assert "symmetric NAT" in view.summary and f"{S1} saw 198.51.100.1:3000, {S2} saw 198.51.100.1:4000" in view.summary


def test_a_new_address_per_server_is_per_destination_too() -> None:
    view = observe([Registration(S1, ("198.51.100.1", 51820)), Registration(S2, ("198.51.100.2", 51820))], 51820)
    assert view is not None and view.per_destination and "different public address" in view.summary


def test_one_endpoint_for_every_server_is_endpoint_independent() -> None:
    view = observe([Registration(S1, ("198.51.100.1", 51820)), Registration(S2, ("198.51.100.1", 51820))], 51820)
    assert view is not None and not view.per_destination
    assert "keeps WireGuard's port 51820" in view.summary and "endpoint-independent" in view.summary


def test_a_changed_port_is_named_and_one_server_cannot_tell_the_mapping() -> None:
    view = observe([Registration(S1, ("198.51.100.1", 3000))], 51820)
    assert view is not None and not view.per_destination
    assert "maps WireGuard's port 51820 to port 3000" in view.summary and "a second server" in view.summary


def test_no_nat_when_the_servers_see_one_of_this_hosts_addresses() -> None:
    view = observe([Registration(S1, ("198.51.100.1", 51820))], 51820, ("10.0.0.2", "198.51.100.1"))
    assert view is not None and view.summary.startswith("no NAT")


def test_nothing_is_said_without_a_registration() -> None:
    assert observe([], 51820) is None
    assert verdict(None, True) == (None, None)


def test_a_symmetric_nat_fails_the_run_only_when_a_peer_is_unreachable() -> None:
    view = observe([Registration(S1, ("198.51.100.1", 3000)), Registration(S2, ("198.51.100.1", 4000))], 51820)
    failure, warning = verdict(view, unreachable=True)
    assert warning is None and failure is not None
    assert "forward a UDP port to WireGuard" in failure and "relay" in failure
    failure, warning = verdict(view, unreachable=False)
    assert failure is None and warning is not None and "WireGuard's roaming" in warning


def test_an_endpoint_independent_nat_is_no_verdict() -> None:
    view = observe([Registration(S1, ("198.51.100.1", 51820)), Registration(S2, ("198.51.100.1", 51820))], 51820)
    assert verdict(view, True) == (None, None)


def _run(decision: PeerDecision, *registrations: Registration) -> Run:
    run = Run(InterfaceConfig(name="wg0", servers=(), secret_file="/nonexistent"), dry_run=False)
    run.plan = Plan("wg0", None, (decision,))
    run.nat = observe(list(registrations), 51820)
    return run


SYMMETRIC = (Registration(S1, ("198.51.100.1", 3000)), Registration(S2, ("198.51.100.1", 4000)))
CONE = (Registration(S1, ("198.51.100.1", 51820)), Registration(S2, ("198.51.100.1", 51820)))


def test_a_run_behind_a_symmetric_nat_whose_tunnel_came_up_succeeds_with_a_warning() -> None:
    run = _run(PeerDecision(PEER, Action.HEALTHY, "handshake 1 s ago"), *SYMMETRIC)
    _problems(run)
    assert run.code == 0, run.messages
    assert any(m.startswith("warning: ") and "symmetric NAT" in m for m in run.messages), run.messages


def test_a_run_behind_a_symmetric_nat_with_an_unreachable_peer_exits_5_naming_it() -> None:
    run = _run(PeerDecision(PEER, Action.WAITING, "resting", problem=f"peer {PEER}: no handshake"), *SYMMETRIC)
    _problems(run)
    assert run.code == 5 and any("symmetric NAT" in m for m in run.messages), run.messages


def test_an_unreachable_peer_behind_a_cone_nat_says_what_this_hosts_nat_did() -> None:
    run = _run(PeerDecision(PEER, Action.WAITING, "resting", problem=f"peer {PEER}: no handshake"), *CONE)
    _problems(run)
    assert run.code == 5
    assert any("no handshake" in m and "the same public endpoint for every server" in m for m in run.messages), \
        run.messages


def test_a_symmetric_nat_with_an_announced_way_in_is_not_told_to_turn_on_port_mapping() -> None:
    """With the port mapping (or a forward in advertise) announced, the advice is about that."""
    registrations = [Registration(S1, ("198.51.100.1", 3000)), Registration(S2, ("198.51.100.1", 4000))]
    view = observe(registrations, 51820, (), [("198.51.100.1", 51820)])
    assert view is not None and view.per_destination
    failure, warning = verdict(view, unreachable=False)
    assert failure is None and warning is not None
    assert "198.51.100.1:51820 is announced" in warning and "port_mapping" not in warning
    failure, warning = verdict(view, unreachable=True)
    assert warning is None and failure is not None and "check that the router forwards it" in failure
