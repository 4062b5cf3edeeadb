"""The X1 codec (wgsig/x1.py): byte vectors, round trips, and what a legacy reader sees.

Pure code, no fakes needed. The vectors in tests/vectors/x1.json are also printed in doc/x1.md;
the tests rebuild each XMAC with hmac directly, so a vector that drifted from the document's
rules fails here.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgsig import wire, x1
from wgsig.x1 import Entry, Item, ItemType

VECTORS = json.loads((Path(__file__).parent / "vectors" / "x1.json").read_text())
SECRET = bytes.fromhex(VECTORS["secret"])
XKEY = x1.extension_key(SECRET)


def test_extension_key_is_hmac_of_the_label_under_the_group_secret() -> None:
    assert XKEY.hex() == VECTORS["extension_key"]
    assert XKEY == hmac.digest(SECRET, b"wgsig extension v1", "sha256")
    assert XKEY != SECRET


def test_request_vector_byte_for_byte() -> None:
    v = VECTORS["request"]
    base = wire.encode_request(bytes.fromhex(v["peer_id"]), bytes.fromhex(v["label"]), v["clflg"],
                               VECTORS["group"], SECRET)
    items = [Item(*i) for i in v["items"]]
    data = x1.encode_request_block(base, items, XKEY)
    assert data.hex() == v["bytes"]
    # Layout: base, 'Q', version 1, XLEN, body, XMAC over everything before it.
    body_len = int.from_bytes(data[84:86], "big")
    assert data[:82] == base and data[82] == 0x51 and data[83] == 1
    assert len(data) == 82 + 4 + body_len + 32
    assert data[-32:] == hmac.digest(XKEY, data[:-32], "sha256")
    assert x1.open_request_block(data, XKEY) == items


def answer_vector(v: dict[str, Any]) -> tuple[wire.Record, list[Entry], bytes]:
    """An answer vector built again from its parts: its record, its entries and the extended datagram
    (the base response of that one record, then the X1 answer block), checked against its bytes."""
    r = v["record"]
    record = wire.Record(bytes.fromhex(r["peer_id"]), r["ip"], r["port"], bytes.fromhex(r["label"]))
    datagram = wire.encode_response(wire.encode_record(record) + bytes(450), 0, VECTORS["group"], SECRET, v["svext"])
    entries = [Entry(slot, Item(*item)) for slot, item in v["entries"]]
    data = x1.encode_answer_block(datagram, entries, XKEY)
    assert data.hex() == v["bytes"]
    return record, entries, data


def test_answer_vector_byte_for_byte() -> None:
    v = VECTORS["answer"]
    record, entries, data = answer_vector(v)
    assert data[540] == 0x41 and data[-32:] == hmac.digest(XKEY, data[:-32], "sha256")
    assert x1.open_answer_block(data, XKEY) == entries
    # The base datagram still authenticates on its own, with SVEXT saying what follows.
    response = wire.decode_response(data[:540], [SECRET])
    assert response.svext == v["svext"] and response.records[0] == record


def test_a_legacy_reader_of_the_first_82_bytes_sees_a_valid_request() -> None:
    # The C server reads 82 bytes and checks CLFLG & 1, & 2 only.
    data = bytes.fromhex(VECTORS["request"]["bytes"])
    request = wire.decode_request(data[:82])
    assert wire.mac_ok(SECRET, data[:50], request.tag)
    assert request.clflg & wire.CLFLG_BASE == 1


def test_an_extended_request_is_never_an_authentic_answer_under_the_group_secret() -> None:
    # Why the extension key is separate: a 540-byte extended request would otherwise pass a C
    # client's check (HMAC of bytes 0..507 under the secret at 508..539).
    # (Blocks are capped at 358 bytes, so no request is ever 540 bytes; the key makes sure anyway.)
    base = wire.encode_request(bytes(31) + b"\x01", bytes.fromhex(VECTORS["request"]["label"]), x1.XR, 0, SECRET)
    data = x1._block(base, x1.REQUEST_BLOCK, bytes(540 - 118), XKEY)
    assert len(data) == 540
    with pytest.raises(wire.DecodeError):
        wire.decode_response(data, [SECRET])


def test_unknown_item_types_are_skipped_known_ones_with_a_bad_length_are_refused() -> None:
    good = x1.encode_item(Item(ItemType.HOST4, "10.1.0.2", 51820))
    unknown = bytes((0x7E, 3)) + b"abc"
    assert x1.decode_items(unknown + good) == [Item(ItemType.HOST4, "10.1.0.2", 51820)]
    with pytest.raises(wire.DecodeError, match="value bytes"):
        x1.decode_items(bytes((ItemType.HOST4, 5)) + bytes(5))
    with pytest.raises(wire.DecodeError, match="ends inside"):
        x1.decode_items(good[:-1])
    with pytest.raises(wire.DecodeError, match="slot 10"):
        x1.decode_entries(bytes((10,)) + good)


@pytest.mark.parametrize("mutate", ["xmac", "body", "xlen", "xtype", "truncate", "base"])
def test_a_damaged_request_block_does_not_open(mutate: str) -> None:
    data = bytearray.fromhex(VECTORS["request"]["bytes"])
    if mutate == "xmac":
        data[-1] ^= 1
    elif mutate == "body":
        data[90] ^= 1
    elif mutate == "xlen":
        data[85] += 1
    elif mutate == "xtype":
        data[82] = 0x41
    elif mutate == "truncate":
        del data[-1]
    else:
        data[0] ^= 1  # the XMAC covers the base request too
    with pytest.raises(wire.DecodeError):
        x1.open_request_block(bytes(data), XKEY)


def test_encoders_refuse_what_the_rules_forbid() -> None:
    base = wire.encode_request(bytes(32), bytes(12), 0, 0, SECRET)
    with pytest.raises(ValueError, match="XR"):
        x1.encode_request_block(base, [], XKEY)
    base = wire.encode_request(bytes(32), bytes(12), x1.XR, 0, SECRET)
    with pytest.raises(ValueError, match="at most 240"):
        x1.encode_request_block(base, [Item(ItemType.HOST6, "::1", 1)] * 13, XKEY)
    with pytest.raises(ValueError, match="does not take"):
        x1.encode_item(Item(ItemType.HOST4, "::1", 1))
    with pytest.raises(ValueError, match="does not take"):
        x1.encode_item(Item(ItemType.OBS6, "10.0.0.1", 1))
    datagram = wire.encode_response(bytes(500), 0, 0, SECRET)
    with pytest.raises(ValueError, match="XB"):
        x1.encode_answer_block(datagram, [], XKEY)


_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535)
_item = st.one_of(
    st.builds(Item, st.sampled_from([ItemType.HOST4, ItemType.MAPPED4]), _ipv4, _port),
    st.builds(Item, st.sampled_from([ItemType.HOST6, ItemType.MAPPED6, ItemType.OBS6]), _ipv6, _port),
    st.builds(Item, st.just(ItemType.OBS), st.one_of(_ipv4, _ipv6), _port),
)


@given(st.lists(_item, max_size=12), st.integers(0, 0xFFFF), st.binary(min_size=32, max_size=32))
def test_request_blocks_round_trip(items: list[Item], low: int, peer: bytes) -> None:
    base = wire.encode_request(peer, bytes.fromhex(VECTORS["request"]["label"]), x1.XR | (low & 3), 5, SECRET)
    body = sum(len(x1.encode_item(i)) for i in items)
    if body > x1.MAX_REQUEST_BODY:
        with pytest.raises(ValueError):
            x1.encode_request_block(base, items, XKEY)
        return
    data = x1.encode_request_block(base, items, XKEY)
    assert data[:82] == base
    assert x1.request_extended_size(data) == len(data) == 118 + body
    decoded = x1.open_request_block(data, XKEY)
    assert [(i.type, i.port) for i in decoded] == [(i.type, i.port) for i in items]
    # IPv6 text may be written differently; the addresses are equal.
    import ipaddress

    assert [ipaddress.ip_address(i.host) for i in decoded] == [ipaddress.ip_address(i.host) for i in items]


@given(st.lists(st.tuples(st.sampled_from([*range(10), x1.REQUESTER_SLOT]), _item), max_size=30))
def test_answer_blocks_round_trip_within_the_size_limit(entries: list[tuple[int, Item]]) -> None:
    datagram = wire.encode_response(bytes(500), 0, 9, SECRET, x1.SV_XB)
    wanted = [Entry(slot, item) for slot, item in entries]
    body = sum(1 + len(x1.encode_item(e.item)) for e in wanted)
    if body > x1.MAX_ANSWER_BODY:
        with pytest.raises(ValueError):
            x1.encode_answer_block(datagram, wanted, XKEY)
        return
    data = x1.encode_answer_block(datagram, wanted, XKEY)
    assert len(data) == 576 + body <= 1216
    assert [(e.slot, e.item.type, e.item.port) for e in x1.open_answer_block(data, XKEY)] == [
        (e.slot, e.item.type, e.item.port) for e in wanted
    ]


# --- relays (doc/x1.md, "Relays") ----------------------------------------------------------------


def test_relay_request_vector_byte_for_byte() -> None:
    v = VECTORS["relay_request"]
    base = wire.encode_request(bytes.fromhex(v["peer_id"]), bytes.fromhex(v["label"]), v["clflg"],
                               VECTORS["group"], SECRET)
    items = [Item(*i) for i in v["items"]]
    relay_to = [bytes.fromhex(p) for p in v["relay_to"]]
    data = x1.encode_request_block(base, items, XKEY, relay_to)
    assert data.hex() == v["bytes"]
    assert data[-32:] == hmac.digest(XKEY, data[:-32], "sha256")
    # The RELAY_REQ item: TYPE 0x10, LEN 32, the peer ID unmasked, after the address items.
    body = data[86:-32]
    assert body[-34:] == bytes((0x10, 32)) + relay_to[0]
    # An X1 reader that does not know RELAY_REQ skips it; this one reads it apart from the items.
    assert x1.open_request_block(data, XKEY) == items
    assert x1.relay_requests(x1.request_body(data)) == relay_to


def test_relay_answer_vector_byte_for_byte() -> None:
    v = VECTORS["relay_answer"]
    _, entries, data = answer_vector(v)
    assert v["svext"] & x1.SV_RELAY == 0x0008
    # RELAY: slot, TYPE 0x08, LEN 6, PORT, the address XORed with the record mask, as OBS.
    assert data[544:553] == bytes.fromhex("00 08 06 9c41") + bytes(a ^ m for a, m in zip(
        bytes((198, 51, 100, 1)), bytes.fromhex("322dccac"), strict=True))
    assert x1.open_answer_block(data, XKEY) == entries


def test_relay_items_round_trip_and_lengths() -> None:
    six = Item(ItemType.RELAY, "2001:db8::1", 40000)
    assert x1.decode_entries(bytes((3,)) + x1.encode_item(six)) == [Entry(3, six)]
    with pytest.raises(wire.DecodeError):
        x1.decode_items(bytes((0x10, 31)) + bytes(31))  # a RELAY_REQ is exactly 32 bytes
    with pytest.raises(wire.DecodeError):
        x1.decode_items(bytes((0x08, 7)) + bytes(7))
    with pytest.raises(ValueError):
        x1.encode_relay_request(bytes(31))
    # Repeats count once, and a server reads at most four.
    peers = [bytes((i,)) * 32 for i in range(1, 7)]
    body = b"".join(x1.encode_relay_request(p) for p in [peers[0], *peers])
    assert x1.relay_requests(body) == peers[:4]
