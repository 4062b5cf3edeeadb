"""Unit tests of wgsigc.plan, the pure decision of what to write (hand-made interface states and
records stand in for the kernel and the servers: no I/O)."""

from __future__ import annotations

from wgsig import ipaddr
from wgsig.keys import PublicKey
from wgsig.label import encode_label
from wgsig.wire import Record
from wgsigc.candidates import Announced, LocalView
from wgsigc.plan import (
    Action,
    InterfaceState,
    PeerMemory,
    PeerState,
    Settings,
    plan,
)

NOW = 1_700_000_000
OWN = PublicKey(bytes([1]) * 32)
PEER = PublicKey(bytes([2]) * 32)
OTHER = PublicKey(bytes([3]) * 32)
EXTRA = PublicKey(bytes([4]) * 32)


def record(key: bytes, ip: str, port: int, age: int = 10) -> Record:
    return Record(key, ip, port, encode_label(NOW - age, 0))


def state(*peers: PeerState) -> InterfaceState:
    return InterfaceState("wg0", OWN, 51820, 0, {p.public_key: p for p in peers})


def records(*rs: Record) -> dict[bytes, Record]:
    return {r.peer_id: r for r in rs}


def test_new_endpoint_is_written_with_current_allowed_ips_and_default_keepalive() -> None:
    peer = PeerState(PEER, None, ("10.0.0.2/32", "10.9.0.0/16"), 0, 0)
    p = plan(state(peer), records(record(OWN, "198.51.100.1", 51820), record(PEER, "203.0.113.5", 40000)),
             Settings(keepalive=25), NOW)
    (decision,) = p.decisions
    assert decision.action is Action.SET_ENDPOINT
    assert decision.write is not None
    assert decision.write.endpoint == ("203.0.113.5", 40000)
    assert decision.write.allowed_ips == ("10.0.0.2/32", "10.9.0.0/16")
    assert decision.write.keepalive == 25 and decision.write.old_keepalive == 0
    assert not decision.write.new_peer
    assert p.own_endpoint == ("198.51.100.1", 51820)
    assert p.problems == []


def test_admins_keepalive_is_kept() -> None:
    peer = PeerState(PEER, ("203.0.113.5", 1), ("10.0.0.2/32",), 10, 0)
    (decision,) = plan(state(peer), records(record(PEER, "203.0.113.5", 2)), Settings(keepalive=25), NOW).decisions
    assert decision.write is not None
    assert (decision.write.keepalive, decision.write.old_keepalive) == (10, 10)


def test_recent_handshake_means_healthy_even_if_endpoint_differs() -> None:
    peer = PeerState(PEER, ("10.1.1.1", 5), ("10.0.0.2/32",), 25, NOW - 30)
    (decision,) = plan(state(peer), records(record(PEER, "203.0.113.5", 2)),
                       Settings(handshake_threshold=135), NOW).decisions
    assert decision.action is Action.HEALTHY
    assert decision.write is None


def test_stale_handshake_with_same_endpoint_restarts_handshake() -> None:
    peer = PeerState(PEER, ("203.0.113.5", 2), ("10.0.0.2/32",), 25, NOW - 500)
    (decision,) = plan(state(peer), records(record(PEER, "203.0.113.5", 2)),
                       Settings(handshake_threshold=135), NOW).decisions
    assert decision.action is Action.HANDSHAKE
    assert decision.write is not None and decision.write.endpoint == ("203.0.113.5", 2)


def test_unknown_peer_is_ignored_unless_configured() -> None:
    rs = records(record(OTHER, "203.0.113.7", 7), record(EXTRA, "203.0.113.8", 8))
    p = plan(state(), rs, Settings(extra_peers={EXTRA: ("10.0.0.8/32",)}), NOW)
    by_key = {d.public_key: d for d in p.decisions}
    assert by_key[OTHER].action is Action.NOT_CONFIGURED and by_key[OTHER].write is None
    added = by_key[EXTRA]
    assert added.action is Action.ADD_PEER
    assert added.write is not None and added.write.new_peer
    assert added.write.allowed_ips == ("10.0.0.8/32",)


def test_peers_without_record_or_with_old_record_are_left_alone() -> None:
    a = PeerState(PEER, ("203.0.113.5", 2), ("10.0.0.2/32",), 25, 0)
    b = PeerState(OTHER, None, ("10.0.0.3/32",), 0, 0)
    p = plan(state(a, b), records(record(PEER, "203.0.113.9", 9, age=1000)), Settings(max_age=600), NOW)
    by_key = {d.public_key: d for d in p.decisions}
    assert by_key[PEER].action is Action.OLD_RECORD
    assert by_key[OTHER].action is Action.NO_RECORD
    assert p.writes == []


def test_own_record_is_never_written_as_a_peer() -> None:
    p = plan(state(), records(record(OWN, "198.51.100.1", 51820)), Settings(), NOW)
    assert p.decisions == () and p.own_endpoint == ("198.51.100.1", 51820)


def test_same_public_ip_reports_hairpin_only_once_the_public_endpoint_failed() -> None:
    """Issue 17.3: with a NAT that hairpins the tunnel comes up; no warning before it had its chance."""
    peer = PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)
    rs = records(record(OWN, "198.51.100.1", 51820), record(PEER, "198.51.100.1", 40000))
    seen = plan(state(peer), rs, Settings(handshake_timeout=15), NOW - 3)  # its LAN candidates' grace
    first = plan(state(peer), rs, Settings(handshake_timeout=15), NOW, seen.memory({}))
    (d1,) = first.decisions
    assert first.problems == [] and d1.write is not None and d1.write.endpoint == ("198.51.100.1", 40000)
    pointed = PeerState(PEER, ("198.51.100.1", 40000), ("10.0.0.2/32",), 25, 0)
    later = plan(state(pointed), rs, Settings(handshake_timeout=15), NOW + 20, first.memory({}))
    (problem,) = later.problems
    assert "same public IP 198.51.100.1" in problem and "hairpin" in problem
    # ... and none when the handshake through it worked
    shook = PeerState(PEER, ("198.51.100.1", 40000), ("10.0.0.2/32",), 25, NOW + 1)
    assert plan(state(shook), rs, Settings(handshake_timeout=15), NOW + 20, first.memory({})).problems == []


def test_no_handshake_long_after_endpoint_was_set_is_a_problem() -> None:
    peer = PeerState(PEER, ("203.0.113.5", 2), ("10.0.0.2/32",), 25, 0)
    rs = records(record(PEER, "203.0.113.5", 2))
    settings = Settings(handshake_timeout=15)
    first = plan(state(peer), rs, settings, NOW)
    (d1,) = first.decisions
    assert d1.problem is None and d1.pending is not None
    assert (d1.pending.endpoint, d1.pending.since, d1.pending.waiting_since) == (("203.0.113.5", 2), NOW, NOW)
    # Next run, 20 s later, still no handshake: diagnosed, and "since" is kept.
    (d2,) = plan(state(peer), rs, settings, NOW + 20, {PEER: d1.pending}).decisions
    assert d2.problem is not None and "no handshake 20 s after its endpoint was set" in d2.problem
    assert d2.pending is not None and (d2.pending.endpoint, d2.pending.waiting_since) == (("203.0.113.5", 2), NOW)


def test_pending_is_reset_by_a_handshake_or_a_new_endpoint() -> None:
    settings = Settings(handshake_timeout=15, handshake_threshold=5)
    old = {PEER: PeerMemory(("203.0.113.5", 2), NOW - 100)}
    shook = PeerState(PEER, ("203.0.113.5", 2), (), 25, NOW - 50)  # handshake after "since", now stale
    (d,) = plan(state(shook), records(record(PEER, "203.0.113.5", 2)), settings, NOW, old).decisions
    assert d.problem is None and d.pending is not None
    assert (d.pending.endpoint, d.pending.since) == (("203.0.113.5", 2), NOW)
    assert d.pending.worked == ((("203.0.113.5", 2), float(NOW - 50)),)
    moved = PeerState(PEER, ("203.0.113.5", 2), (), 25, 0)
    (d,) = plan(state(moved), records(record(PEER, "203.0.113.5", 3)), settings, NOW, old).decisions
    assert d.problem is None and d.action is Action.SET_ENDPOINT


def test_handshake_in_the_same_second_as_since_counts_as_after() -> None:
    """Kernel handshake times are whole seconds, "since" is not: no false alarm."""
    settings = Settings(handshake_timeout=3, handshake_threshold=1)
    before = {PEER: PeerMemory(("203.0.113.5", 2), NOW + 0.7)}
    peer = PeerState(PEER, ("203.0.113.5", 2), (), 25, NOW)
    (d,) = plan(state(peer), records(record(PEER, "203.0.113.5", 2)), settings, NOW + 10, before).decisions
    assert d.problem is None


UNUSABLE = [("255.255.255.255", 51820, "broadcast"), ("0.0.0.0", 51820, "unspecified"), ("203.0.113.5", 0, "port 0"),
            ("224.0.0.1", 51820, "multicast"), ("239.1.2.3", 51820, "multicast"), ("0.1.2.3", 51820, "0.0.0.0/8"),
            ("240.0.0.1", 51820, "reserved")]


def test_records_with_unusable_endpoints_are_never_written_and_say_why() -> None:
    """Known peer (stale handshake) and a configured new one: nothing written, one reason each."""
    for ip, port, why in UNUSABLE:
        stale = PeerState(PEER, ("198.51.100.9", 4000), ("10.0.0.2/32",), 25, NOW - 500)
        p = plan(state(stale), records(record(PEER, ip, port), record(EXTRA, ip, port)),
                 Settings(extra_peers={EXTRA: ("10.0.0.4/32",)}), NOW)
        assert p.writes == [], (ip, port)
        for d in p.decisions:
            assert d.refused is not None and f"{ip}:{port}" in d.refused and why in d.refused, d.refused


def test_the_ipv6_only_placeholder_is_not_written_and_not_reported() -> None:
    """0.0.0.0:0 is how an X1 server shows a peer seen only over IPv6: nothing to say about it."""
    p = plan(state(PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)), records(record(PEER, "0.0.0.0", 0)), Settings(), NOW)
    assert p.writes == [] and p.decisions[0].refused is None


def test_kernel_mode_says_once_per_peer_that_an_unusable_endpoint_is_not_written() -> None:
    """kernelmode._decide over two ticks of a converging run (hand-made server answers and interface
    state: no netlink, no sockets): one warning per peer, and no write."""
    import time

    from wgsigc.candidates import LocalView
    from wgsigc.config import InterfaceConfig
    from wgsigc.kernelmode import Run, _decide
    from wgsigc.signalling import ServerOutcome

    def fresh(key: bytes, ip: str, port: int, age: int = 10) -> Record:  # _decide plans at time.time()
        return Record(key, ip, port, encode_label(int(time.time()) - age, 0))

    run = Run(InterfaceConfig("wg0", (), "k"), dry_run=False)
    run.servers = [ServerOutcome("a", records=[fresh(PEER, "255.255.255.255", 51820), fresh(OTHER, "224.0.0.9", 9)]),
                   ServerOutcome("b", records=[fresh(PEER, "255.255.255.255", 51820, age=5)])]
    interface = state(PeerState(PEER, None, ("10.0.0.2/32",), 0, 0), PeerState(OTHER, None, ("10.0.0.3/32",), 0, 0))
    for _tick in range(2):
        assert _decide(run, interface, LocalView(), {}).writes == []
    assert run.messages == [
        f"warning: peer {PublicKey(PEER)}: its record's endpoint 255.255.255.255:51820 is the broadcast address;"
        " never written to the kernel",
        f"warning: peer {PublicKey(OTHER)}: its record's endpoint 224.0.0.9:9 is a multicast address;"
        " never written to the kernel",
    ]


def _symmetric_round(age: int, first: int, second: int) -> tuple[Record, list[Record]]:
    """One registration round of a peer behind a symmetric NAT: each server saw another port
    (server 1's record a second newer). The merged record and every server's view."""
    views = [record(PEER, "203.0.113.5", first, age), record(PEER, "203.0.113.5", second, age + 1)]
    return views[0], views


def test_a_peer_behind_a_symmetric_nat_is_not_followed_between_the_servers_views() -> None:
    """Issue 14: each server sees the peer at another port in the same round. Which of them is the
    newest changes from run to run; that is not a move: no follow (which would restart the wait
    and hide the peer's problem), and the problem is still reported on the next run."""
    settings = Settings(handshake_timeout=15)
    waiting = PeerState(PEER, ("203.0.113.5", 44498), ("10.0.0.2/32",), 25, 0)
    merged1, views1 = _symmetric_round(40, 44498, 59214)
    p1 = plan(state(waiting), records(merged1), settings, NOW - 40, views={PEER: views1})
    assert p1.writes[0].endpoint == ("203.0.113.5", 44498)
    # the next run: the other server's view is now the newest
    merged2, views2 = _symmetric_round(10, 59214, 44498)
    p2 = plan(state(waiting), records(merged2), settings, NOW, p1.memory({}), views={PEER: views2})
    (d,) = p2.decisions
    assert d.action is not Action.FOLLOW, d
    assert p2.problems and "no handshake 40 s after its endpoint was set" in p2.problems[0]


def test_a_peer_that_moved_is_followed_although_a_server_still_holds_its_old_record() -> None:
    """A server that missed the new registration still has the old endpoint, from an earlier round."""
    healthy = PeerState(PEER, ("203.0.113.5", 51820), ("10.0.0.2/32",), 25, NOW - 60)
    old = record(PEER, "203.0.113.5", 51820, 70)
    memory = plan(state(healthy), records(old), Settings(), NOW - 40, views={PEER: [old]}).memory({})
    new = record(PEER, "203.0.113.77", 51820, 5)
    (d,) = plan(state(healthy), records(new), Settings(), NOW, memory, views={PEER: [new, old]}).decisions
    assert d.action is Action.FOLLOW and d.write is not None and d.write.endpoint == ("203.0.113.77", 51820)


def test_a_peer_the_servers_saw_at_several_ports_is_diagnosed_as_behind_a_symmetric_nat() -> None:
    """Issue 14 point 4: the side that is not symmetric learns from the servers' views where the
    problem is, and what helps."""
    waiting = PeerState(PEER, ("203.0.113.5", 44498), ("10.0.0.2/32",), 25, 0)
    merged, views = _symmetric_round(40, 44498, 59214)
    memory = plan(state(waiting), records(merged), Settings(), NOW - 40, views={PEER: views}).memory({})
    p = plan(state(waiting), records(merged), Settings(), NOW, memory, views={PEER: views})
    (problem,) = p.problems
    assert "the servers saw it at 203.0.113.5:44498, 203.0.113.5:59214" in problem
    assert "symmetric NAT" in problem and "port_mapping" in problem and "relay" in problem
    one = plan(state(waiting), records(merged), Settings(), NOW, memory, views={PEER: views[:1]})
    assert "the servers saw it at" not in one.problems[0]


def test_a_symmetric_peers_endpoint_stays_on_the_view_in_use_while_the_newest_view_changes() -> None:
    """No rewrite, no restarted step, when the other server's view becomes the newest."""
    settings = Settings(handshake_timeout=15)
    merged1, views1 = _symmetric_round(40, 44498, 59214)
    p1 = plan(state(PeerState(PEER, None, ("10.0.0.2/32",), 25, 0)), records(merged1), settings, NOW - 40,
              views={PEER: views1})
    on = PeerState(PEER, ("203.0.113.5", 44498), ("10.0.0.2/32",), 25, 0)
    merged2, views2 = _symmetric_round(39, 59214, 44498)
    p2 = plan(state(on), records(merged2), settings, NOW - 39, p1.memory({}), views={PEER: views2})
    (d,) = p2.decisions
    assert d.action is Action.WAITING and p2.writes == [], d
    assert p2.memory({})[PEER].record_endpoint == ("203.0.113.5", 44498)


def test_a_peer_first_seen_behind_this_public_ip_gets_a_moment_for_its_lan_candidates() -> None:
    """An X1 peer announces its LAN addresses in the request after its registration: the hairpin
    endpoint, the only candidate until they arrive, waits CANDIDATES_GRACE (3 s) from the first
    sight of the peer; a peer that announces nothing (a C peer) gets it after that, however often
    its record is refreshed (a converging peer refreshes it every half second)."""
    peer = PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)
    own = record(OWN, "198.51.100.1", 51820)
    fresh = records(own, record(PEER, "198.51.100.1", 40000, age=0))
    first = plan(state(peer), fresh, Settings(), NOW)
    (waiting,) = first.decisions
    assert waiting.action is Action.WAITING and waiting.write is None and "LAN candidates" in waiting.detail
    assert first.waiting == [PEER], "a converging run keeps fetching meanwhile"
    memory = first.memory({})
    # A second later the server has its LAN address: that one is written, not the hairpin one.
    local = LocalView("198.51.100.1", (ipaddr.parse_prefix("10.1.0.0/24"),))
    announced = {PEER: Announced(host=(("10.1.0.7", 51820),))}
    (lan,) = plan(state(peer), fresh, Settings(), NOW + 1, memory, announced=announced, local=local).decisions
    assert lan.write is not None and lan.write.endpoint == ("10.1.0.7", 51820)
    # Nothing announced: still waiting at 2 s with a just-refreshed record, the hairpin endpoint at 3 s.
    refreshed = records(own, record(PEER, "198.51.100.1", 40000, age=0))
    second = plan(state(peer), refreshed, Settings(), NOW + 2, memory)
    assert second.decisions[0].write is None
    (hairpin,) = plan(state(peer), refreshed, Settings(), NOW + 3, second.memory(memory)).decisions
    assert hairpin.write is not None and hairpin.write.endpoint == ("198.51.100.1", 40000)
    # Not for a peer behind another public IP.
    elsewhere = records(own, record(PEER, "203.0.113.5", 40000, age=0))
    (public,) = plan(state(peer), elsewhere, Settings(), NOW).decisions
    assert public.write is not None and public.write.endpoint == ("203.0.113.5", 40000)
