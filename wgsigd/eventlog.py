"""Turning the core's events into log records.

New peers and peers that moved are logged at info level, rate-limited: a
burst of registrations costs a counter, not a formatted line each (and the
journal would drop most of them anyway).  A peer registering again from the
same endpoint is logged at debug level only.  Rejected datagrams are logged at
debug level and rate-limited, except clock skew, which admins need to see (a
timestamp behind ours is also what a replayed old request carries: the line
says both), and answers withheld because a source spent its answer budget: one
info line per source a minute at most, with counts.
Structured fields use upper-case names (journald's rule); secrets never
appear.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from wgsig.endpoint import Endpoint, endpoint_text, unmapped
from wgsig.events import Answered, Change, Event, Reason, Rejected
from wgsig.keys import PublicKey

log = logging.getLogger("wgsigd")

# journald MESSAGE_IDs (uuid), stable across releases.
MESSAGE_ID_REGISTERED = "6e3e0d3f6b8a4f0c9a51e0a4c1d2b7f1"
MESSAGE_ID_REJECTED = "b2f5c3a1d9e84c6b8f0a7d3e2c1b4a5f"
MESSAGE_ID_RATE_LIMITED = "4c9a7e2d1f0b4b3a8e6d5c2b1a0f9e8d"

LIMITED_LINE_INTERVAL = 60.0  # seconds between two rate-limit lines about one source
LIMITED_SOURCES = 4096  # sources whose counts are kept between their lines


def source_text(source: Endpoint) -> str:
    """A datagram's source as the journal shows it: IPv4 without the dual-stack prefix."""
    return endpoint_text((unmapped(source[0]), source[1]))


def extension_text(event: Answered) -> str:
    """Which protocol a request used, for the journal: "base protocol", "X1", "X1 with candidates",
    "... over IPv6" (the EXTENSION field)."""
    text = {"": "base protocol", "x1": "X1", "x1+block": "X1 with candidates"}.get(event.extension, event.extension)
    return f"{text} over IPv6" if event.ipv6 else text


class LineBudget:
    """A token bucket of log lines; counts the lines it refused since the last one allowed."""

    def __init__(self, per_second: float, clock: Callable[[], float]) -> None:
        self._rate = per_second
        self._clock = clock
        self._tokens = per_second
        self._last = clock()
        self.suppressed = 0

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            self.suppressed += 1
            return False
        self._tokens -= 1
        return True

    def note(self, what: str) -> str:
        """The " (N more WHAT not logged)" suffix for the next line; the count starts again."""
        text = f" ({self.suppressed} more {what} not logged)" if self.suppressed else ""
        self.suppressed = 0
        return text


class EventLog:
    """Logs events within per-second budgets of registration and rejection lines."""

    def __init__(
        self,
        registrations_per_second: float = 50.0,
        rejections_per_second: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registrations = LineBudget(registrations_per_second, clock)
        self._rejections = LineBudget(rejections_per_second, clock)
        self._limited = LimitedSources(clock)

    @property
    def suppressed(self) -> int:
        return self._registrations.suppressed + self._rejections.suppressed

    def __call__(self, event: Event) -> None:
        if isinstance(event, Answered):
            if event.limited:
                self._limited.note(event.source, applied=True)
            if event.change is Change.INSERTED or event.change is Change.MOVED:
                if self._registrations.take():
                    self._registered(event)
            elif log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "group %d: %s from %s (%s, %s)", event.group, str(PublicKey(event.peer_id)),
                    source_text(event.source), event.change.value, extension_text(event),
                )
        elif event.reason is Reason.RATE_LIMITED:
            self._limited.note(event.source, applied=False)
        # Clock skew is what admins most need to see: it is logged at info level.
        elif (event.reason is Reason.CLOCK_SKEW or log.isEnabledFor(logging.DEBUG)) and self._rejections.take():
            self._rejected(event)

    def _registered(self, event: Answered) -> None:
        fields = {
            "MESSAGE_ID": MESSAGE_ID_REGISTERED,
            "PEER_KEY": str(PublicKey(event.peer_id)),
            "ENDPOINT": source_text(event.source),
            "GROUP": str(event.group),
            "EXTENSION": extension_text(event),
        }
        evicted = f", evicting {PublicKey(event.evicted)}" if event.evicted else ""
        log.info(
            "group %d: %s %s at %s (%s)%s%s", event.group, fields["PEER_KEY"], event.change.value,
            fields["ENDPOINT"], fields["EXTENSION"], evicted, self._registrations.note("registrations"), extra=fields,
        )

    def _rejected(self, event: Rejected) -> None:
        fields = {
            "MESSAGE_ID": MESSAGE_ID_REJECTED,
            "REASON": event.reason.name.lower(),
            "ENDPOINT": source_text(event.source),
        }
        if event.group is not None:
            fields["GROUP"] = str(event.group)
        if event.peer_id is not None:
            fields["PEER_KEY"] = str(PublicKey(event.peer_id))
        suppressed = self._rejections.note("rejections")
        if event.reason is Reason.CLOCK_SKEW and event.skew is not None:
            fields["SKEW"] = str(event.skew)
            who = fields.get("PEER_KEY", "a peer")
            if event.skew > 0:
                log.info(
                    "rejected request from %s at %s: its clock is %d s ahead of ours (window is the limit)%s",
                    who, fields["ENDPOINT"], event.skew, suppressed, extra=fields,
                )
            else:
                # An old timestamp is also what a captured request replayed later carries.
                log.info(
                    "rejected request from %s at %s: its timestamp is %d s behind our clock"
                    " (clock skew, or a replay of an old request; window is the limit)%s",
                    who, fields["ENDPOINT"], -event.skew, suppressed, extra=fields,
                )
        else:
            log.debug(
                "dropped datagram from %s: %s%s", fields["ENDPOINT"], event.reason.value, suppressed, extra=fields
            )


class LimitedSources:
    """Requests not answered because their source spent its budget: one info line per source and
    ``LIMITED_LINE_INTERVAL`` at most, saying how many since the previous one, within a budget of
    one such line a second overall (spoofed sources are many)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lines = LineBudget(1.0, clock)
        # Source IP -> [time of its last line, fresh requests applied unanswered, others dropped];
        # least recently logged first, so that the oldest is forgotten when too many are kept.
        self._sources: dict[str, list[float]] = {}

    def note(self, source: Endpoint, applied: bool) -> None:
        ip = unmapped(source[0])
        now = self._clock()
        entry = self._sources.get(ip)
        if entry is None:
            if len(self._sources) >= LIMITED_SOURCES:
                del self._sources[next(iter(self._sources))]
            entry = self._sources[ip] = [-1.0, 0, 0]  # never logged
        entry[1 if applied else 2] += 1
        if (entry[0] >= 0 and now - entry[0] < LIMITED_LINE_INTERVAL) or not self._lines.take():
            return
        fields = {"MESSAGE_ID": MESSAGE_ID_RATE_LIMITED, "ENDPOINT": ip, "REASON": "rate_limited"}
        when = f"in the last {now - entry[0]:.0f} s" if entry[0] >= 0 else "so far"
        log.info(
            "answer budget of %s spent: %d fresh requests applied but not answered, %d replays or untied"
            " fetches dropped %s (answer_bytes_rate, replay_bytes_rate; one line a minute per source)",
            ip, entry[1], entry[2], when, extra=fields,
        )
        del self._sources[ip]  # to the end: the least recently logged are first
        self._sources[ip] = [now, 0, 0]
