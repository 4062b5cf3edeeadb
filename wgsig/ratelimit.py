"""Limits that keep the server from being used as a traffic amplifier.

An attacker without the group secret can only replay requests it captured.
Requests that change the table (CLFLG 0, 2, and 1 of a known peer) store their
label, so a replay of one is rejected as REPLAY before any budget is looked at.
The others (CLFLG 3, CLFLG 1 of an unknown peer) change nothing and would stay
valid for the whole time window, at every server of the group and after a
restart: a spoofed replay of one of them is the amplification vector.  The
defences:

- Tying (in the server): a label-less request gets the whole answer only when
  its source address is the one recorded for its peer ID in that group and
  ``ReplayCache`` has not seen it; anything else gets at most
  ``max_answer_bytes``.  Another server of the group, or this one after a
  restart, therefore sends a replay spoofed from any other address one
  datagram at most.  A peer that has no record yet registers (CLFLG 0 or 2):
  a registration stores its source, so it is tied by definition and gets the
  whole answer.
- ``ReplayCache``: the HMAC tags of label-less requests, kept while their label
  is inside the window, so that even from the peer's own address a replay is
  capped.  When the cache is full (only holders of the secret can fill it)
  every such request is treated as a replay.
- ``max_answer_bytes``: the byte cap for those answers.  The default, one
  datagram, is all a C client reads anyway and bounds a replay's
  amplification to 540/82 (6.6; 556/98 encrypted).
- Two ``AnswerLimiter`` byte budgets per source IP address: one for fresh
  requests (label-storing requests that passed the replay check, and tied
  label-less requests seen for the first time), one for the rest (replays and
  untied label-less requests).  Replays, which anybody can send at any rate,
  spend only their own small budget, never the one a victim's registrations
  need; and a fresh registration is applied before its budget is looked at,
  so a spent budget costs it the answer, never the update.

``Limits`` holds them as the server takes them, at construction and on
reload.  Everything is sans-IO: the caller passes the source and the time.  Each
datagram costs O(1): a dictionary lookup and update, and dropping at most a
couple of stale entries from the front of an ordered dictionary.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from wgsig.wire import RESPONSE_SIZE

# What wgsigd applies by default.  Sized for 1,000 kernel-mode peers behind one public IPv4
# address (README, "Hostile input"; bench/replay_dos.py): each run registers, checks and
# refreshes, then fetches every half second while a peer waits for a handshake.
DEFAULT_ANSWER_BYTES_RATE = 2_000_000  # bytes a second per source address, fresh requests
DEFAULT_ANSWER_BYTES_BURST = 500_000  # bytes at once per source address, fresh requests
DEFAULT_REPLAY_BYTES_RATE = 3_000  # bytes a second per source address, replays and untied fetches
DEFAULT_REPLAY_BYTES_BURST = 6_000  # bytes at once: ten one-datagram answers
DEFAULT_MAX_SOURCES = 65536
# One datagram (540 bytes plain, 556 encrypted) for a replayed request.
DEFAULT_MAX_ANSWER_BYTES = 600
DEFAULT_REPLAY_ENTRIES = 65536
MIN_ANSWER_BYTES = 600  # one datagram, plain or encrypted, always fits
LEGACY_ANSWER_BYTES = RESPONSE_SIZE  # what one answer of the old answer_rate/answer_burst keys counts
# The old per-answer defaults, kept for what still quotes them (bench/flood.py).
DEFAULT_ANSWER_RATE = DEFAULT_ANSWER_BYTES_RATE / LEGACY_ANSWER_BYTES
DEFAULT_ANSWER_BURST = DEFAULT_ANSWER_BYTES_BURST // LEGACY_ANSWER_BYTES
_CLOCK_STEP = 1.0  # seconds the clock may go back before every bucket starts full again


class AnswerLimiter:
    """A per-source budget of answer bytes (a token bucket kept as one float per source, GCRA).

    For each source the dictionary holds the time at which its bucket would be
    full again.  A source may be answered while its bucket holds any bytes;
    the answer then takes its whole size, overdrawing the bucket if it is
    larger than what is left (so that an answer larger than ``burst`` is still
    sent, at most once per ``size / rate`` seconds).  Over any time ``t`` a
    source is sent at most ``rate * t + burst`` bytes plus one answer.
    Sources are kept least recently charged first; an entry whose bucket is
    full carries no information and is dropped, and when ``max_sources`` is
    reached the least recently charged source is forgotten.
    """

    def __init__(self, rate: float, burst: float, max_sources: int = DEFAULT_MAX_SOURCES) -> None:
        if rate <= 0 or burst <= 0 or max_sources < 1:
            raise ValueError("rate and burst must be positive, max_sources at least 1")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._horizon = burst / rate
        self._full_at: OrderedDict[str, float] = OrderedDict()
        self._latest = float("-inf")
        self.limited = 0  # answers refused so far

    def __len__(self) -> int:
        return len(self._full_at)

    def allow(self, source: str, now: float) -> bool:
        """Whether ``source``'s bucket holds any bytes at time ``now`` (then ``charge`` the answer)."""
        if now + _CLOCK_STEP < self._latest:
            self._full_at.clear()  # the clock went back: nobody is locked out for the step's length
        self._latest = now
        full_at = self._full_at.get(source)
        if full_at is not None and full_at - now >= self._horizon:
            self.limited += 1
            return False
        return True

    def charge(self, source: str, size: int, now: float) -> None:
        """Take ``size`` bytes sent to ``source`` out of its bucket."""
        entries = self._full_at
        full_at = entries.get(source)
        if full_at is None or full_at < now:
            full_at = now  # unknown or idle: the bucket is full
        entries[source] = full_at + size / self.rate
        entries.move_to_end(source)
        # Cheap cleanup: the front holds the least recently charged sources.
        for _ in range(2):
            oldest, oldest_full_at = next(iter(entries.items()))
            if oldest_full_at >= now and len(entries) <= self.max_sources:
                break
            del entries[oldest]


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

    answer_limiter: AnswerLimiter | None = None  # fresh requests
    max_answer_bytes: int | None = None  # per answer to a label-less request that is not tied, or seen before
    replay_cache: ReplayCache | None = None
    replay_limiter: AnswerLimiter | None = None  # replays and untied label-less requests


NO_LIMITS = Limits()
