"""Limits that keep the server from being used as a traffic amplifier.

An attacker without the group secret can only replay requests it captured.
Requests that change the table (CLFLG 0, 2, and 1 of a known peer) store their
label, so a replay of one is rejected as REPLAY: each is answered once.  The
others (CLFLG 3, CLFLG 1 of an unknown peer) change nothing and would stay
valid for the whole time window: a spoofed replay of one of them is the
amplification vector.  Three defences:

- ``ReplayCache``: the HMAC tags of such requests, kept while their label is
  inside the window.  The first sight of one gets the whole answer (a
  legitimate peer fetching a large table with CLFLG 3); a replay is still
  answered, as the protocol allows and the C server does, but only with what
  fits in ``max_answer_bytes``.  When the cache is full (only holders of the
  secret can fill it) every such request is treated as a replay.
- ``max_answer_bytes``: the byte cap for those answers.  The default, one
  datagram, is all a C client reads anyway and bounds a replay's
  amplification to 540/82 (6.6; 556/98 encrypted).
- ``AnswerLimiter``: at most ``rate`` answers a second, ``burst`` at once, per
  source IP address, whatever the request.  This bounds what a spoofed victim
  receives, even from a group member who holds the secret.

``Limits`` holds the three as the server takes them, at construction and on
reload.  Everything is sans-IO: the caller passes the source and the time.  Each
datagram costs O(1): a dictionary lookup and update, and dropping at most a
couple of stale entries from the front of an ordered dictionary.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_ANSWER_RATE = 10.0  # answers per second per source address
DEFAULT_ANSWER_BURST = 40  # answers at once per source address (peers behind one NAT, retries)
DEFAULT_MAX_SOURCES = 65536
# One datagram (540 bytes plain, 556 encrypted) for a replayed request.
DEFAULT_MAX_ANSWER_BYTES = 600
DEFAULT_REPLAY_ENTRIES = 65536
MIN_ANSWER_BYTES = 600  # one datagram, plain or encrypted, always fits


class AnswerLimiter:
    """A per-source token bucket kept as one float per source (GCRA).

    For each source the dictionary holds its "theoretical arrival time": the
    time at which its bucket would be full again.  An answer is allowed when
    that time, advanced by one interval, is at most ``burst`` intervals ahead
    of now.  Sources are kept least recently seen first; an entry whose bucket
    is full carries no information and is dropped, and when ``max_sources``
    is reached the least recently seen source is forgotten.
    """

    def __init__(self, rate: float, burst: int, max_sources: int = DEFAULT_MAX_SOURCES) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be positive, burst and max_sources at least 1")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._interval = 1.0 / rate
        self._horizon = burst / rate * (1 + 1e-9)  # slack for float rounding
        self._full_at: OrderedDict[str, float] = OrderedDict()
        self.limited = 0  # answers refused so far

    def __len__(self) -> int:
        return len(self._full_at)

    def allow(self, source: str, now: float) -> bool:
        """Take one answer from ``source``'s bucket at time ``now`` if it has one."""
        entries = self._full_at
        full_at = entries.get(source)
        if full_at is None or full_at < now or full_at > now + self._horizon:
            # Unknown, idle (bucket full), or the clock went backwards: start full.
            full_at = now
        full_at += self._interval
        if full_at - now > self._horizon:
            self.limited += 1
            return False
        entries[source] = full_at
        entries.move_to_end(source)
        # Cheap cleanup: the front holds the least recently seen sources.
        for _ in range(2):
            oldest, oldest_full_at = next(iter(entries.items()))
            if oldest_full_at >= now and len(entries) <= self.max_sources:
                break
            del entries[oldest]
        return True


def capped_datagrams(count: int, datagram_size: int, max_bytes: int) -> int:
    """How many of ``count`` datagrams of ``datagram_size`` bytes fit in ``max_bytes`` (at least one)."""
    return max(1, min(count, max_bytes // datagram_size))


class ReplayCache:
    """Requests already answered that stored no label, while still fresh.

    Keyed by the request's HMAC tag, which is unique to its content.  A
    request is acceptable only within ``window`` seconds of its label, and its
    label is within ``window`` seconds of the time it was first seen, so an
    entry can go ``2 * window + 1`` seconds after that.  Entries are in arrival
    order, so expired ones are at the front.
    """

    def __init__(self, window: int, max_entries: int = DEFAULT_REPLAY_ENTRIES) -> None:
        self.lifetime = 0  # seconds an entry lasts, from the window:
        self.set_window(window)
        self.max_entries = max_entries
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def set_window(self, window: int) -> None:
        """Keep new entries as long as a request may be replayed with this window."""
        self.lifetime = 2 * window + 1

    def __len__(self) -> int:
        return len(self._expiry)

    def check(self, tag: bytes, now: float) -> bool | None:
        """True the first time ``tag`` is seen, False for a replay, None when full."""
        entries = self._expiry
        for _ in range(2):
            if not entries:
                break
            oldest, expiry = next(iter(entries.items()))
            if expiry >= now:
                break
            del entries[oldest]
        if tag in entries:
            return False
        if len(entries) >= self.max_entries:
            return None
        entries[tag] = now + self.lifetime
        return True


@dataclass(frozen=True, slots=True)
class Limits:
    """The server's anti-amplification limits; None leaves one off (the default: unlimited).

    Passed to ``Server(...)`` and to ``Server.configure(...)`` on reload.  The replay cache keeps
    what it saw across a reload when the same one is passed again; the server sets its lifetime
    from the window it checks labels against.
    """

    answer_limiter: AnswerLimiter | None = None
    max_answer_bytes: int | None = None  # per answer to a request that stores no label
    replay_cache: ReplayCache | None = None


NO_LIMITS = Limits()
