"""The server engine with X1 (wgsig/server.py, wgsig/x1view.py): byte-level checks.

Pure code: requests are built with the client core, answers read back with the client's
AnswerCollector (no sockets; real UDP is in tests/test_loopback.py and the VM lab).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgsig import wire, x1
from wgsig.client import AnswerCollector, GroupCredentials, Ignored, build_request
from wgsig.events import Answered, Reason, Rejected
from wgsig.label import label_from_ns
from wgsig.server import GroupConfig, Server
from wgsig.x1 import Item, ItemType

SECRET = bytes(range(50, 82))
NOW = 1_700_000_000.0
V4 = ("::ffff:198.51.100.1", 40001)
V4B = ("::ffff:198.51.100.2", 40002)
V6 = ("2001:db8::a", 51820)
LAN = [Item(ItemType.HOST4, "192.168.1.10", 51820), Item(ItemType.HOST6, "2001:db8::a", 51820),
       Item(ItemType.HOST4, "10.0.0.10", 51820)]


def peer(n: int) -> bytes:
    return bytes([n]) * 32


class Clock:
    def __init__(self) -> None:
        self.ns = int(NOW * 1e9)

    def label(self) -> bytes:
        self.ns += 25_000_000  # 25 ms between requests, as clients space them
        return label_from_ns(self.ns)


def make(encrypt: bool = False) -> tuple[Server, GroupCredentials, Clock]:
    server = Server([GroupConfig(3, (SECRET,), encrypt=encrypt)], random_bytes=os.urandom)
    return server, GroupCredentials(3, SECRET, encrypt), Clock()


def ask(server: Server, creds: GroupCredentials, clock: Clock, who: int, clflg: int, source: tuple[str, int],
        items: list[Item] | None = None) -> tuple[list[bytes], object]:
    data = build_request(creds, peer(who), clock.label(), clflg, os.urandom, items)
    return server.receive_datagram(data, source, NOW)


def collect(creds: GroupCredentials, datagrams: list[bytes]) -> AnswerCollector:
    collector = AnswerCollector(creds)
    for data in datagrams:
        outcome = collector.receive_datagram(data)
        assert not isinstance(outcome, Ignored), outcome
    assert collector.complete
    return collector


def test_a_request_without_xa_gets_todays_answer_byte_for_byte_whatever_x1_knows() -> None:
    server, creds, clock = make()
    ask(server, creds, clock, 1, 0 | x1.XA, V4, None)
    ask(server, creds, clock, 1, 1 | x1.XA, V4, LAN)  # announcements
    ask(server, creds, clock, 2, 0 | x1.XA, V6)  # an IPv6-only peer
    answer, event = ask(server, creds, clock, 3, 0, V4B)
    records = [r for r in server.groups[3].records()]
    assert [r.peer_id for r in records] == [peer(1), peer(3)]  # the IPv6-only peer is not in it
    assert answer == wire.encode_responses(records, 3, SECRET)
    assert isinstance(event, Answered) and event.extension == ""


def test_an_x1_answer_has_capabilities_every_record_and_blocks_for_label_storing_requests() -> None:
    server, creds, clock = make()
    ask(server, creds, clock, 1, 0 | x1.XA, V4)
    ask(server, creds, clock, 1, 1 | x1.XA, V4, LAN)
    ask(server, creds, clock, 1, 0 | x1.XA, V6)  # the same peer over IPv6: its OBS6
    ask(server, creds, clock, 2, 0 | x1.XA, ("2001:db8::b", 51820))
    ask(server, creds, clock, 4, 0 | x1.XA, V4B)
    answer, event = ask(server, creds, clock, 4, 1 | x1.XA, V4B)
    assert isinstance(event, Answered) and event.extension == "x1"
    collector = collect(creds, answer)
    assert collector.svext == x1.SV_XR_OK | x1.SV_V6
    by_peer = {r.peer_id: r for r in collector.records()}
    assert (by_peer[peer(2)].ip, by_peer[peer(2)].port) == ("0.0.0.0", 0)
    items, requester = collector.entries()
    # OBS6 first; HOST6 equal to OBS6 left out; then the other announcements in order.
    assert items[peer(1)] == [Item(ItemType.OBS6, "2001:db8::a", 51820), LAN[0], LAN[2]]
    assert items[peer(2)] == [Item(ItemType.OBS6, "2001:db8::b", 51820)]
    assert requester == [Item(ItemType.OBS, "198.51.100.2", 40002)]
    # A CLFLG 3 fetch stores no label, can be replayed: the view without blocks.
    answer, _ = ask(server, creds, clock, 4, 3 | x1.XA, V4B)
    assert all(len(d) == 540 for d in answer)
    assert collect(creds, answer).entries() == ({}, [])


def test_ipv6_registration_without_xa_is_dropped_and_with_xa_moves_to_ipv4_later() -> None:
    server, creds, clock = make()
    answer, event = ask(server, creds, clock, 1, 0, V6)
    assert answer == [] and isinstance(event, Rejected) and event.reason is Reason.NOT_IPV4
    answer, event = ask(server, creds, clock, 1, 0 | x1.XA, V6)
    assert isinstance(event, Answered) and event.ipv6 and len(server.groups[3]) == 0
    ask(server, creds, clock, 1, 0 | x1.XA, V4)
    assert [r.endpoint for r in server.groups[3].records()] == ["198.51.100.1:40001"]
    collector = collect(creds, ask(server, creds, clock, 1, 1 | x1.XA, V4)[0])
    assert len(collector.records()) == 1  # not twice: it left the IPv6-only table


@pytest.mark.parametrize("damage", ["stripped", "xmac", "truncated", "block_without_xr"])
def test_a_damaged_extended_request_is_dropped_and_changes_nothing(damage: str) -> None:
    server, creds, clock = make()
    data = bytearray(build_request(creds, peer(1), clock.label(), 0 | x1.XA, os.urandom, LAN))
    if damage == "stripped":
        data = data[:82]
    elif damage == "xmac":
        data[-1] ^= 1
    elif damage == "truncated":
        data = data[:-1]
    else:  # the block without XR in CLFLG: base HMAC no longer matches, or length is wrong
        base = wire.encode_request(peer(1), clock.label(), 0 | x1.XA, 3, SECRET)
        data = bytearray(base + bytes(data[82:]))
    answer, event = server.receive_datagram(bytes(data), V4, NOW)
    assert answer == [] and isinstance(event, Rejected)
    assert len(server.groups[3]) == 0


def test_a_replayed_extended_request_is_rejected() -> None:
    server, creds, clock = make()
    data = build_request(creds, peer(1), clock.label(), 0 | x1.XA, os.urandom, LAN)
    assert server.receive_datagram(data, V4, NOW)[0]
    answer, event = server.receive_datagram(data, V4B, NOW)
    assert answer == [] and isinstance(event, Rejected) and event.reason is Reason.REPLAY


def test_encrypted_x1_both_ways() -> None:
    server, creds, clock = make(encrypt=True)
    ask(server, creds, clock, 1, 0 | x1.XA, V4)
    answer, event = ask(server, creds, clock, 1, 1 | x1.XA, V4, LAN)
    assert isinstance(event, Answered) and event.extension == "x1+block"
    collector = collect(creds, answer)
    assert collector.entries()[0][peer(1)] == LAN


def test_announcements_expire_after_300_seconds() -> None:
    server, creds, clock = make()
    ask(server, creds, clock, 1, 0 | x1.XA, V4, LAN)
    later = Server.receive_datagram
    data = build_request(creds, peer(2), label_from_ns(int((NOW + 301) * 1e9)), 0 | x1.XA, os.urandom)
    answer, _ = later(server, data, V4B, NOW + 301)
    assert peer(1) not in collect(creds, answer).entries()[0]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 25), st.booleans())
def test_every_x1_answer_datagram_fits_1232_bytes(peers: int, encrypt: bool) -> None:
    server, creds, clock = make(encrypt)
    many = [Item(ItemType.HOST6, f"2001:db8::{i}", 1) for i in range(1, 13)]
    for n in range(1, peers + 1):
        ask(server, creds, clock, n, 0 | x1.XA, V4 if n % 2 else ("2001:db8:1::" + str(n), 1), many)
        ask(server, creds, clock, n, 0 | x1.XA, ("2001:db8:2::" + str(n), 1))
    answer, _ = ask(server, creds, clock, 1, 1 | x1.XA, V4, many)
    assert answer and all(len(d) <= 1232 for d in answer)
    assert len(collect(creds, answer).records()) == peers
