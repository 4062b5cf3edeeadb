"""The relay's pure parts: allocation table (wgsig/relayalloc.py), allocation file
(wgsig/relayfile.py), forwarding rules (wgsig/relayforward.py) and the server's RELAY_REQ
handling (wgsig/server.py, wgsig/x1view.py).

No sockets and no fakes of the code under test: the time is passed in, the only stand-in is a
deterministic ``randbelow`` for the port choice. Requests are built with the client core and
answers read back with its AnswerCollector. Real UDP is in tests/test_relay_loopback.py.
"""

from __future__ import annotations

import os

import pytest

from wgsig import relayfile, x1
from wgsig.client import AnswerCollector, GroupCredentials, Ignored, build_request
from wgsig.label import label_from_ns
from wgsig.relayalloc import RelayTable
from wgsig.relayfile import Lease
from wgsig.relayforward import Forwarder, wireguard_shaped
from wgsig.server import GroupConfig, Server
from wgsig.x1 import Item, ItemType

NOW = 1_700_000_000.0
SECRET = bytes(range(50, 82))
OTHER_SECRET = bytes(range(100, 132))


def peer(n: int) -> bytes:
    return bytes([n]) * 32


def counter() -> object:
    state = {"n": 0}

    def randbelow(size: int) -> int:
        state["n"] += 7
        return state["n"] % size

    return randbelow


def table(**kw: object) -> RelayTable:
    return RelayTable((40000, 40099), counter(), **kw)  # type: ignore[arg-type]


# --- allocation table ------------------------------------------------------------------------


def test_no_allocation_until_both_peers_asked_for_each_other() -> None:
    t = table()
    t.request(1, peer(1), [peer(2)], ("198.51.100.1",), NOW)
    assert len(t) == 0 and t.ports_for(1, peer(1), NOW) == {}
    t.request(1, peer(2), [peer(3)], ("198.51.100.2",), NOW + 1)  # asked for somebody else
    assert len(t) == 0
    t.request(1, peer(2), [peer(1)], ("198.51.100.2",), NOW + 2)
    assert len(t) == 1
    [a] = t.snapshot()
    assert (a.peer_a, a.peer_b, a.ips_a, a.ips_b) == (peer(1), peer(2), ("198.51.100.1",), ("198.51.100.2",))
    assert a.port_a != a.port_b and all(40000 <= p <= 40099 for p in (a.port_a, a.port_b))
    assert t.ports_for(1, peer(1), NOW + 2) == {peer(2): a.port_a}
    assert t.ports_for(1, peer(2), NOW + 2) == {peer(1): a.port_b}
    # The same two peers' IDs in another group are another pair: nothing there.
    assert t.ports_for(2, peer(1), NOW + 2) == {}


def test_an_allocation_expires_lifetime_after_the_older_sides_request() -> None:
    t = table(lifetime=600)
    t.request(1, peer(1), [peer(2)], ("198.51.100.1",), NOW)
    t.request(1, peer(2), [peer(1)], ("198.51.100.2",), NOW + 10)
    assert t.snapshot()[0].expires == NOW + 600
    # Only A keeps asking: the allocation still ends 600 s after B's last request.
    t.request(1, peer(1), [peer(2)], ("198.51.100.1",), NOW + 500)
    assert t.snapshot()[0].expires == NOW + 610
    assert t.expire(NOW + 611) == 1 and len(t) == 0 and t.dirty
    # Both renew: it lasts.
    t.request(1, peer(1), [peer(2)], ("198.51.100.1",), NOW + 700)
    t.request(1, peer(2), [peer(1)], ("198.51.100.2",), NOW + 701)
    t.request(1, peer(1), [peer(2)], ("198.51.100.1",), NOW + 1200)
    t.request(1, peer(2), [peer(1)], ("198.51.100.2",), NOW + 1201)
    assert t.snapshot()[0].expires == NOW + 1800


def test_limits_per_peer_per_group_and_the_port_range() -> None:
    t = table(max_per_peer=2, max_per_group=3)
    ips = ("198.51.100.9",)
    for other in (2, 3, 4):
        t.request(1, peer(1), [peer(other)], ips, NOW)
        t.request(1, peer(other), [peer(1)], ips, NOW)
    assert len(t) == 2 and t.refused == 1  # peer 1 has two
    t.request(1, peer(5), [peer(6)], ips, NOW)
    t.request(1, peer(6), [peer(5)], ips, NOW)
    t.request(1, peer(7), [peer(8)], ips, NOW)
    t.request(1, peer(8), [peer(7)], ips, NOW)
    assert len(t) == 3 and t.refused == 2  # the group has three
    small = RelayTable((40000, 40002), counter())  # three ports: one allocation
    small.request(1, peer(1), [peer(2)], ips, NOW)
    small.request(1, peer(2), [peer(1)], ips, NOW)
    small.request(1, peer(3), [peer(4)], ips, NOW)
    small.request(1, peer(4), [peer(3)], ips, NOW)
    assert len(small) == 1 and small.refused == 1


def test_new_registration_addresses_replace_the_allowed_sources() -> None:
    t = table()
    t.request(1, peer(1), [peer(2)], ("198.51.100.1",), NOW)
    t.request(1, peer(2), [peer(1)], ("198.51.100.2",), NOW)
    t.snapshot()
    t.request(1, peer(1), [peer(2)], ("203.0.113.1", "2001:db8::1"), NOW + 30)
    assert t.dirty and t.snapshot()[0].ips_a == ("203.0.113.1", "2001:db8::1")


def test_forgetting_a_peer_or_a_group_ends_its_allocations() -> None:
    t = table()
    t.request(1, peer(1), [peer(2)], ("198.51.100.1",), NOW)
    t.request(1, peer(2), [peer(1)], ("198.51.100.2",), NOW)
    t.forget_peer(1, peer(2))
    assert len(t) == 0
    t.request(1, peer(1), [peer(2)], ("198.51.100.1",), NOW)  # B's request was forgotten too
    assert len(t) == 0
    t.request(1, peer(2), [peer(1)], ("198.51.100.2",), NOW)
    t.keep_groups([2])
    assert len(t) == 0


# --- allocation file ---------------------------------------------------------------------------


def test_the_allocation_file_round_trips_and_bad_files_say_where() -> None:
    t = table()
    t.request(7, peer(1), [peer(2)], ("198.51.100.1", "2001:db8::1"), NOW)
    t.request(7, peer(2), [peer(1)], ("198.51.100.2",), NOW)
    [a] = t.snapshot()
    data = relayfile.encode([a])
    assert data.startswith(b"wgsig-relay-allocations 1\n")
    assert relayfile.decode(data) == [Lease(7, a.port_a, frozenset(a.ips_a), a.port_b, frozenset(a.ips_b),
                                            a.expires)]
    assert relayfile.decode(relayfile.encode([])) == []
    for bad, where in [
        (b"", "first line"), (b"something else\n", "first line"), (b"\xff", "ASCII"),
        (b"wgsig-relay-allocations 1\n1 2 3\n", "line 2"),
        (b"wgsig-relay-allocations 1\n1 40000 nonsense 40001 1.2.3.4 5\n", "line 2"),
        (b"wgsig-relay-allocations 1\n1 40000 1.2.3.4 40000 1.2.3.4 5\n", "line 2"),
        (b"wgsig-relay-allocations 1\n1 40000 1.2.3.4 40001 1.2.3.4 5\n1 40001 1.2.3.4 40002 1.2.3.4 5\n",
         "line 3"),
    ]:
        with pytest.raises(relayfile.RelayFileError, match=where):
            relayfile.decode(bad)


# --- forwarding rules --------------------------------------------------------------------------

A_IP, B_IP = "198.51.100.1", "203.0.113.2"
LEASE = Lease(1, 40000, frozenset({A_IP, "2001:db8::a"}), 40001, frozenset({B_IP}), NOW + 600)


def wg(kind: int, size: int) -> bytes:
    return bytes((kind, 0, 0, 0)) + bytes(size - 4)


def forwarder(**kw: float) -> Forwarder:
    f = Forwarder(now=NOW, **kw)
    assert f.install([LEASE], NOW) == ({40000, 40001}, set())
    return f


def test_wireguard_shapes() -> None:
    assert wireguard_shaped(wg(1, 148), 148) and wireguard_shaped(wg(2, 92), 92) and wireguard_shaped(wg(3, 64), 64)
    assert wireguard_shaped(wg(4, 32), 32) and wireguard_shaped(wg(4, 32 + 16 * 88), 32 + 16 * 88)
    assert not wireguard_shaped(wg(1, 92), 92) and not wireguard_shaped(wg(2, 148), 148)
    assert not wireguard_shaped(wg(4, 33), 33) and not wireguard_shaped(wg(5, 32), 32)
    assert not wireguard_shaped(wg(0, 32), 32) and not wireguard_shaped(b"\x04\x00\x00\x01" + bytes(28), 32)
    assert not wireguard_shaped(wg(4, 16), 16) and not wireguard_shaped(bytes(82), 82)


def test_forwarded_only_between_latched_registered_sources() -> None:
    f = forwarder()
    data = wg(4, 32 + 16 * 10)
    # Nothing for B yet: A's datagram latches A, and is dropped.
    assert f.forward(40000, data, len(data), (A_IP, 5555), NOW) is None
    assert f.dropped["no-peer"] == 1
    # B (from another port than it registered with: a symmetric NAT) -> to A's latched source.
    assert f.forward(40001, data, len(data), (B_IP, 6666), NOW + 1) == (40000, (A_IP, 5555))
    assert f.forward(40000, data, len(data), (A_IP, 5556), NOW + 2) == (40001, (B_IP, 6666))
    assert f.forward(40001, data, len(data), (B_IP, 6666), NOW + 3) == (40000, (A_IP, 5556))  # A re-latched
    # A dual-stack socket reports IPv4 sources mapped.
    assert f.forward(40000, data, len(data), ("::ffff:" + A_IP, 5557), NOW + 4) == (40001, (B_IP, 6666))
    assert f.forwarded == 4


def test_spoofed_unregistered_sources_bad_shapes_and_unknown_ports_are_dropped() -> None:
    f = forwarder()
    data = wg(4, 64)
    f.forward(40000, data, len(data), (A_IP, 5555), NOW)
    f.forward(40001, data, len(data), (B_IP, 6666), NOW)
    # B's address on A's port, a stranger, and a stranger trying to take B's latch.
    assert f.forward(40000, data, len(data), (B_IP, 6666), NOW) is None
    assert f.forward(40000, data, len(data), ("192.0.2.66", 5555), NOW) is None
    assert f.forward(40001, data, len(data), ("192.0.2.66", 6666), NOW) is None
    assert f.dropped["source"] == 3
    assert f.forward(40000, data, len(data), (A_IP, 5555), NOW) == (40001, (B_IP, 6666))  # latches unchanged
    for junk in (bytes(82), b"\x04\x00\x00\x00" + bytes(29), b"\x01\x00\x00\x00" + bytes(100), b"GET / HTTP/1.0\r\n"):
        assert f.forward(40000, junk, len(junk), (A_IP, 5555), NOW) is None
    assert f.dropped["shape"] == 4
    assert f.forward(40002, data, len(data), (A_IP, 5555), NOW) is None
    assert f.dropped["unknown-port"] == 1


def test_per_lease_and_global_rate_limits() -> None:
    f = forwarder(rate=10_000, burst=3_000)
    data = wg(4, 32 + 16 * 60)  # 992 bytes
    f.forward(40001, data, len(data), (B_IP, 6666), NOW)  # latch B (no budget spent: A not latched)
    sent = sum(f.forward(40000, data, len(data), (A_IP, 5555), NOW) is not None for _ in range(10))
    assert sent == 3 and f.dropped["rate"] == 7
    # 0.2 s later: 2,000 more bytes -> two more.
    sent = sum(f.forward(40000, data, len(data), (A_IP, 5555), NOW + 0.2) is not None for _ in range(5))
    assert sent == 2
    g = forwarder(global_rate=10_000, global_burst=2_000)
    g.forward(40001, data, len(data), (B_IP, 6666), NOW)
    assert sum(g.forward(40000, data, len(data), (A_IP, 5555), NOW) is not None for _ in range(5)) == 2
    assert g.dropped["global-rate"] == 3


def test_idle_latches_and_expired_leases_forward_nothing() -> None:
    f = forwarder(idle=180)
    data = wg(4, 32)
    f.forward(40001, data, len(data), (B_IP, 6666), NOW)
    assert f.forward(40000, data, len(data), (A_IP, 5555), NOW + 100) is not None
    assert f.forward(40000, data, len(data), (A_IP, 5555), NOW + 281) is None  # B silent for 181 s
    assert f.dropped["no-peer"] == 2  # and B's first one, while A was not latched
    assert f.forward(40001, data, len(data), (B_IP, 6666), NOW + 282) is not None
    assert f.forward(40001, data, len(data), (B_IP, 6666), NOW + 601) is None
    assert f.dropped["expired"] == 1
    assert f.expire(NOW + 601) == {40000, 40001} and f.ports == set()


def test_reinstalling_keeps_latches_unless_the_peer_registered_elsewhere() -> None:
    f = forwarder()
    data = wg(4, 32)
    f.forward(40000, data, len(data), (A_IP, 5555), NOW)
    f.forward(40001, data, len(data), (B_IP, 6666), NOW)
    assert f.install([LEASE._replace(expires=NOW + 1200)], NOW + 1) == (set(), set())
    assert f.forward(40000, data, len(data), (A_IP, 5555), NOW + 2) == (40001, (B_IP, 6666))
    moved = LEASE._replace(ips_b=frozenset({"203.0.113.99"}))
    f.install([moved], NOW + 3)
    assert f.forward(40000, data, len(data), (A_IP, 5555), NOW + 4) is None  # B's old latch is gone
    assert f.install([], NOW + 5) == (set(), {40000, 40001})


# --- the server: RELAY_REQ in, RELAY out -------------------------------------------------------


class Peer:
    def __init__(self, server: Server, n: int, source: tuple[str, int], secret: bytes = SECRET,
                 group: int = 3) -> None:
        self.server, self.n, self.source = server, n, source
        self.creds = GroupCredentials(group, secret)
        self.ns = int(NOW * 1e9) + n * 1_000_000

    def ask(self, clflg: int, items: list[Item] | None = None, relay_to: tuple[int, ...] = (),
            now: float = NOW) -> AnswerCollector | None:
        self.ns += 25_000_000
        data = build_request(self.creds, peer(self.n), label_from_ns(self.ns), clflg, os.urandom, items,
                             [peer(p) for p in relay_to])
        answer, _event = self.server.receive_datagram(data, self.source, now)
        if not answer:
            return None
        collector = AnswerCollector(self.creds)
        for datagram in answer:
            assert not isinstance(collector.receive_datagram(datagram), Ignored)
        return collector

    def relays(self, collector: AnswerCollector | None) -> dict[bytes, list[Item]]:
        assert collector is not None
        per_peer, _ = collector.entries()
        return {p: [i for i in items if i.type == ItemType.RELAY] for p, items in per_peer.items()
                if any(i.type == ItemType.RELAY for i in items)}


def relay_server(groups: int = 1) -> Server:
    configs = [GroupConfig(3, (SECRET,))] + ([GroupConfig(4, (OTHER_SECRET,))] if groups > 1 else [])
    return Server(configs, random_bytes=os.urandom, relay=table(), relay_host="192.0.2.1")


def test_server_allocates_for_consenting_peers_and_answers_with_relay_items() -> None:
    server = relay_server()
    a, b = Peer(server, 1, ("::ffff:198.51.100.1", 40001)), Peer(server, 2, ("::ffff:203.0.113.2", 50001))
    a.ask(0 | x1.XA)
    b.ask(0 | x1.XA)
    first = a.ask(1 | x1.XA, [], relay_to=(2,))
    assert first is not None and first.svext & x1.SV_RELAY and a.relays(first) == {}
    answer = b.ask(1 | x1.XA, [], relay_to=(1,))
    [allocation] = server.relay.snapshot()  # type: ignore[union-attr]
    assert allocation.ips_a == ("198.51.100.1",) and allocation.ips_b == ("203.0.113.2",)
    assert b.relays(answer) == {peer(1): [Item(ItemType.RELAY, "192.0.2.1", allocation.port_b)]}
    assert a.relays(a.ask(1 | x1.XA, [])) == {peer(2): [Item(ItemType.RELAY, "192.0.2.1", allocation.port_a)]}


def test_server_without_relay_never_sets_the_bit_and_ignores_relay_requests() -> None:
    server = Server([GroupConfig(3, (SECRET,))], random_bytes=os.urandom)
    a, b = Peer(server, 1, ("::ffff:198.51.100.1", 40001)), Peer(server, 2, ("::ffff:203.0.113.2", 50001))
    a.ask(0 | x1.XA)
    b.ask(0 | x1.XA)
    a.ask(1 | x1.XA, [], relay_to=(2,))
    answer = b.ask(1 | x1.XA, [], relay_to=(1,))
    assert answer is not None and not answer.svext & x1.SV_RELAY and b.relays(answer) == {}


def test_relay_requests_in_label_less_requests_or_across_groups_allocate_nothing() -> None:
    server = relay_server(groups=2)
    a, b = Peer(server, 1, ("::ffff:198.51.100.1", 40001)), Peer(server, 2, ("::ffff:203.0.113.2", 50001))
    stranger = Peer(server, 2, ("::ffff:203.0.113.2", 50001), OTHER_SECRET, group=4)
    a.ask(0 | x1.XA)
    b.ask(0 | x1.XA)
    stranger.ask(0 | x1.XA)
    # CLFLG 3 (replayable: stores no label) with RELAY_REQ: not honoured.
    a.ask(3 | x1.XA, [], relay_to=(2,))
    b.ask(3 | x1.XA, [], relay_to=(1,))
    assert len(server.relay) == 0  # type: ignore[arg-type]
    # The same peer ID in another group asking for A: A's group never consented to it.
    a.ask(1 | x1.XA, [], relay_to=(2,))
    stranger.ask(1 | x1.XA, [], relay_to=(1,))
    assert len(server.relay) == 0  # type: ignore[arg-type]
    # A replay of A's label-storing request is rejected before anything is looked at.
    a.ns -= 25_000_000
    assert a.ask(1 | x1.XA, [], relay_to=(2,)) is None


def test_a_c_client_and_an_x1_unaware_client_get_todays_bytes_from_a_relay_server() -> None:
    from wgsig import wire

    server = relay_server()
    a, b = Peer(server, 1, ("::ffff:198.51.100.1", 40001)), Peer(server, 2, ("::ffff:203.0.113.2", 50001))
    a.ask(0 | x1.XA)
    b.ask(0 | x1.XA)
    a.ask(1 | x1.XA, [], relay_to=(2,))
    b.ask(1 | x1.XA, [], relay_to=(1,))
    c = Peer(server, 3, ("::ffff:192.0.2.77", 1000))
    c.ns += 25_000_000
    data = build_request(c.creds, peer(3), label_from_ns(c.ns), 0, os.urandom)
    answer, _ = server.receive_datagram(data, c.source, NOW)
    assert answer == wire.encode_responses(list(server.groups[3].records()), 3, SECRET)


def test_an_allocation_admits_both_addresses_a_peer_registered_from() -> None:
    server = relay_server()
    a, b = Peer(server, 1, ("::ffff:198.51.100.1", 40001)), Peer(server, 2, ("::ffff:203.0.113.2", 50001))
    a6 = Peer(server, 1, ("2001:db8::a", 51820))
    a.ask(0 | x1.XA)
    a6.ns = a.ns + 25_000_000
    a6.ask(0 | x1.XA)  # A's WireGuard port over IPv6 too: its OBS6
    a.ns = a6.ns
    b.ask(0 | x1.XA)
    a.ask(1 | x1.XA, [], relay_to=(2,))
    b.ask(1 | x1.XA, [], relay_to=(1,))
    [allocation] = server.relay.snapshot()  # type: ignore[union-attr]
    assert allocation.ips_a == ("198.51.100.1", "2001:db8::a") and allocation.ips_b == ("203.0.113.2",)
