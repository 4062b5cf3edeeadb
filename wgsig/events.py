"""What the server core reports about each datagram, for logs and counters."""

from __future__ import annotations

import enum
from typing import NamedTuple

from wgsig.endpoint import Endpoint


class Reason(enum.Enum):
    """Why a datagram was dropped without an answer."""

    SIZE = "wrong datagram size"
    UNKNOWN_GROUP = "group not served"
    ENCRYPTION = "encryption setting does not match the group's"
    BAD_MAC = "HMAC does not verify"
    GROUP_MISMATCH = "encrypted SGROUP differs from the inner GROUP"
    ZERO_ID = "all-zero peer ID"
    NOT_ALLOWED = "peer key not on the group's whitelist"
    BAD_LABEL = "invalid timestamp label"
    CLOCK_SKEW = "timestamp outside the time window"
    REPLAY = "timestamp not newer than the stored one"
    # X1 records IPv6 sources; only a base-protocol registration over IPv6 is dropped.
    NOT_IPV4 = (
        "base-protocol registration over IPv6: its records hold IPv4 endpoints only (register over IPv4 or with X1)"
    )
    BAD_BLOCK = "X1 request block missing or not authentic"
    RATE_LIMITED = "answer budget of this source spent"

    # Hashed by identity, in C: the server counts rejections in dicts keyed by reason on the
    # per-datagram path, and Enum's own __hash__ is a Python call.
    __hash__ = object.__hash__


class Change(enum.Enum):
    """What an accepted request did to its group's table."""

    INSERTED = "inserted"
    MOVED = "moved"  # a known peer registered from another endpoint
    UPDATED = "updated"  # a known peer registered again from the same endpoint
    REFRESHED = "timestamp refreshed"
    UNCHANGED = "unchanged"


# Events are named tuples: one is made for every datagram, and a tuple is the
# cheapest immutable record with named fields (a third of a frozen dataclass).


class Rejected(NamedTuple):
    """A datagram dropped silently.  ``peer_id`` is set only once authenticated."""

    reason: Reason
    source: Endpoint
    group: int | None = None
    peer_id: bytes | None = None
    skew: int | None = None  # seconds the peer's clock is ahead of ours


class Answered(NamedTuple):
    """An authenticated request, answered with the group's table.

    ``limited``: applied, but not answered (``datagrams`` is 0): its source had spent its budget.
    """

    group: int
    peer_id: bytes
    source: Endpoint
    clflg: int
    change: Change
    evicted: bytes | None
    datagrams: int
    extension: str = ""  # "x1" (an X1 answer), "x1+block" (the request carried candidates), "" (none)
    ipv6: bool = False  # registered over native IPv6 (X1)
    limited: bool = False


Event = Rejected | Answered
