"""The engine drops a stale label before its HMAC: pure tests of the sans-IO core (no fakes).

A plain request whose label is not newer than the one stored for its peer ID is rejected as a
replay whether or not its HMAC verifies, so an exact replay costs no HMAC (bench/flood.py: about
half its CPU time); since the datagram is not authenticated, the event names no peer.
"""

from __future__ import annotations

import os

from wgsig.client import GroupCredentials, build_request
from wgsig.events import Answered, Change, Reason, Rejected
from wgsig.label import encode_label
from wgsig.server import GroupConfig, Server
from wgsig.wire import REQUEST_TAG

SECRET = bytes(range(32))
NOW = 1_700_000_000
SOURCE = ("198.51.100.7", 40000)
PEER = bytes([0x42]) * 32


def request(ns: int, clflg: int = 0) -> bytes:
    return build_request(GroupCredentials(5, SECRET), PEER, encode_label(NOW, ns), clflg, os.urandom)


def test_stale_label_with_a_forged_hmac_is_a_replay_naming_no_peer() -> None:
    server = Server([GroupConfig(5, (SECRET,))])
    assert isinstance(server.receive_datagram(request(2000), SOURCE, NOW)[1], Answered)
    exact = request(1000)
    forged = bytearray(exact)
    forged[REQUEST_TAG.start] ^= 1
    for datagram in (exact, bytes(forged)):
        answer, event = server.receive_datagram(datagram, SOURCE, NOW)
        assert answer == [] and isinstance(event, Rejected)
        assert event.reason is Reason.REPLAY and event.peer_id is None
    assert server.group_counters()[0].rejections == {Reason.REPLAY: 2}

    # A newer label is checked as before: a forged HMAC is a bad MAC, a real one is answered.
    forged = bytearray(request(3000))
    forged[REQUEST_TAG.start] ^= 1
    answer, event = server.receive_datagram(bytes(forged), SOURCE, NOW)
    assert answer == [] and isinstance(event, Rejected) and event.reason is Reason.BAD_MAC
    assert isinstance(server.receive_datagram(request(4000), SOURCE, NOW)[1], Answered)


def test_a_record_that_expires_at_this_request_counts_as_gone() -> None:
    # The pre-check's stored label is passed on to the request's handling; when max_age expires
    # the peer's record at this very request, that label is stale: a label-only request (CLFLG 1)
    # from a peer no longer in the table stores nothing (wgsig.wire.CLFLG_UPDATE).
    server = Server([GroupConfig(5, (SECRET,), max_age=60)])
    assert isinstance(server.receive_datagram(request(1), SOURCE, NOW)[1], Answered)
    later = build_request(GroupCredentials(5, SECRET), PEER, encode_label(NOW + 100, 1), 1, os.urandom)
    answer, event = server.receive_datagram(later, SOURCE, NOW + 100)
    assert isinstance(event, Answered) and event.change is Change.UNCHANGED, event
    assert len(server.groups[5]) == 0
