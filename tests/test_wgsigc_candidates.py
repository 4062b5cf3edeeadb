"""Candidate order, cycling, moved peers, kept endpoints (wgsigc/candidates.py, wgsigc/plan.py).

Pure code: hand-made interface states and records stand in for the kernel and the servers.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wgsig import ipaddr
from wgsig.endpoint import Endpoint
from wgsig.keys import PublicKey
from wgsig.label import encode_label
from wgsig.wire import Record
from wgsigc.candidates import Announced, Candidate, LocalView, candidate_order
from wgsigc.plan import Action, InterfaceState, PeerMemory, PeerState, Plan, Settings, plan

NOW = 1_700_000_000
OWN, PEER = PublicKey(bytes([1]) * 32), PublicKey(bytes([2]) * 32)
MY_PUBLIC = "198.51.100.1"
LAN = LocalView(MY_PUBLIC, (ipaddr.parse_prefix("192.168.1.0/24"), ipaddr.parse_prefix("2001:db8:1::/64")), True)
PEER_LAN = Announced(("2001:db8:1::2", 51820), (("192.168.1.2", 51820), ("10.8.0.2", 51820), ("2001:db8:1::2", 51820)))


def rec(ip: str, port: int, age: int = 5) -> Record:
    return Record(PEER, ip, port, encode_label(NOW - age, abs(age)))


def state(peer: PeerState) -> InterfaceState:
    return InterfaceState("wg0", OWN, 51820, 0, {PEER: peer})


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
    far = LocalView(MY_PUBLIC, (ipaddr.parse_prefix("192.168.1.0/24"),), True)
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
    before = rec("203.0.113.5", 51820, age=90)
    memory = {PEER: PeerMemory(record_endpoint=("203.0.113.5", 51820), record_label=before.label)}
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


FAR = LocalView(MY_PUBLIC, (ipaddr.parse_prefix("192.168.1.0/24"),), True)


def kinds(order: list[Candidate]) -> list[tuple[Endpoint, str]]:
    return [(c.endpoint, c.kind) for c in order]


def test_far_peer_global_ipv6_only_then_forward_public_and_its_wireguard_port() -> None:
    announced = Announced(
        ("2001:db8:9::2", 51820),
        (("10.9.0.2", 51820), ("fd00:9::2", 51820), ("fe80::2", 51820), ("2001:db8:9::3", 51820)),
        (("203.0.113.9", 4000),),
    )
    assert kinds(candidate_order(("203.0.113.9", 61000), announced, FAR)) == [
        (("2001:db8:9::2", 51820), "ipv6"),
        (("2001:db8:9::3", 51820), "ipv6"),  # not the unique-local nor the link-local one
        (("203.0.113.9", 4000), "mapped"),
        (("203.0.113.9", 61000), "public"),
        (("203.0.113.9", 51820), "public-ip+port"),  # its WireGuard port, as its LAN items say
    ]
    # the seen port is its WireGuard port: no second public candidate
    same_port = candidate_order(("203.0.113.9", 51820), announced, FAR)
    assert [c.kind for c in same_port].count("public-ip+port") == 0


def test_unusable_endpoints_and_repeats_are_skipped_and_steps_fit_the_path() -> None:
    announced = Announced(("2001:db8:1::2", 51820), (("192.168.1.2", 0), ("2001:db8:1::2", 51820),
                                                   ("192.168.1.3", 51820), ("192.168.1.3", 51820)))
    order = candidate_order((MY_PUBLIC, 40000), announced, LAN)
    endpoints = [c.endpoint for c in order]
    assert len(endpoints) == len(set(endpoints))
    assert ("192.168.1.2", 0) not in endpoints
    assert kinds(order)[0] == (("192.168.1.3", 51820), "lan") and order[0].step_seconds == 2
    assert all(c.step == 5 for c in order if c.kind not in ("lan", "lan-ipv6"))
    assert candidate_order(("0.0.0.0", 0), None, LAN) == []
    assert candidate_order(None, Announced(None, (("ff02::1", 51820), ("::", 51820))), LAN) == []


def test_a_worked_endpoint_keeps_its_kind_or_is_called_worked_and_needs_ipv6_for_ipv6() -> None:
    order = candidate_order((MY_PUBLIC, 40000), PEER_LAN, LAN, [("2001:db8:1::2", 51820)])
    assert kinds(order)[0] == (("2001:db8:1::2", 51820), "lan-ipv6")
    hand_set = candidate_order((MY_PUBLIC, 40000), None, LAN, [("192.168.1.9", 51820)])
    assert kinds(hand_set) == [(("192.168.1.9", 51820), "worked"), ((MY_PUBLIC, 40000), "hairpin")]
    assert hand_set[0].step == 2  # on-link
    v4_only = LocalView(MY_PUBLIC, LAN.onlink[:1], False)
    assert kinds(candidate_order(("203.0.113.9", 1), None, v4_only, [("2001:db8:9::2", 51820)])) == [
        (("203.0.113.9", 1), "public")]


def test_ipv6_only_peer_is_added_at_its_obs6_never_at_0_0_0_0() -> None:
    records = {OWN: Record(OWN, MY_PUBLIC, 51820, encode_label(NOW, 0)), PEER: rec("0.0.0.0", 0)}
    config = Settings(extra_peers={PEER: ("10.0.0.2/32",)})
    empty = InterfaceState("wg0", OWN, 51820, 0, {})
    p = plan(empty, records, config, NOW, None, announced={PEER: Announced(("2001:db8:9::2", 51820))}, local=FAR)
    (d,) = p.decisions
    assert d.action is Action.ADD_PEER and d.write is not None and d.write.endpoint == ("2001:db8:9::2", 51820)
    assert p.waiting == [PEER]
    no_v6 = plan(empty, records, config, NOW, None, announced={PEER: Announced(("2001:db8:9::2", 51820))},
                 local=LocalView(MY_PUBLIC))
    assert no_v6.writes == [] and no_v6.decisions[0].action is Action.NO_CANDIDATE


def run_ticks(peer: PeerState, record: Record, start: float, seconds: float, memory: dict[bytes, PeerMemory],
              announced: Announced | None = None, local: LocalView = LAN, tick: float = 0.5,
              handshake_at: Endpoint | None = None,
              **kw: float) -> tuple[PeerState, dict[bytes, PeerMemory], list[Plan]]:
    """A converging run against a fake kernel: writes change its endpoint; a handshake comes only
    while it points at ``handshake_at`` (None: the other peer is down)."""
    plans = []
    now = start
    while now < start + seconds:
        p = decide(peer, record, now, memory, announced, local, **kw)
        plans.append(p)
        memory = p.memory(memory)
        for write in p.writes:
            peer = PeerState(PEER, write.endpoint, peer.allowed_ips, write.keepalive, peer.latest_handshake)
        if handshake_at is not None and peer.endpoint == handshake_at:
            peer = PeerState(PEER, peer.endpoint, peer.allowed_ips, peer.keepalive, int(now))
        now += tick
    return peer, memory, plans


def test_cycle_is_bounded_rests_on_the_server_seen_endpoint_and_pauses() -> None:
    record = rec(MY_PUBLIC, 40000)
    fresh = PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)
    peer, memory, plans = run_ticks(fresh, record, NOW, 16, {}, PEER_LAN, handshake_timeout=15)
    written = [w.endpoint for p in plans for w in p.writes]
    order = [c.endpoint for c in plans[0].decisions[0].candidates]
    assert written == order  # each candidate once, in order, then no more writes
    assert peer.endpoint == (MY_PUBLIC, 40000) and memory[PEER].resting  # both sides end on the public ones
    assert "resting on the server-seen endpoint" in (plans[-1].decisions[0].why or "")
    assert plans[-1].waiting == [PEER]  # still waiting: the run keeps fetching while its budget lasts
    # the next cycle only after the pause
    _, _, later = run_ticks(peer, record, NOW + 16, 30, memory, PEER_LAN, handshake_timeout=15)
    again = [w.endpoint for p in later for w in p.writes]
    assert again[:len(order)] == order and len(again) <= 2 * len(order)


def test_cycling_stops_at_the_candidate_that_gets_a_handshake_and_it_goes_first_next_time() -> None:
    record = rec(MY_PUBLIC, 40000)
    fresh = PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)
    routed = ("10.8.0.2", 51820)
    peer, memory, plans = run_ticks(fresh, record, NOW, 20, {}, PEER_LAN, handshake_at=routed)
    assert peer.endpoint == routed and plans[-1].waiting == [] and plans[-1].writes == []
    assert memory[PEER].worked[0][0] == routed
    # much later, the tunnel idle: the endpoint that worked is tried first
    idle = PeerState(PEER, routed, peer.allowed_ips, 25, peer.latest_handshake)
    (d,) = decide(idle, rec(MY_PUBLIC, 40000, age=-990), NOW + 1000, memory, PEER_LAN).decisions
    assert d.candidates[0].endpoint == routed and d.write is not None and d.write.endpoint == routed


def test_same_second_handshake_counts_and_an_older_one_does_not() -> None:
    record = rec("203.0.113.9", 4000)
    memory = {PEER: PeerMemory(("203.0.113.9", 4000), NOW + 0.9, NOW, ("203.0.113.9", 4000), record.label)}
    same = PeerState(PEER, ("203.0.113.9", 4000), (), 25, NOW)
    assert decide(same, record, NOW + 30, memory, local=FAR, handshake_threshold=10).memory({})[PEER].worked
    before = PeerState(PEER, ("203.0.113.9", 4000), (), 25, NOW - 1)
    assert not decide(before, record, NOW + 30, memory, local=FAR, handshake_threshold=10).memory({})[PEER].worked


def test_an_older_record_from_another_server_does_not_move_the_peer_back() -> None:
    healthy = PeerState(PEER, ("203.0.113.77", 51820), ("10.0.0.2/32",), 25, NOW - 60)
    memory = decide(healthy, rec("203.0.113.77", 51820, age=5), NOW, local=FAR).memory({})
    stale = decide(healthy, rec("203.0.113.5", 51820, age=100), NOW + 30, memory, local=FAR)
    (d,) = stale.decisions
    assert d.action is Action.HEALTHY and stale.writes == []
    assert stale.memory(memory)[PEER].record_endpoint == ("203.0.113.77", 51820)  # the newer one is kept


def test_a_moved_peer_is_cycled_until_a_handshake_after_the_follow() -> None:
    """After following, the old handshake is still young: the follow goes on through the candidates."""
    old_public = ("203.0.113.5", 51820)
    announced = Announced(("2001:db8:9::2", 51820))
    healthy = PeerState(PEER, old_public, ("10.0.0.2/32",), 25, NOW - 60)
    memory = decide(healthy, rec(*old_public, age=100), NOW - 30, local=FAR, announced=announced).memory({})
    new_public = ("203.0.113.77", 51820)
    peer, memory, plans = run_ticks(healthy, rec(*new_public, age=5), NOW, 12, memory, announced, FAR,
                                    handshake_at=new_public)
    written = [w.endpoint for p in plans for w in p.writes]
    assert written == [("2001:db8:9::2", 51820), new_public]  # OBS6 first, it fails, then the new record
    assert plans[0].decisions[0].action is Action.FOLLOW and "following" in (plans[0].decisions[0].why or "")
    assert peer.endpoint == new_public and plans[-1].decisions[0].action is Action.HEALTHY
    assert old_public not in [w[0] for w in memory[PEER].worked]  # it left that address


def test_a_lan_candidate_it_no_longer_announces_is_left_but_an_empty_announcement_moves_nothing() -> None:
    record = rec(MY_PUBLIC, 40000, age=100)
    on_lan = PeerState(PEER, ("192.168.1.2", 51820), ("10.0.0.2/32",), 25, NOW - 30)
    memory = decide(on_lan, record, NOW - 10, announced=PEER_LAN).memory({})
    assert memory[PEER].worked[0][0] == ("192.168.1.2", 51820)
    # a server restart lost the announcements: nothing moves
    lost = decide(on_lan, record, NOW, memory, None)
    assert lost.writes == [] and lost.decisions[0].action is Action.HEALTHY
    # it moved to another LAN address
    moved_lan = Announced(None, (("192.168.1.7", 51820),))
    p = decide(on_lan, record, NOW, memory, moved_lan)
    (d,) = p.decisions
    assert d.action is Action.FOLLOW and d.write is not None and d.write.endpoint == ("192.168.1.7", 51820)
    assert ("192.168.1.2", 51820) not in [w[0] for w in p.memory(memory)[PEER].worked]


def test_a_hand_set_lan_endpoint_is_adopted_on_a_first_run_and_never_traded_for_the_hairpin_one() -> None:
    """Issue 17.2 on a fresh install: no memory, the handshake already old, no announcements."""
    hand_set = ("192.168.1.2", 51820)
    old = PeerState(PEER, hand_set, ("10.0.0.2/32",), 25, NOW - 400)
    peer, memory, plans = run_ticks(old, rec(MY_PUBLIC, 40000), NOW, 20, {}, handshake_timeout=15)
    assert peer.endpoint == hand_set and memory[PEER].resting
    assert "resting on the last-worked endpoint" in (plans[-1].decisions[0].why or "")
    assert not any("hairpinning" in x for p in plans for x in p.problems)


def test_hairpin_problem_only_after_the_public_step_ran_out() -> None:
    """Issue 17.3: with candidates off the hairpin endpoint is the only one; no warning while it has its chance."""
    fresh = PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)
    record = rec(MY_PUBLIC, 40000)
    _, _, plans = run_ticks(fresh, record, NOW, 20, {}, handshake_timeout=4)
    first_problem = next(i for i, p in enumerate(plans) if p.problems)
    assert first_problem * 0.5 >= 5  # the hairpin step is 5 s
    assert all(len(p.problems) <= 1 for p in plans) and "hairpinning" in plans[first_problem].problems[0]
    assert "\n" not in plans[first_problem].problems[0]
    _, _, hairpins = run_ticks(fresh, record, NOW, 20, {}, handshake_timeout=4, handshake_at=(MY_PUBLIC, 40000))
    assert not any(p.problems for p in hairpins)


def test_a_lan_endpoint_that_worked_is_not_tried_from_elsewhere_and_not_rested_on() -> None:
    """A laptop away from home: the peer's home LAN address worked once; here it could be anyone."""
    home = ("192.168.1.2", 51820)
    elsewhere = LocalView("203.0.113.200", (ipaddr.parse_prefix("10.77.0.0/16"),), False)
    order = candidate_order(("198.51.100.1", 40000), None, elsewhere, [home])
    assert kinds(order) == [(("198.51.100.1", 40000), "public")]
    # still tried at home (on-link), and when the peer still announces it
    assert candidate_order(("198.51.100.1", 40000), None, LAN, [home])[0].endpoint == home
    announcing = Announced(None, (home,))
    assert candidate_order(("198.51.100.1", 40000), announcing, elsewhere, [home])[0].endpoint == home
    memory = {PEER: PeerMemory(record_endpoint=("198.51.100.1", 40000), record_label=rec("198.51.100.1", 40000).label,
                               worked=((home, float(NOW - 900)),))}
    idle = PeerState(PEER, home, ("10.0.0.2/32",), 25, NOW - 900)
    peer, _, _ = run_ticks(idle, rec("198.51.100.1", 40000), NOW, 12, memory, local=elsewhere)
    assert peer.endpoint == ("198.51.100.1", 40000)


def test_candidates_are_written_as_the_kernel_reports_them() -> None:
    """The plan compares the kernel's endpoint with the one it wrote: the same text for both."""
    order = candidate_order(("203.0.113.9", 1), Announced(("2001:DB8:9:0::2", 51820)), FAR)
    assert order[0].endpoint == ("2001:db8:9::2", 51820)


def test_a_higher_ranked_candidate_that_appears_mid_cycle_is_tried_at_once_and_only_once() -> None:
    """Dual stack: the peer registers over IPv6 while this side is cycling through its IPv4
    candidates; moving to its IPv6 endpoint at once is what lets both stateful firewalls open."""
    far = LocalView(MY_PUBLIC, (ipaddr.parse_prefix("192.168.1.0/24"),), True)
    record = rec("203.0.113.9", 51820)
    v4_only = Announced(None, (("10.9.0.2", 51820),))
    fresh = PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)
    peer, memory, plans = run_ticks(fresh, record, NOW, 1, {}, v4_only, far)
    assert [w.endpoint for p in plans for w in p.writes] == [("203.0.113.9", 51820)]  # public: step 1 of 1
    with_v6 = Announced(("2001:db8:9::2", 51820), (("10.9.0.2", 51820),))
    peer, memory, plans = run_ticks(peer, record, NOW + 1, 3, memory, with_v6, far)
    written = [w.endpoint for p in plans for w in p.writes]
    assert written == [("2001:db8:9::2", 51820)]  # at the first tick that knows it, not after the step
    assert plans[0].decisions[0].why == "cycling: step 1 of 2"
    # the same list again: no further jump, the cycle goes on (ipv6 step, then public) and rests
    peer, memory, plans = run_ticks(peer, record, NOW + 4, 12, memory, with_v6, far, handshake_timeout=30)
    assert [w.endpoint for p in plans for w in p.writes] == [("203.0.113.9", 51820)]
    assert memory[PEER].resting
    # a new candidate while resting is tried too; a lower-ranked one that was there is not re-tried
    with_forward = Announced(("2001:db8:9::2", 51820), (("10.9.0.2", 51820),), (("198.51.100.50", 4000),))
    peer, memory, plans = run_ticks(peer, record, NOW + 16, 1, memory, with_forward, far, handshake_timeout=30)
    assert [w.endpoint for p in plans for w in p.writes] == [("198.51.100.50", 4000)]


def test_when_this_host_moved_healthy_peers_get_a_handshake_at_their_endpoint_and_nothing_else() -> None:
    """Our NAT got a new address: the peer follows our new record, but our NAT drops what it sends
    until we have sent to it; a peer that never got a write from wgsigc has no keepalive either."""
    roamed = PeerState(PEER, ("203.0.113.5", 51820), ("10.0.0.2/32",), 0, NOW - 60)
    record = rec("203.0.113.5", 51820)
    records = {OWN: Record(OWN, "198.51.100.99", 51820, encode_label(NOW, 0)), PEER: record}
    moved = plan(state(roamed), records, Settings(), NOW, None, local=LocalView("198.51.100.99"),
                 own_before=(MY_PUBLIC, 51820))
    (d,) = moved.decisions
    assert d.action is Action.REOPEN and moved.waiting == []
    assert d.write is not None and d.write.endpoint == ("203.0.113.5", 51820) and d.write.keepalive == 25
    assert d.write.allowed_ips == ("10.0.0.2/32",) and "198.51.100.99:51820" in d.detail
    for before in [("198.51.100.99", 51820), None]:  # the same endpoint, or no previous run
        (same,) = plan(state(roamed), records, Settings(), NOW, None, local=LocalView("198.51.100.99"),
                       own_before=before).decisions
        assert same.action is Action.HEALTHY and same.write is None
    # a peer without a handshake goes through its candidates as always
    (fresh,) = plan(state(PeerState(PEER, None, ("10.0.0.2/32",))), records, Settings(), NOW, None,
                    local=LocalView("198.51.100.99"), own_before=(MY_PUBLIC, 51820)).decisions
    assert fresh.action is Action.SET_ENDPOINT


def test_unusable_announced_endpoints_are_never_candidates() -> None:
    """IPv6 unspecified and multicast, IPv4 broadcast, multicast and port 0 from X1 items: left out."""
    from wgsigc.candidates import Announced, LocalView, candidate_order

    bad = Announced(("::", 51820), (("ff02::1", 51820), ("255.255.255.255", 51820), ("224.0.0.5", 51820),
                                    ("192.168.1.9", 0)), (("ff05::2", 4000), ("0.0.0.0", 4000)))
    local = LocalView("198.51.100.1", (), True)
    assert candidate_order(("203.0.113.5", 4000), bad, local) == candidate_order(("203.0.113.5", 4000), None, local)
