"""The pure parts of wgsigc/signalling.py: this host's request block, other peers' items.

No sockets here (fakes: ServerOutcome values built by hand); the exchanges themselves run for
real in tests/test_wgsigc_register.py, tests/test_loopback.py and the VM lab.
"""

from __future__ import annotations

from wgsig import x1
from wgsig.wire import Record
from wgsig.x1 import Item, ItemType
from wgsigc.candidates import Announced
from wgsigc.signalling import ServerOutcome, announced_from, merged_items, own_items

A, B = b"\xaa" * 32, b"\xbb" * 32
LABEL = bytes.fromhex("4000000065f0a1b200000001")


def test_own_items_announce_lan_addresses_with_wireguards_port_then_advertised_forwards() -> None:
    items = own_items(["10.1.0.2", "2001:db8::2"], 51820, [("198.51.100.1", 40000), ("2001:db8:1::1", 5)])
    assert items == [
        Item(ItemType.HOST4, "10.1.0.2", 51820),
        Item(ItemType.HOST6, "2001:db8::2", 51820),
        Item(ItemType.MAPPED4, "198.51.100.1", 40000),
        Item(ItemType.MAPPED6, "2001:db8:1::1", 5),
    ]


def test_own_items_stop_at_the_block_size_limit_keeping_the_first() -> None:
    addresses = [f"2001:db8::{i}" for i in range(1, 20)]
    items = own_items(addresses, 1, [])
    assert len(items) == x1.MAX_REQUEST_BODY // 20
    assert [i.host for i in items] == addresses[: len(items)]
    x1.encode_request_block(bytes(44) + x1.XR.to_bytes(2, "big") + bytes(36), items, bytes(32))  # fits


def test_items_of_several_servers_are_merged_without_repeats_and_silent_servers_ignored() -> None:
    record = Record(A, "203.0.113.1", 1, LABEL)
    one = ServerOutcome("s1", records=[record], items={A: [Item(ItemType.HOST4, "10.0.0.1", 1)]})
    two = ServerOutcome("s2", records=[record], items={A: [Item(ItemType.HOST4, "10.0.0.1", 1),
                                                             Item(ItemType.OBS6, "2001:db8::a", 1)]})
    silent = ServerOutcome("s3", records=None, items={B: [Item(ItemType.HOST4, "10.0.0.9", 1)]})
    merged = merged_items([one, two, silent])
    assert merged == {A: [Item(ItemType.HOST4, "10.0.0.1", 1), Item(ItemType.OBS6, "2001:db8::a", 1)]}


def test_announced_sorts_items_into_observed_lan_and_mapped() -> None:
    items = {A: [Item(ItemType.OBS6, "2001:db8::a", 7), Item(ItemType.HOST4, "10.0.0.1", 7),
                 Item(ItemType.MAPPED4, "198.51.100.2", 9), Item(ItemType.HOST6, "fd00::1", 7)]}
    assert announced_from(items) == {
        A: Announced(("2001:db8::a", 7), (("10.0.0.1", 7), ("fd00::1", 7)), (("198.51.100.2", 9),))
    }
