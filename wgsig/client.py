"""The client's side of the protocol: build requests, collect an answer.

An answer is N_OTHER + 1 datagrams, each authenticated on its own; they carry
no index, so the collector keeps distinct valid datagrams until it has them
all.  Nothing here does I/O: the caller sends, receives and keeps time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from wgsig.envelope import HEADER_SIZE, NONCE_SIZE, envelope_key, seal, unseal
from wgsig.label import label_seconds
from wgsig.wire import (
    RESPONSE_SIZE,
    SECRET_SIZE,
    DecodeError,
    Record,
    Response,
    decode_response,
    encode_request,
)

MAX_REQUEST_PAD = 32


@dataclass(frozen=True)
class GroupCredentials:
    """What a client needs to speak for one group."""

    group_id: int
    secret: bytes
    encrypt: bool = False

    def __post_init__(self) -> None:
        if len(self.secret) != SECRET_SIZE:
            raise ValueError("a group secret is 32 bytes")
        if not 0 <= self.group_id < 1 << 32:
            raise ValueError(f"group ID {self.group_id} is not a 32-bit unsigned integer")


def build_request(
    credentials: GroupCredentials,
    peer_id: bytes,
    label: bytes,
    clflg: int,
    random_bytes: Callable[[int], bytes],
) -> bytes:
    """The request datagram as it goes on the wire (encrypted if the group is)."""
    clear = encode_request(peer_id, label, clflg, credentials.group_id, credentials.secret)
    if not credentials.encrypt:
        return clear
    nonce = random_bytes(NONCE_SIZE)
    pad = random_bytes(random_bytes(1)[0] % (MAX_REQUEST_PAD + 1))
    return seal(clear, credentials.group_id, envelope_key(credentials.secret), nonce, pad)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid datagram of the answer; ``complete`` once all have arrived."""

    complete: bool


@dataclass(frozen=True, slots=True)
class Ignored:
    """A datagram that is not part of a valid answer, and why."""

    reason: str


@dataclass
class AnswerCollector:
    """Collects the datagrams of one answer for one group."""

    credentials: GroupCredentials
    _datagrams: dict[bytes, Response] = field(default_factory=dict)
    _expected: int | None = None

    @property
    def complete(self) -> bool:
        return self._expected is not None and len(self._datagrams) == self._expected

    @property
    def received(self) -> int:
        return len(self._datagrams)

    @property
    def expected(self) -> int | None:
        return self._expected

    def receive_datagram(self, data: bytes) -> Accepted | Ignored:
        creds = self.credentials
        if creds.encrypt:
            if len(data) < HEADER_SIZE + RESPONSE_SIZE:
                return Ignored(f"{len(data)}-byte datagram is too short for an encrypted answer")
            # SGROUP is not checked: the C server always writes group 0 there.
            clear = unseal(data, envelope_key(creds.secret), RESPONSE_SIZE)
        else:
            clear = data
        try:
            response = decode_response(clear, [creds.secret])
        except DecodeError as error:
            return Ignored(str(error))
        if response.group != creds.group_id:
            return Ignored(f"answer is for group {response.group}, not {creds.group_id}")
        count = response.n_other + 1
        if self._expected != count:
            # A datagram of another (newer) answer: start over with it.
            self._datagrams.clear()
            self._expected = count
        self._datagrams.setdefault(clear, response)
        return Accepted(self.complete)

    def records(self) -> list[Record]:
        """Every record of the answer, in the order the datagrams arrived."""
        return [r for response in self._datagrams.values() for r in response.records if r is not None]


def fresh_records(records: Iterable[Record], now: float, max_age: float | None) -> list[Record]:
    """Records whose label is at most ``max_age`` seconds old (all if None)."""
    if max_age is None:
        return list(records)
    oldest = now - max_age
    return [r for r in records if label_seconds(r.label) >= oldest]


def newest_records(answers: Iterable[Iterable[Record]]) -> dict[bytes, Record]:
    """Merge answers of several servers: per peer, the record with the newest label."""
    merged: dict[bytes, Record] = {}
    for records in answers:
        for record in records:
            known = merged.get(record.peer_id)
            if known is None or record.label > known.label:
                merged[record.peer_id] = record
    return merged
