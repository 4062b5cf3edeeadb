"""The server core's counters for the metrics: per group answers, capped answers and rejections
by reason; rejections before a group is known; kept across a reload (pure)."""

from __future__ import annotations

from tests.test_reliability_server import NOW, SECRET, SOURCE, request, server_with
from wgsig.events import Reason
from wgsig.ratelimit import AnswerLimiter, Limits
from wgsig.server import GroupConfig, GroupCounters, Server


def test_answers_rate_limits_caps_and_reasons_are_counted_per_group() -> None:
    server = server_with(45, Limits(answer_limiter=AnswerLimiter(rate=1, burst=3000), max_answer_bytes=1200))
    assert server.receive_datagram(request(250, 0), SOURCE, NOW)[0]  # registers: answered whole, 2,700 bytes
    assert len(server.receive_datagram(request(251, 3), SOURCE, NOW)[0]) == 2  # label-less, untied: capped
    assert server.receive_datagram(request(252, 0), SOURCE, NOW)[0]  # 300 bytes left: overdrawn
    assert server.receive_datagram(request(253, 0), SOURCE, NOW)[0] == []  # budget spent: applied, not answered
    assert server.receive_datagram(request(250, 0), SOURCE, NOW)[0] == []  # a replay
    assert server.receive_datagram(request(254, 0, now=NOW + 300), SOURCE, NOW)[0] == []  # clock skew
    assert server.receive_datagram(request(1, 0, group=9), SOURCE, NOW)[0] == []  # no group 9
    assert server.receive_datagram(b"short", SOURCE, NOW)[0] == []
    assert server.group_counters() == [
        GroupCounters(0, 48, 3, 1, {Reason.RATE_LIMITED: 1, Reason.REPLAY: 1, Reason.CLOCK_SKEW: 1}),
    ]
    assert server.rejections == {Reason.UNKNOWN_GROUP: 1, Reason.SIZE: 1}
    assert (server.answered, server.rejected) == (3, 5)


def test_counters_survive_a_reload_of_kept_groups_only() -> None:
    server = Server([GroupConfig(0, (SECRET,)), GroupConfig(1, (SECRET,))])
    assert server.receive_datagram(request(7, 0), SOURCE, NOW)[0]
    assert server.receive_datagram(request(7, 0, group=1), SOURCE, NOW)[0]
    assert server.receive_datagram(request(8, 0, secret=bytes(32)), SOURCE, NOW)[0] == []  # bad MAC
    server.configure([GroupConfig(0, (SECRET,)), GroupConfig(2, (SECRET,))])
    assert server.group_counters() == [
        GroupCounters(0, 1, 1, 0, {Reason.BAD_MAC: 1}),
        GroupCounters(2, 0, 0, 0, {}),
    ]


def test_reason_hashes_by_identity() -> None:
    assert {r: r.name for r in Reason}[Reason.REPLAY] == "REPLAY"
    assert hash(Reason.REPLAY) == object.__hash__(Reason.REPLAY)
