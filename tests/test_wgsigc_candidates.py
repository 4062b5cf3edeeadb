"""Candidate order, cycling, moved peers, kept endpoints (wgsigc/candidates.py, wgsigc/plan.py).

Pure code: hand-made interface states and records stand in for the kernel and the servers.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from wgsig.label import encode_label
from wgsig.wire import Record
from wgsigc.candidates import Announced, LocalView, candidate_order
from wgsigc.plan import Action, InterfaceState, PeerMemory, PeerState, Plan, Settings, plan

NOW = 1_700_000_000
OWN, PEER = bytes([1]) * 32, bytes([2]) * 32
MY_PUBLIC = "198.51.100.1"
LAN = LocalView(MY_PUBLIC, (ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("2001:db8:1::/64")), True)
PEER_LAN = Announced(("2001:db8:1::2", 51820), (("192.168.1.2", 51820), ("10.8.0.2", 51820), ("2001:db8:1::2", 51820)))


def rec(ip: str, port: int, age: int = 5) -> Record:
    return Record(PEER, ip, port, encode_label(NOW - age, age))


def state(peer: PeerState) -> InterfaceState:
    return InterfaceState("wg0", OWN, 51820, 0, True, {PEER: peer})


def decide(peer: PeerState, record: Record, now: float, memory: dict[bytes, PeerMemory] | None = None,
           announced: Announced | None = None, local: LocalView = LAN, **kw: float) -> Plan:
    records = {OWN: Record(OWN, local.public_ipv4 or "203.0.113.200", 51820, encode_label(NOW, 0)), PEER: record}
    return plan(state(peer), records, Settings(**kw), now, memory,  # type: ignore[arg-type]
                announced={PEER: announced} if announced else {}, local=local)


def test_same_nat_peer_lan_first_then_ipv6_then_routed_lan_then_hairpin() -> None:
    order = candidate_order((MY_PUBLIC, 40000), PEER_LAN, LAN)
    assert [(c.endpoint, c.kind) for c in order] == [
        (("192.168.1.2", 51820), "lan"),
        (("2001:db8:1::2", 51820), "lan-ipv6"),
        (("10.8.0.2", 51820), "routed-lan"),
        ((MY_PUBLIC, 40000), "hairpin"),
    ]
    assert order[0].step < order[-1].step


def test_other_peer_ipv6_first_then_forward_then_public_and_no_ipv6_without_it_here() -> None:
    announced = Announced(("2001:db8:9::2", 51820), (("10.9.0.2", 51820),), (("203.0.113.9", 4000),))
    far = LocalView(MY_PUBLIC, (ipaddress.ip_network("192.168.1.0/24"),), True)
    assert [c.kind for c in candidate_order(("203.0.113.9", 51820), announced, far)] == ["ipv6", "mapped", "public"]
    v4_only = LocalView(MY_PUBLIC, far.onlink, False)
    assert [c.kind for c in candidate_order(("203.0.113.9", 51820), announced, v4_only)] == ["mapped", "public"]
    # an IPv6-only peer has record 0.0.0.0:0: never a candidate
    assert candidate_order(("0.0.0.0", 0), Announced(("2001:db8:9::2", 1)), v4_only) == []


def test_the_endpoint_that_worked_goes_first() -> None:
    order = candidate_order((MY_PUBLIC, 40000), PEER_LAN, LAN, worked=[("10.8.0.2", 51820)])
    assert order[0].endpoint == ("10.8.0.2", 51820) and len(order) == 4


def test_cycling_moves_on_after_a_step_without_handshake_and_stops_at_success() -> None:
    record = rec(MY_PUBLIC, 40000)
    fresh = PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)
    p1 = decide(fresh, record, NOW, announced=PEER_LAN)
    (d1,) = p1.decisions
    assert d1.write is not None and d1.write.endpoint == ("192.168.1.2", 51820) and p1.waiting == [PEER]
    on_lan = PeerState(PEER, ("192.168.1.2", 51820), ("10.0.0.2/32",), 25, 0)
    # within the 2 s step: nothing written
    (d2,) = decide(on_lan, record, NOW + 1, p1.memory({}), PEER_LAN).decisions
    assert d2.action is Action.WAITING and d2.write is None
    # after it: the next candidate
    p3 = decide(on_lan, record, NOW + 2.5, p1.memory({}), PEER_LAN)
    (d3,) = p3.decisions
    assert d3.write is not None and d3.write.endpoint == ("2001:db8:1::2", 51820)
    # a handshake on it: healthy, remembered as worked, nothing written, no longer waiting
    shook = PeerState(PEER, ("2001:db8:1::2", 51820), ("10.0.0.2/32",), 25, NOW + 3)
    p4 = decide(shook, record, NOW + 3.5, p3.memory({}), PEER_LAN)
    (d4,) = p4.decisions
    assert d4.action is Action.HEALTHY and d4.write is None and p4.waiting == []
    assert d4.pending is not None and d4.pending.worked[0][0] == ("2001:db8:1::2", 51820)


def test_a_moved_peer_is_followed_although_its_handshake_is_recent() -> None:
    """Issue 17.1: the kernel points at the address the previous record gave; the peer left it."""
    healthy = PeerState(PEER, ("203.0.113.5", 51820), ("10.0.0.2/32",), 25, NOW - 60)
    before = decide(healthy, rec("203.0.113.5", 51820, age=40), NOW - 30, local=LocalView(MY_PUBLIC))
    assert before.decisions[0].action is Action.HEALTHY
    moved = decide(healthy, rec("203.0.113.77", 51820), NOW, before.memory({}), local=LocalView(MY_PUBLIC))
    (d,) = moved.decisions
    assert d.action is Action.FOLLOW and d.write is not None and d.write.endpoint == ("203.0.113.77", 51820)


def test_a_roaming_peer_is_left_alone() -> None:
    """WireGuard learned an endpoint by itself (not the previous record's): never moved while healthy."""
    roamed = PeerState(PEER, ("198.18.0.9", 3333), ("10.0.0.2/32",), 25, NOW - 60)
    memory = {PEER: PeerMemory(record_endpoint=("203.0.113.5", 51820))}
    (d,) = decide(roamed, rec("203.0.113.77", 51820), NOW, memory, local=LocalView(MY_PUBLIC)).decisions
    assert d.action is Action.HEALTHY and d.write is None


def test_a_hand_set_lan_endpoint_that_worked_is_kept_when_its_handshake_grows_old() -> None:
    """Issue 17.2: no candidates announced, same public IP; the hairpin endpoint never replaces it."""
    hand_set = ("192.168.1.2", 51820)
    young = PeerState(PEER, hand_set, ("10.0.0.2/32",), 25, NOW - 60)
    memory = decide(young, rec(MY_PUBLIC, 40000), NOW).memory({})
    assert memory[PEER].worked[0][0] == hand_set
    old = PeerState(PEER, hand_set, ("10.0.0.2/32",), 25, NOW - 400)
    written = set()
    now = float(NOW + 400)
    for _ in range(40):  # 20 s of a converging run, the other peer still down
        p = decide(old, rec(MY_PUBLIC, 40000), now, memory, handshake_timeout=15)
        written |= {w.endpoint for w in p.writes}
        memory = p.memory(memory)
        if p.writes:
            old = PeerState(PEER, p.writes[0].endpoint, ("10.0.0.2/32",), 25, NOW - 400)
        now += 0.5
    assert old.endpoint == hand_set  # it rests on the endpoint that worked
    assert not any("hairpinning" in (x or "") for x in p.problems)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 400), st.booleans(), st.booleans(), st.lists(st.floats(0.1, 3), min_size=1, max_size=30))
def test_a_healthy_peer_that_did_not_move_is_never_written_and_writes_are_candidates(
        handshake_age: int, announce: bool, same_nat: bool, ticks: list[float]) -> None:
    public = MY_PUBLIC if same_nat else "203.0.113.5"
    record = rec(public, 40000)
    peer = PeerState(PEER, None, ("10.0.0.2/32",), 0, NOW - handshake_age if handshake_age < 400 else 0)
    memory: dict[bytes, PeerMemory] = {}
    now = float(NOW)
    announced = PEER_LAN if announce else None
    for tick in ticks:
        p = decide(peer, record, now, memory, announced)
        (d,) = p.decisions
        allowed = {c.endpoint for c in d.candidates}
        for write in p.writes:
            assert write.endpoint in allowed
            assert not (peer.latest_handshake and now - peer.latest_handshake < 180), "healthy peer written"
            peer = PeerState(PEER, write.endpoint, peer.allowed_ips, 25, peer.latest_handshake)
        memory = p.memory(memory)
        now += tick
