"""The client's side of the protocol: build requests, collect an answer.

An answer is N_OTHER + 1 datagrams, each authenticated on its own.  They carry
no index and nothing that ties them to the request they answer, so the collector
tells them apart by their records: one consistent answer holds each peer at most
once.  A datagram that shares a peer with one already held is another version
of it (a retry answered after the table changed, or a replayed old datagram):
the one with the newer records is kept, never both.  A one-datagram answer (the
C server's, always) is complete at once, as the C client takes it.  Nothing
here does I/O: the caller sends, receives and keeps time.
"""

from __future__ import annotations

from wgsig import x1
from wgsig.envelope import HEADER_SIZE, NONCE_SIZE, envelope_key, seal, unseal
from wgsig.label import label_seconds
from wgsig.plainclass import dataclass, field
from wgsig.wire import (
    RECORDS_PER_DATAGRAM,
    RESPONSE_SIZE,
    SECRET_SIZE,
    DecodeError,
    Record,
    Response,
    decode_response,
    encode_request,
)

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

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
    items: Sequence[x1.Item] | None = None,
    relay_to: Sequence[bytes] = (),
) -> bytes:
    """The request datagram as it goes on the wire (encrypted if the group is).

    With ``items`` (X1: only to a server that answered with SV_XR_OK) CLFLG gets XR and the
    request block follows the 82 bytes; ``relay_to`` adds a RELAY_REQ for each of those peer IDs
    (only to a server that answered with SV_RELAY).
    """
    if items is not None:
        clflg |= x1.XR
    clear = encode_request(peer_id, label, clflg, credentials.group_id, credentials.secret)
    if items is not None:
        clear = x1.encode_request_block(clear, items, x1.extension_key(credentials.secret), relay_to)
    if not credentials.encrypt:
        return clear
    nonce = random_bytes(NONCE_SIZE)
    pad = random_bytes(random_bytes(1)[0] % (MAX_REQUEST_PAD + 1))
    return seal(clear, credentials.group_id, envelope_key(credentials.secret), nonce, pad)


@dataclass(frozen=True)
class Accepted:
    """A valid datagram of the answer; ``complete`` once all have arrived."""

    complete: bool


@dataclass(frozen=True)
class Ignored:
    """A datagram that is not part of a valid answer, and why."""

    reason: str


@dataclass(frozen=True)
class Stale(Ignored):
    """An authentic datagram older than the version of it already held: not an authentication failure."""


def _newest(response: Response) -> bytes:
    """The newest label among a datagram's records (b"" for an empty datagram)."""
    return max((r.label for r in response.records if r is not None), default=b"")


def _peers(response: Response) -> list[bytes]:
    return [r.peer_id for r in response.records if r is not None]


@dataclass
class AnswerCollector:
    """Collects the datagrams of one answer for one group.

    X1 answer datagrams (SVEXT with XB) carry a block after their 540 bytes; it must verify,
    or the datagram is ignored (a stripped or forged block never passes as a plain datagram).
    Datagrams without records (the padding of an answer) are all alike: at most one is held,
    and it stands for one datagram.
    """

    credentials: GroupCredentials
    _datagrams: dict[bytes, Response] = field(default_factory=dict)
    _entries: dict[bytes, list[x1.Entry]] = field(default_factory=dict)
    _holder: dict[bytes, bytes] = field(default_factory=dict)  # peer ID -> the datagram (base) holding it
    _newest_of: dict[bytes, bytes] = field(default_factory=dict)  # base -> its newest record label
    _empty: bytes | None = None  # the base of the datagram without records, if one is held
    _expected: int | None = None
    _xkey: bytes = b""

    @property
    def complete(self) -> bool:
        if self._expected is None:
            return False
        full = len(self._datagrams) - (self._empty is not None)
        return full == self._expected or (full == self._expected - 1 and self._empty is not None)

    @property
    def received(self) -> int:
        return 0 if self._expected is None else min(self._expected, len(self._datagrams))

    @property
    def expected(self) -> int | None:
        return self._expected

    def receive_datagram(self, data: bytes) -> Accepted | Ignored:
        creds = self.credentials
        if creds.encrypt:
            if len(data) < HEADER_SIZE + RESPONSE_SIZE:
                return Ignored(f"{len(data)}-byte datagram is too short for an encrypted answer")
            # SGROUP is not checked: the C server always writes group 0 there.
            key = envelope_key(creds.secret)
            clear = unseal(data, key, len(data) - HEADER_SIZE)
        else:
            clear = data
        try:
            if len(clear) != RESPONSE_SIZE and not creds.encrypt and x1.answer_extended_size(clear) != len(clear):
                raise DecodeError(f"response is {len(clear)} bytes, expected {RESPONSE_SIZE}")
            response = decode_response(clear[:RESPONSE_SIZE], [creds.secret])
            entries = self._block(response, clear)
        except DecodeError as error:
            return Ignored(str(error))
        if response.group != creds.group_id:
            return Ignored(f"answer is for group {response.group}, not {creds.group_id}")
        base = clear[:RESPONSE_SIZE]
        if base in self._datagrams:
            return Accepted(self.complete)  # the same datagram again (an answer to a retry)
        count = response.n_other + 1
        newest = _newest(response)
        if self._expected != count:
            if self._datagrams and newest < max(self._newest_of.values()):
                return Stale(f"an older answer ({count} datagrams) than the one being collected")
            # A datagram of another, newer answer: start over with it.
            for held in list(self._datagrams):
                self._drop(held)
            self._expected = count
        peers = _peers(response)
        if peers:
            versions = {self._holder[p] for p in peers if p in self._holder}
        else:
            versions = {self._empty} if self._empty is not None else set()
        if versions:
            # Another version of a datagram held (or of several, when a peer moved between them).
            if newest <= max(self._newest_of[b] for b in versions):
                return Stale("an older version of an answer datagram already received")
            for old in versions:
                self._drop(old)
        self._datagrams[base] = response
        self._newest_of[base] = newest
        for peer in peers:
            self._holder[peer] = base
        if not peers:
            self._empty = base
        if entries:
            self._entries[base] = entries
        return Accepted(self.complete)

    def _drop(self, base: bytes) -> None:
        response = self._datagrams.pop(base)
        self._entries.pop(base, None)
        del self._newest_of[base]
        for peer in _peers(response):
            if self._holder.get(peer) == base:
                del self._holder[peer]
        if self._empty == base:
            self._empty = None

    def _block(self, response: Response, clear: bytes) -> list[x1.Entry]:
        """The entries of the X1 block of a datagram, [] without one; DecodeError if it is bad."""
        if not response.svext & x1.SV_XB:
            if not self.credentials.encrypt and len(clear) != RESPONSE_SIZE:
                raise DecodeError(f"response is {len(clear)} bytes, expected {RESPONSE_SIZE}")
            return []
        size = x1.answer_extended_size(clear)
        if size is None or (size != len(clear) and not self.credentials.encrypt) or size > len(clear):
            raise DecodeError("X1 answer datagram without a valid block")
        if not self._xkey:
            self._xkey = x1.extension_key(self.credentials.secret)
        return x1.open_answer_block(clear[:size], self._xkey)

    @property
    def svext(self) -> int:
        """The server's X1 capabilities (SVEXT without XB); 0 from a C or X1-unaware server."""
        bits = 0
        for response in self._datagrams.values():
            bits |= response.svext
        return bits & ~x1.SV_XB

    def entries(self) -> tuple[dict[bytes, list[x1.Item]], list[x1.Item]]:
        """X1 items per peer ID, and the items about the requester itself (its observed source)."""
        per_peer: dict[bytes, list[x1.Item]] = {}
        requester: list[x1.Item] = []
        for base, entries in self._entries.items():
            response = self._datagrams[base]
            for entry in entries:
                if entry.slot == x1.REQUESTER_SLOT:
                    requester.append(entry.item)
                elif entry.slot < RECORDS_PER_DATAGRAM and (record := response.records[entry.slot]) is not None:
                    per_peer.setdefault(record.peer_id, []).append(entry.item)
        return per_peer, requester

    def records(self) -> list[Record]:
        """Every record of the answer, in the order the datagrams arrived."""
        return [r for response in self._datagrams.values() for r in response.records if r is not None]


def fresh_records(records: Iterable[Record], now: float, max_age: float | None) -> list[Record]:
    """Records whose label is at most ``max_age`` seconds old (all if None)."""
    if max_age is None:
        return list(records)
    oldest = now - max_age
    return [r for r in records if label_seconds(r.label) >= oldest]


def newest_records(answers: Iterable[Iterable[Record]], now: float, window: float = 30) -> dict[bytes, Record]:
    """Merge answers of several servers: per peer, the record with the newest label.

    A record labelled more than ``window`` seconds after ``now`` (a server's or a peer's clock far
    ahead, which wgsigd's own window would have refused) never outranks one that is not: it
    would pin the peer to it until the clocks catch up.  Alone, it is still the peer's record.
    """
    limit = now + window
    merged: dict[bytes, Record] = {}
    for records in answers:
        for record in records:
            known = merged.get(record.peer_id)
            if known is None or _rank(record, limit) > _rank(known, limit):
                merged[record.peer_id] = record
    return merged


def _rank(record: Record, limit: float) -> tuple[bool, bytes]:
    return label_seconds(record.label) <= limit, record.label
