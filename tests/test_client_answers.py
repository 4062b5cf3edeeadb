"""The client's answer collection and merge (wgsig/client.py): pure code, no fakes, no sockets.

Answer datagrams carry no index and no binding to the request they answer, so the collector
must tell versions of one datagram apart by their records: two versions of a datagram (a retry
while the table changed, a replayed old datagram) never make a complete answer.  The merge of
several servers' answers takes the time as an argument: a record labelled beyond the time
window never outranks a sane one.  The real program against real sockets is in
tests/test_reliability_client.py.
"""

from __future__ import annotations

import os

from wgsig.client import AnswerCollector, GroupCredentials, Ignored, build_request, newest_records
from wgsig.label import encode_label
from wgsig.server import GroupConfig, Server
from wgsig.wire import Record, encode_responses

SECRET = bytes(range(32))
CREDS = GroupCredentials(0, SECRET)
NOW = 1_700_000_000
KEYS = [bytes([i + 1]) * 32 for i in range(20)]


def table(changed: int | None = None, port: int = 1000) -> list[Record | None]:
    """20 records (two datagrams); ``changed``: that peer re-registered later from another port."""
    return [
        Record(key, "192.0.2.10", port + i + (1 if i == changed else 0),
               encode_label(NOW - 60 + (50 if i == changed else 0), i))
        for i, key in enumerate(KEYS)
    ]


def collect(datagrams: list[bytes]) -> AnswerCollector:
    collector = AnswerCollector(CREDS)
    for datagram in datagrams:
        if collector.complete:
            break
        collector.receive_datagram(datagram)
    return collector


def test_two_versions_of_one_datagram_are_not_a_complete_answer() -> None:
    old, new = encode_responses(table(), 0, SECRET), encode_responses(table(changed=3), 0, SECRET)
    assert old[0] != new[0] and old[1] == new[1]  # peer 3 lives in datagram 0
    collector = collect([old[0], new[0]])
    assert not collector.complete and collector.received == 1


def test_a_retry_while_the_table_changed_gives_the_newer_version_once() -> None:
    old, new = encode_responses(table(), 0, SECRET), encode_responses(table(changed=3), 0, SECRET)
    collector = collect([old[0], new[0], new[1]])  # attempt 1 lost datagram 1; attempt 2 came whole
    assert collector.complete
    records = collector.records()
    assert sorted(r.peer_id for r in records) == sorted(KEYS)  # each peer once, none missing
    assert {r.peer_id: r.port for r in records}[KEYS[3]] == 1004


def test_a_replayed_old_datagram_does_not_replace_the_fresh_one() -> None:
    old, new = encode_responses(table(), 0, SECRET), encode_responses(table(changed=3), 0, SECRET)
    collector = AnswerCollector(CREDS)
    assert not collector.receive_datagram(new[0]).complete  # type: ignore[union-attr]
    outcome = collector.receive_datagram(old[0])  # an attacker replays what it captured earlier
    assert isinstance(outcome, Ignored) and "older version" in outcome.reason
    assert collector.receive_datagram(new[1]).complete  # type: ignore[union-attr]
    assert {r.peer_id: r.port for r in collector.records()}[KEYS[3]] == 1004
    assert len(collector.records()) == 20


def test_a_peer_that_moved_to_another_datagram_is_not_counted_twice() -> None:
    """Version B: peer 3 was evicted and came back in slot 19 (datagram 1); A's datagram 0 and B's
    datagram 1 both hold it: not one answer."""
    a = table()
    b = list(a)
    b[3], b[19] = None, Record(KEYS[3], "192.0.2.10", 7777, encode_label(NOW, 0))
    old, new = encode_responses(a, 0, SECRET), encode_responses(b, 0, SECRET)
    collector = collect([old[0], new[1]])
    assert not collector.complete
    collector.receive_datagram(new[0])
    assert collector.complete
    assert sorted(r.peer_id for r in collector.records()) == sorted(KEYS[:3] + KEYS[4:19] + [KEYS[3]])


def test_an_answer_of_another_size_does_not_discard_the_one_being_collected() -> None:
    """A replayed old one-datagram answer neither completes over nor wipes a fresh two-datagram one
    of newer records; the fresh one still completes."""
    fresh = encode_responses(table(changed=3), 0, SECRET)
    stale = encode_responses([Record(KEYS[0], "192.0.2.99", 9, encode_label(NOW - 3600, 0))], 0, SECRET)
    collector = AnswerCollector(CREDS)
    collector.receive_datagram(fresh[0])
    outcome = collector.receive_datagram(stale[0])
    assert isinstance(outcome, Ignored)
    assert collector.receive_datagram(fresh[1]).complete  # type: ignore[union-attr]
    assert len(collector.records()) == 20


def test_a_single_datagram_answer_is_complete_at_once_as_the_c_client_takes_it() -> None:
    collector = AnswerCollector(CREDS)
    (datagram,) = encode_responses(table()[:3], 0, SECRET)
    assert collector.receive_datagram(datagram).complete  # type: ignore[union-attr]


def test_the_servers_answers_to_retries_while_peers_register_always_collect_consistently() -> None:
    """The real server engine: a peer registers between two fetches; any interleaving of the two
    answers' datagrams gives one version of each datagram, every peer once."""
    server = Server([GroupConfig(0, (SECRET,), max_records=64)], random_bytes=os.urandom)

    def register(i: int, port: int, at: int) -> list[bytes]:
        request = build_request(CREDS, KEYS[i], encode_label(NOW, at), 0, os.urandom)
        # copied: the engine hands out its cached answer list, which the next registration updates
        return [bytes(d) for d in server.receive_datagram(request, ("198.51.100.1", port), NOW)[0]]

    for i in range(20):
        register(i, 2000 + i, i)
    first = register(5, 3005, 100)  # peer 5 moved
    second = register(15, 3015, 101)  # then peer 15
    for order in ([first[0], second[0], second[1]], [first[1], second[1], second[0]],
                  [first[0], first[1]], [second[1], first[1], first[0], second[0]]):
        collector = collect(order)
        assert collector.complete
        records = collector.records()
        assert sorted(r.peer_id for r in records) == sorted(KEYS)


def test_a_record_labelled_beyond_the_window_does_not_win_the_merge() -> None:
    sane = Record(KEYS[0], "192.0.2.1", 1, encode_label(NOW - 10, 0))
    future = Record(KEYS[0], "192.0.2.66", 66, encode_label(NOW + 3600, 0))  # a server or peer clock far ahead
    assert newest_records([[future], [sane]], NOW)[KEYS[0]] == sane
    assert newest_records([[sane], [future]], NOW)[KEYS[0]] == sane
    # within the window it is simply the newest; alone, a future record is still a record
    near = Record(KEYS[0], "192.0.2.5", 5, encode_label(NOW + 20, 0))
    assert newest_records([[sane], [near]], NOW)[KEYS[0]] == near
    assert newest_records([[future]], NOW)[KEYS[0]] == future
    later_future = Record(KEYS[0], "192.0.2.67", 67, encode_label(NOW + 7200, 0))
    assert newest_records([[later_future], [future]], NOW, window=30)[KEYS[0]] == later_future
