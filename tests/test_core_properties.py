"""Property tests of the pure core (hypothesis), and client/server paired in memory."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from wgsig.client import AnswerCollector, GroupCredentials, build_request, newest_records
from wgsig.envelope import envelope_key, seal, unseal
from wgsig.label import decode_label, encode_label
from wgsig.server import GroupConfig, Server
from wgsig.wire import (
    Record,
    decode_request,
    decode_response,
    encode_request,
    encode_responses,
)

SECRET = bytes(range(32))
NOW = 1_700_000_000
keys = st.binary(min_size=32, max_size=32).filter(lambda k: any(k))
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
labels = st.builds(encode_label, st.integers(0, 2**40), st.integers(0, 2**32 - 1))
records = st.builds(Record, keys, ipv4, st.integers(0, 65535), labels)


@given(st.integers(0, 2**62 - 1), st.integers(0, 2**32 - 1))
def test_label_round_trip(seconds: int, nanoseconds: int) -> None:
    assert decode_label(encode_label(seconds, nanoseconds)) == (seconds, nanoseconds)


@given(labels, labels)
def test_label_bytes_order_is_time_order(a: bytes, b: bytes) -> None:
    assert (a < b) == (decode_label(a) < decode_label(b))


@given(keys, labels, st.integers(0, 3), st.integers(0, 2**32 - 1))
def test_request_round_trip(peer_id: bytes, label: bytes, clflg: int, group: int) -> None:
    request = decode_request(encode_request(peer_id, label, clflg, group, SECRET))
    assert (request.peer_id, request.label, request.clflg, request.group) == (peer_id, label, clflg, group)


@given(st.lists(st.one_of(st.none(), records), max_size=35), st.integers(0, 2**32 - 1))
def test_response_round_trip(table: list[Record | None], group: int) -> None:
    datagrams = encode_responses(table, group, SECRET)
    decoded = [decode_response(d, [SECRET]) for d in datagrams]
    assert all(r.n_other == len(datagrams) - 1 and r.group == group for r in decoded)
    flat = [rec for r in decoded for rec in r.records]
    assert flat[: len(table)] == table
    assert not any(flat[len(table) :])


@given(st.binary(max_size=600), st.binary(min_size=12, max_size=12), st.integers(0, 2**32 - 1))
def test_envelope_round_trip(payload: bytes, nonce: bytes, group: int) -> None:
    key = envelope_key(SECRET)
    sealed = seal(payload, group, key, nonce, b"pad")
    assert unseal(sealed, key, len(payload)) == payload


def fresh_server(encrypt: bool) -> Server:
    return Server([GroupConfig(0, (SECRET,), encrypt=encrypt, max_records=5)], random_bytes=os.urandom)


def seeded(server: Server, peers: int) -> Server:
    creds = GroupCredentials(0, SECRET, server.group_config(0).encrypt)
    for i in range(1, peers + 1):
        request = build_request(creds, bytes([i]) * 32, encode_label(NOW, i), 0, os.urandom)
        assert server.receive_datagram(request, (f"10.0.0.{i}", 1000 + i), NOW)[0]
    return server


def tables_of(server: Server) -> dict[int, list[bytes]]:
    return {g: list(t.slots) for g, t in server.groups.items()}


@settings(max_examples=300)
@given(st.booleans(), st.integers(0, 5), st.binary(max_size=700))
def test_garbage_never_answered_nor_stored(encrypt: bool, peers: int, data: bytes) -> None:
    server = seeded(fresh_server(encrypt), peers)
    before = tables_of(server)
    answer, _ = server.receive_datagram(data, ("192.0.2.1", 4444), NOW)
    assert answer == []
    assert tables_of(server) == before


@settings(max_examples=300)
@given(st.booleans(), st.integers(1, 5), st.integers(0, 3), st.data())
def test_mutated_valid_requests_never_answered_nor_stored(encrypt: bool, peers: int, clflg: int, data: st.DataObject) -> None:
    """Flip bytes of an authentic request: without a valid HMAC, no answer and no change."""
    server = seeded(fresh_server(encrypt), peers)
    creds = GroupCredentials(0, SECRET, encrypt)
    # Zero nonce and no pad: hypothesis needs the same bytes for the same draws.
    request = bytearray(build_request(creds, b"\x99" * 32, encode_label(NOW, 10**6), clflg, bytes))
    positions = data.draw(st.lists(st.integers(0, len(request) - 1), min_size=1, max_size=4, unique=True))
    for position in positions:
        request[position] ^= data.draw(st.integers(1, 255))
    before = tables_of(server)
    answer, _ = server.receive_datagram(bytes(request), ("192.0.2.1", 4444), NOW)
    assert answer == []
    assert tables_of(server) == before


@settings(max_examples=50)
@given(st.booleans(), st.lists(keys, min_size=1, max_size=40, unique=True))
def test_client_and_server_paired_in_memory(encrypt: bool, peer_ids: list[bytes]) -> None:
    """Every peer registers; the last one's collected answer holds every peer at its source."""
    server = Server([GroupConfig(3, (SECRET,), encrypt=encrypt)], random_bytes=os.urandom)
    creds = GroupCredentials(3, SECRET, encrypt)
    sources = {}
    collector = AnswerCollector(creds)
    for i, peer_id in enumerate(peer_ids):
        sources[peer_id] = (f"198.51.100.{i % 250}", 20000 + i)
        request = build_request(creds, peer_id, encode_label(NOW, i), 0, os.urandom)
        answer, _ = server.receive_datagram(request, sources[peer_id], NOW)
        collector = AnswerCollector(creds)
        for datagram in reversed(answer):  # any arrival order
            collector.receive_datagram(datagram)
        assert collector.complete
    got = newest_records([collector.records()], NOW)
    assert {k: (r.ip, r.port) for k, r in got.items()} == sources
