"""What wgsigd logs for each event, and how much (pure: a fake clock, pytest's log capture)."""

from __future__ import annotations

import logging

import pytest

from wgsig.events import Answered, Change, Reason, Rejected
from wgsigd.eventlog import EventLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def answered(n: int, change: Change) -> Answered:
    return Answered(group=0, peer_id=bytes([n]) * 32, source=("::ffff:192.0.2.1", 1000 + n), clflg=0,
                    change=change, evicted=None, datagrams=1)


def info_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]


def test_new_and_moved_peers_logged_same_endpoint_only_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    log = EventLog(clock=Clock())
    with caplog.at_level(logging.INFO, logger="wgsigd"):
        log(answered(1, Change.INSERTED))
        log(answered(1, Change.UPDATED))
        log(answered(1, Change.MOVED))
        log(answered(1, Change.REFRESHED))
    lines = info_lines(caplog)
    assert len(lines) == 2
    assert "inserted at 192.0.2.1:1001" in lines[0] and "moved at 192.0.2.1:1001" in lines[1]
    assert caplog.records[0].PEER_KEY == "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="  # type: ignore[attr-defined]


def test_registration_burst_is_rate_limited_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = EventLog(registrations_per_second=5, clock=clock)
    with caplog.at_level(logging.INFO, logger="wgsigd"):
        for n in range(1000):
            log(answered(n % 256, Change.INSERTED))
        assert len(info_lines(caplog)) == 5
        clock.now += 1.0
        log(answered(7, Change.INSERTED))
    lines = info_lines(caplog)
    assert len(lines) == 6 and lines[-1].endswith("(995 more registrations not logged)")


def test_clock_skew_logged_at_info_other_rejections_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    log = EventLog(clock=Clock())
    with caplog.at_level(logging.INFO, logger="wgsigd"):
        log(Rejected(Reason.BAD_MAC, ("192.0.2.9", 9)))
        log(Rejected(Reason.CLOCK_SKEW, ("192.0.2.9", 9), 0, bytes(32), -45))
    (line,) = info_lines(caplog)
    # A timestamp in the past is also what a replay of a captured old request looks like.
    assert "its timestamp is 45 s behind our clock" in line and "clock skew, or a replay of an old request" in line
    assert "ahead" not in line


def test_a_timestamp_ahead_is_clock_skew_only(caplog: pytest.LogCaptureFixture) -> None:
    log = EventLog(clock=Clock())
    with caplog.at_level(logging.INFO, logger="wgsigd"):
        log(Rejected(Reason.CLOCK_SKEW, ("192.0.2.9", 9), 0, bytes(32), 45))
    (line,) = info_lines(caplog)
    assert "its clock is 45 s ahead of ours" in line and "replay" not in line


def test_base_protocol_over_ipv6_says_why_and_x1_over_ipv6_is_a_registration(caplog: pytest.LogCaptureFixture) -> None:
    """X1 records IPv6 sources: nothing about IPv4 is said of them; the base protocol cannot, and says so."""
    log = EventLog(clock=Clock())
    with caplog.at_level(logging.DEBUG, logger="wgsigd"):
        log(Rejected(Reason.NOT_IPV4, ("2001:db8::9", 9), 0, bytes([9]) * 32))
        log(answered(3, Change.INSERTED)._replace(extension="x1", ipv6=True, source=("2001:db8::3", 5)))
    dropped, registered = (r.getMessage() for r in caplog.records)
    assert "[2001:db8::9]:9" in dropped and "over IPv6" in dropped and "IPv4 endpoints only" in dropped
    assert "register over IPv4 or with X1" in dropped
    assert "inserted at [2001:db8::3]:5 (X1 over IPv6)" in registered and "IPv4" not in registered


def test_the_journal_says_which_extension_a_registration_used(caplog: pytest.LogCaptureFixture) -> None:
    log = EventLog(clock=Clock())
    with caplog.at_level(logging.INFO, logger="wgsigd"):
        log(answered(1, Change.INSERTED))
        log(answered(2, Change.INSERTED)._replace(extension="x1"))
        log(answered(3, Change.INSERTED)._replace(extension="x1+block", ipv6=True, source=("2001:db8::3", 5)))
    lines = info_lines(caplog)
    assert "(base protocol)" in lines[0] and "(X1)" in lines[1] and "(X1 with candidates over IPv6)" in lines[2]
    assert [r.EXTENSION for r in caplog.records] == [  # type: ignore[attr-defined]
        "base protocol", "X1", "X1 with candidates over IPv6"]


def test_rate_limited_sources_logged_at_info_once_a_minute_with_counts(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = EventLog(clock=clock)
    victim = ("::ffff:192.0.2.50", 51820)
    applied = Answered(group=0, peer_id=bytes(32), source=victim, clflg=0, change=Change.MOVED, evicted=None,
                       datagrams=0, limited=True)
    with caplog.at_level(logging.INFO, logger="wgsigd"):
        for _ in range(500):
            log(Rejected(Reason.RATE_LIMITED, victim, 0, bytes(32)))
        clock.now += 30
        log(applied)
        clock.now += 31
        log(Rejected(Reason.RATE_LIMITED, victim, 0, bytes(32)))
    lines = [line for line in info_lines(caplog) if "answer budget" in line]
    assert len(lines) == 2
    assert lines[0].startswith("answer budget of 192.0.2.50 spent: 0 fresh requests applied but not answered, 1 ")
    assert "1 fresh requests applied but not answered, 500 replays or untied fetches dropped in the last 61 s" \
        in lines[1]
