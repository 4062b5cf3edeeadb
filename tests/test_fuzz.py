"""Property tests of the datagram path: valid requests, mutated.

Pure tests of the sans-IO core.  A plain request is covered byte for byte by
its HMAC, and an encrypted one in its first 98 bytes (the pad is free), so a
mutated datagram that differs there is unauthenticated: it must get no answer
and change no table, and no exception may escape.  The short run here is for
CI; bench/fuzz_runner.py does the long one.
"""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as count_branch
from hypothesis import strategies as st

from wgsig.client import Accepted, AnswerCollector, GroupCredentials, build_request
from wgsig.envelope import HEADER_SIZE, envelope_key, unseal
from wgsig.events import Answered, Rejected
from wgsig.label import encode_label
from wgsig.ratelimit import AnswerLimiter, Limits, ReplayCache
from wgsig.server import GroupConfig, Server
from wgsig.wire import REQUEST_SIZE, encode_endpoint

SECRET = bytes(range(32))
OLD_SECRET = bytes(range(64, 96))
NOW = 1_700_000_000
PLAIN, ENCRYPTED = 0x01020304, 7


def make_server() -> Server:
    groups = [
        GroupConfig(PLAIN, (SECRET, OLD_SECRET), max_records=30),
        GroupConfig(ENCRYPTED, (SECRET,), encrypt=True, max_records=30),
    ]
    server = Server(groups, random_bytes=os.urandom, limits=Limits(AnswerLimiter(1e6, 1e6), 1200, ReplayCache(30)))
    for i in range(1, 25):  # some records, so answers span datagrams
        server.receive_datagram(valid(PLAIN, bytes([i]) * 32, 0, 0, seed=i), (f"10.0.0.{i}", 1000 + i), NOW)
    return server


def valid(group: int, peer: bytes, clflg: int, offset: int, secret: bytes = SECRET, seed: int = 0) -> bytes:
    creds = GroupCredentials(group, secret, encrypt=group == ENCRYPTED)
    return build_request(creds, peer, encode_label(NOW + offset, 5), clflg, random.Random(seed).randbytes)


def snapshot(server: Server) -> dict[int, list[bytes]]:
    return {gid: list(table.slots) for gid, table in server.groups.items()}


def authentic_part(datagram: bytes, group: int) -> bytes:
    return datagram[: HEADER_SIZE + REQUEST_SIZE] if group == ENCRYPTED else datagram


def clear_answer(answer: list[bytes], group: int) -> list[bytes]:
    """The answer's datagrams without their envelopes (whose nonces are random)."""
    if group != ENCRYPTED:
        return answer
    return [unseal(d, envelope_key(SECRET), len(d) - HEADER_SIZE) for d in answer]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    """(original, mutated, group): bit flips, byte writes, truncation, extension, splices."""
    group = draw(st.sampled_from([PLAIN, ENCRYPTED]))
    peer = draw(st.sampled_from([bytes([3]) * 32, bytes([99]) * 32, bytes(32)]))
    secret = draw(st.sampled_from([SECRET, OLD_SECRET])) if group == PLAIN else SECRET
    offset = draw(st.sampled_from([0, 29, -31, 3600]))
    original = valid(group, peer, draw(st.integers(0, 3)), offset, secret, draw(st.integers(0, 2**32)))
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete"]))
        if op in ("flip", "set") and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] = data[at] ^ (1 << draw(st.integers(0, 7))) if op == "flip" else draw(st.integers(0, 255))
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "extend":
            data += draw(st.binary(max_size=600))
        elif op == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            at = draw(st.integers(0, len(data) - 1))
            del data[at : at + draw(st.integers(1, 8))]
    return original, bytes(data), group


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_requests_get_nothing(case: tuple[bytes, bytes, int]) -> None:
    original, data, group = case
    server = make_server()
    before = snapshot(server)
    answer, event = server.receive_datagram(data, ("192.0.2.1", 5555), float(NOW))
    if authentic_part(data, group) != authentic_part(original, group):
        assert answer == [] and isinstance(event, Rejected)
        assert snapshot(server) == before
    else:  # only the pad changed: as authentic as the original, so treated the same
        count_branch("only the pad changed")  # how often this branch runs: pytest --hypothesis-show-statistics
        reference = make_server()
        expected_answer, expected = reference.receive_datagram(original, ("192.0.2.1", 5555), float(NOW))
        assert event == expected  # the same decision: the same reason, or the same peer, change and count
        assert snapshot(server) == snapshot(reference)  # the same table
        assert clear_answer(answer, group) == clear_answer(expected_answer, group)  # the same datagrams


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700), st.sampled_from([("192.0.2.1", 1), ("::ffff:10.0.0.1", 2), ("2001:db8::1", 3)]))
@example(b"", ("192.0.2.1", 1))
@example(bytes(82), ("192.0.2.1", 1))
@example(bytes(98), ("192.0.2.1", 1))
def test_random_datagrams_get_nothing(data: bytes, source: tuple[str, int]) -> None:
    server = make_server()
    before = snapshot(server)
    answer, event = server.receive_datagram(data, source, float(NOW))
    assert answer == [] and isinstance(event, Rejected) and snapshot(server) == before


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3), st.sampled_from([SECRET, OLD_SECRET]), st.integers(-30, 30))
def test_valid_requests_answered_under_the_secret_they_used(clflg: int, secret: bytes, offset: int) -> None:
    """The seeds of the mutations are themselves accepted (so the mutations start from valid input)."""
    server = make_server()
    # Peer 77 registered from this address earlier: its label-less requests are tied to it, answered whole.
    server.groups[PLAIN].upsert(bytes([77]) * 32, encode_endpoint(bytes([192, 0, 2, 1]), 5555),
                                encode_label(NOW - 60, 0))
    answer, event = server.receive_datagram(valid(PLAIN, bytes([77]) * 32, clflg, offset, secret),
                                            ("192.0.2.1", 5555), float(NOW))
    assert isinstance(event, Answered) and answer
    collector = AnswerCollector(GroupCredentials(PLAIN, secret))
    assert all(isinstance(collector.receive_datagram(d), Accepted) for d in answer) and collector.complete
    # The client reads the group's table as it is after this request (with the requester if it was stored).
    assert sorted(collector.records(), key=lambda r: r.peer_id) == sorted(
        server.groups[PLAIN].records(), key=lambda r: r.peer_id
    )
