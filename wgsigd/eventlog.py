"""Turning the core's events into log records.

Registrations are logged at info level; rejected datagrams at debug level and
rate-limited, so a flood cannot fill the journal.  Structured fields use
upper-case names (journald's rule); secrets never appear.
"""

from __future__ import annotations

import logging
import time

from wgsig.events import Answered, Change, Event, Reason, Rejected
from wgsig.keys import key_text

log = logging.getLogger("wgsigd")

# journald MESSAGE_IDs (uuid), stable across releases.
MESSAGE_ID_REGISTERED = "6e3e0d3f6b8a4f0c9a51e0a4c1d2b7f1"
MESSAGE_ID_REJECTED = "b2f5c3a1d9e84c6b8f0a7d3e2c1b4a5f"


def endpoint_text(source: tuple[str, int]) -> str:
    ip = source[0].removeprefix("::ffff:")
    return f"[{ip}]:{source[1]}" if ":" in ip else f"{ip}:{source[1]}"


class EventLog:
    """Logs events, at most ``rejections_per_second`` rejections a second."""

    def __init__(self, rejections_per_second: float = 10.0, clock: object = time.monotonic) -> None:
        self._rate = rejections_per_second
        self._clock = clock
        self._tokens = rejections_per_second
        self._last = 0.0
        self.suppressed = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Answered):
            if event.change in (Change.INSERTED, Change.UPDATED):
                self._registered(event)
            elif log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "group %d: %s from %s (%s)", event.group, key_text(event.peer_id),
                    endpoint_text(event.source), event.change.value,
                )
        elif self._allow_rejection(event):
            self._rejected(event)

    def _registered(self, event: Answered) -> None:
        fields = {
            "MESSAGE_ID": MESSAGE_ID_REGISTERED,
            "PEER_KEY": key_text(event.peer_id),
            "ENDPOINT": endpoint_text(event.source),
            "GROUP": str(event.group),
        }
        evicted = f", evicting {key_text(event.evicted)}" if event.evicted else ""
        log.info(
            "group %d: %s %s at %s%s", event.group, fields["PEER_KEY"], event.change.value,
            fields["ENDPOINT"], evicted, extra=fields,
        )

    def _allow_rejection(self, event: Rejected) -> bool:
        # Clock skew is what admins most need to see: it is logged at info level.
        if event.reason is not Reason.CLOCK_SKEW and not log.isEnabledFor(logging.DEBUG):
            return False
        now = self._clock()  # type: ignore[operator]
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            self.suppressed += 1
            return False
        self._tokens -= 1
        return True

    def _rejected(self, event: Rejected) -> None:
        fields = {
            "MESSAGE_ID": MESSAGE_ID_REJECTED,
            "REASON": event.reason.name.lower(),
            "ENDPOINT": endpoint_text(event.source),
        }
        if event.group is not None:
            fields["GROUP"] = str(event.group)
        if event.peer_id is not None:
            fields["PEER_KEY"] = key_text(event.peer_id)
        suppressed = f" ({self.suppressed} more rejections not logged)" if self.suppressed else ""
        self.suppressed = 0
        if event.reason is Reason.CLOCK_SKEW and event.skew is not None:
            fields["SKEW"] = str(event.skew)
            who = fields.get("PEER_KEY", "a peer")
            direction = "ahead of" if event.skew > 0 else "behind"
            log.info(
                "rejected request from %s at %s: its clock is %d s %s ours (window is the limit)%s",
                who, fields["ENDPOINT"], abs(event.skew), direction, suppressed, extra=fields,
            )
        else:
            log.debug(
                "dropped datagram from %s: %s%s", fields["ENDPOINT"], event.reason.value, suppressed, extra=fields
            )
