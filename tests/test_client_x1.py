"""The client core with X1 (wgsig/client.py): extended requests, answers with blocks.

Pure code: answers are built here with the codec (no server, no sockets); the end-to-end
exchange with a real wgsigd is in tests/test_loopback.py and the VM lab.
"""

from __future__ import annotations

import os

from wgsig import wire, x1
from wgsig.client import AnswerCollector, GroupCredentials, Ignored, build_request
from wgsig.envelope import envelope_key, seal, unseal
from wgsig.x1 import Entry, Item, ItemType

SECRET = bytes(range(32))
LABEL = bytes.fromhex("4000000065f0a1b200000001")
PEER_A, PEER_B = b"\xaa" * 32, b"\xbb" * 32
XKEY = x1.extension_key(SECRET)


def _answer(entries: list[Entry], svext: int = x1.SV_XB | x1.SV_XR_OK | x1.SV_V6, group: int = 3) -> bytes:
    records = wire.encode_record(wire.Record(PEER_A, "203.0.113.1", 1000, LABEL))
    records += wire.encode_record(wire.Record(PEER_B, "0.0.0.0", 0, LABEL)) + bytes(400)
    datagram = wire.encode_response(records, 0, group, SECRET, svext)
    return x1.encode_answer_block(datagram, entries, XKEY) if svext & x1.SV_XB else datagram


ENTRIES = [
    Entry(0, Item(ItemType.HOST4, "192.168.1.5", 51820)),
    Entry(1, Item(ItemType.OBS6, "2001:db8::b", 51820)),
    Entry(x1.REQUESTER_SLOT, Item(ItemType.OBS, "198.51.100.4", 4444)),
]


def test_an_x1_answer_gives_records_items_per_peer_and_the_servers_capabilities() -> None:
    collector = AnswerCollector(GroupCredentials(3, SECRET))
    outcome = collector.receive_datagram(_answer(ENTRIES))
    assert not isinstance(outcome, Ignored) and outcome.complete
    assert [r.peer_id for r in collector.records()] == [PEER_A, PEER_B]
    per_peer, requester = collector.entries()
    assert per_peer == {PEER_A: [ENTRIES[0].item], PEER_B: [ENTRIES[1].item]}
    assert requester == [ENTRIES[2].item]
    assert collector.svext == x1.SV_XR_OK | x1.SV_V6


def test_a_plain_answer_from_a_c_server_has_no_capabilities() -> None:
    collector = AnswerCollector(GroupCredentials(3, SECRET))
    assert not isinstance(collector.receive_datagram(_answer([], svext=0)), Ignored)
    assert collector.svext == 0 and collector.entries() == ({}, [])


def test_a_forged_or_stripped_block_is_ignored() -> None:
    good = _answer(ENTRIES)
    forged = bytearray(good)
    forged[-1] ^= 1
    collector = AnswerCollector(GroupCredentials(3, SECRET))
    assert isinstance(collector.receive_datagram(bytes(forged)), Ignored)
    # XB says a block follows, but only the 540 bytes arrive: not accepted as a plain datagram.
    assert isinstance(collector.receive_datagram(good[:540]), Ignored)
    assert isinstance(collector.receive_datagram(good + b"\0"), Ignored)
    assert collector.received == 0


def test_an_encrypted_x1_answer_with_pad_is_accepted() -> None:
    data = seal(_answer(ENTRIES), 0, envelope_key(SECRET), os.urandom(12), os.urandom(7))
    collector = AnswerCollector(GroupCredentials(3, SECRET, encrypt=True))
    outcome = collector.receive_datagram(data)
    assert not isinstance(outcome, Ignored) and outcome.complete
    assert collector.entries()[0][PEER_A] == [ENTRIES[0].item]


def test_build_request_with_items_sets_xr_and_appends_an_authentic_block() -> None:
    items = [Item(ItemType.HOST4, "10.1.0.2", 51820)]
    creds = GroupCredentials(3, SECRET)
    data = build_request(creds, PEER_A, LABEL, 1 | x1.XA, os.urandom, items)
    assert int.from_bytes(data[44:46], "big") == 1 | x1.XA | x1.XR
    assert x1.open_request_block(data, XKEY) == items
    plain = build_request(creds, PEER_A, LABEL, 1 | x1.XA, os.urandom)
    assert len(plain) == 82 and plain == data[:44] + (1 | x1.XA).to_bytes(2, "big") + plain[46:]
    encrypted = build_request(GroupCredentials(3, SECRET, True), PEER_A, LABEL, 1 | x1.XA, os.urandom, items)
    clear = unseal(encrypted, envelope_key(SECRET), len(data))
    assert x1.open_request_block(clear, XKEY) == items
