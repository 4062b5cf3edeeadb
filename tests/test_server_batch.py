"""``Server.receive_datagrams``: a batch is applied first and its base-protocol answers built after.

Pure core, no sockets: the same requests through ``receive_datagram`` one at a time and through
one batch must leave the same tables, give the same events, and answer the same requests; the
batch's answers show the tables as the batch left them.
"""

from __future__ import annotations

import os

from wgsig.envelope import HEADER_SIZE, Envelope, envelope_key
from wgsig.events import Answered, Reason, Rejected
from wgsig.label import encode_label
from wgsig.ratelimit import AnswerLimiter, Limits
from wgsig.server import GroupConfig, Server
from wgsig.wire import RESPONSE_SIZE, decode_response, encode_request

SECRET = bytes(range(32))
OTHER = bytes(range(1, 33))
NOW = 1_800_000_000


def _peer(i: int) -> bytes:
    return bytes([1]) + i.to_bytes(31, "big")


def _requests(count: int, group: int = 7) -> list[tuple[bytes, tuple[str, int]]]:
    return [
        (encode_request(_peer(i), encode_label(NOW, i + 1), 0, group, SECRET), (f"192.0.2.{i % 200 + 1}", 4000 + i))
        for i in range(count)
    ]


def _server(encrypt: bool = False, limits: Limits | None = None) -> Server:
    groups = [GroupConfig(7, (SECRET,), encrypt=encrypt, max_records=10), GroupConfig(8, (OTHER,), max_records=10)]
    if limits is None:
        return Server(groups, random_bytes=os.urandom)
    return Server(groups, random_bytes=os.urandom, limits=limits)


def test_a_batch_leaves_the_tables_and_events_of_one_request_at_a_time() -> None:
    requests = _requests(25)  # more than a group holds: the batch evicts
    requests.insert(3, (b"\0" * 82, ("192.0.2.9", 1)))  # unknown group: no answer
    requests.insert(9, requests[5])  # an exact replay: no answer
    one, batch = _server(), _server()
    # Copied as they come: an answer list is the table's cache, which later requests update.
    singles = [(list(a), e) for a, e in (one.receive_datagram(data, source, NOW) for data, source in requests)]
    answers, events = batch.receive_datagrams(requests, NOW)
    assert events == [event for _, event in singles]
    assert one.groups[7].slots == batch.groups[7].slots
    assert [bool(a) for a in answers] == [bool(a) for a, _ in singles]
    assert isinstance(events[3], Rejected) and events[3].reason is Reason.UNKNOWN_GROUP
    assert isinstance(events[9], Rejected) and events[9].reason is Reason.REPLAY
    # Every answer is the group as the batch left it: authentic, and the last ten peers in it.
    last = {_peer(i) for i in range(15, 25)}
    for answer, event in zip(answers, events, strict=True):
        if isinstance(event, Answered):
            assert event.datagrams == len(answer) == 1
            response = decode_response(answer[0], [SECRET])
            assert {r.peer_id for r in response.records if r is not None} == last
    # One at a time, the first request's answer held only the first peer.
    first = decode_response(singles[0][0][0], [SECRET])
    assert [r.peer_id for r in first.records if r is not None] == [_peer(0)]


def test_requests_to_two_groups_get_their_own_groups_answers() -> None:
    requests = [item for pair in zip(_requests(4, 7), _requests(4, 8), strict=True) for item in pair]
    requests = [
        (encode_request(_peer(i), encode_label(NOW, i + 1), 0, 8, OTHER), source) if i % 2 else (data, source)
        for i, (data, source) in enumerate(requests)
    ]
    answers, events = _server().receive_datagrams(requests, NOW)
    for i, answer in enumerate(answers):
        assert isinstance(events[i], Answered)
        response = decode_response(answer[0], [OTHER if i % 2 else SECRET])
        assert response.group == (8 if i % 2 else 7)


def test_encrypted_answers_of_a_batch_each_have_their_own_nonce() -> None:
    envelope = Envelope(envelope_key(SECRET))
    requests = [(envelope.seal(data, 7, os.urandom(12)), source) for data, source in _requests(5)]
    answers, events = _server(encrypt=True).receive_datagrams(requests, NOW)
    assert all(isinstance(e, Answered) for e in events)
    sealed = [a[0] for a in answers]
    assert len({d[:HEADER_SIZE] for d in sealed}) == 5  # nonce (and SGROUP) differ
    clear = {envelope.unseal(d, RESPONSE_SIZE) for d in sealed}
    assert len(clear) == 1  # one table state under five nonces
    decode_response(clear.pop(), [SECRET])


def test_a_batch_charges_each_answer_to_its_source_budget() -> None:
    # A budget of two answers' bytes: the third request from one source is applied but not answered.
    limiter = AnswerLimiter(rate=1.0, burst=2 * RESPONSE_SIZE)
    requests = [(data, ("192.0.2.1", 4000)) for data, _ in _requests(3)]
    answers, events = _server(limits=Limits(answer_limiter=limiter)).receive_datagrams(requests, NOW)
    assert [len(a) for a in answers] == [1, 1, 0]
    assert isinstance(events[2], Answered) and events[2].limited
