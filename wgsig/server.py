"""The server's protocol engine: validate a datagram, update the table, answer.

``Server.receive_datagram(data, source, now)`` is the whole per-datagram path.
It returns the datagrams to send back to ``source`` (none for anything that is
not an authentic, fresh request) and one event describing what happened.
Randomness (nonces for encrypted answers) is passed in at construction.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from hmac import compare_digest as _compare_digest
from typing import NamedTuple

from wgsig import x1
from wgsig.endpoint import IPV4_MAPPED, Endpoint, unmapped
from wgsig.envelope import HEADER_SIZE, NONCE_SIZE, Envelope, envelope_key, scrambled_group
from wgsig.events import Answered, Change, Event, Reason, Rejected
from wgsig.label import label_seconds
from wgsig.ratelimit import NO_LIMITS, Limits, capped_datagrams
from wgsig.relayalloc import RelayTable
from wgsig.signer import Signer
from wgsig.sockfilter import SizeRange
from wgsig.table import GroupTable
from wgsig.wire import (
    CLFLG_BASE,
    CLFLG_HIGH,
    CLFLG_LOW,
    CLFLG_UPDATE,
    REQUEST_GROUP,
    REQUEST_LABEL,
    REQUEST_PEER_ID,
    REQUEST_SIGNED,
    REQUEST_SIZE,
    REQUEST_TAG,
    RESPONSE_SIZE,
    SECRET_SIZE,
    STORE_ENDPOINT,
    STORE_LABEL,
    STORE_NOTHING,
    ZERO_KEY,
    DecodeError,
    encode_endpoint,
)
from wgsig.x1view import CAPABILITIES, NO_IPV4, GroupExtensions, encode_observed

DEFAULT_WINDOW = 30
DEFAULT_MAX_RECORDS = 256
_ENCRYPTED_REQUEST_SIZE = HEADER_SIZE + REQUEST_SIZE
# _accept's "stored label not looked up yet": a stored label is never empty, and None means no record.
_NOT_LOOKED_UP = b""
_inet_pton, _AF_INET = socket.inet_pton, socket.AF_INET
# A plain X1 request: the 82 bytes and a request block of 0 to x1.MAX_REQUEST_BODY body bytes.
_PLAIN_EXTENDED_SIZES = (REQUEST_SIZE + x1.BLOCK_OVERHEAD, REQUEST_SIZE + x1.BLOCK_OVERHEAD + x1.MAX_REQUEST_BODY)


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """One group as the administrator configured it.

    ``secrets[0]`` is the current secret; further secrets are still accepted
    (secret rollover), and answers are authenticated with the secret the
    request used.
    """

    group_id: int
    secrets: tuple[bytes, ...]
    encrypt: bool = False
    allowed_keys: frozenset[bytes] | None = None
    max_records: int = DEFAULT_MAX_RECORDS
    max_age: int | None = None  # seconds; None keeps records until evicted

    def __post_init__(self) -> None:
        if not 0 <= self.group_id < 1 << 32:
            raise ValueError(f"group ID {self.group_id} is not a 32-bit unsigned integer")
        if not self.secrets or any(len(s) != SECRET_SIZE for s in self.secrets):
            raise ValueError("a group needs one or more 32-byte secrets")
        if self.max_records < 1:
            raise ValueError("max_records must be at least 1")


class RequestShapes(NamedTuple):
    """What a request to the configured groups can look like, before any HMAC (``request_shapes``)."""

    sizes: tuple[SizeRange, ...]  # its possible lengths, as sorted disjoint ranges
    extended: SizeRange | None  # the range only a plain X1 request has, if one of ``sizes``


def request_shapes(groups: Iterable[GroupConfig]) -> RequestShapes:
    """The datagram lengths a request to ``groups`` can have.

    ``Server.receive_datagram`` drops a datagram of any other length after reading no more than
    its length and group: plain groups take exactly 82 bytes or a plain X1 request (118-358
    bytes, and then only if CLFLG has XR and the block header gives its length), encrypted ones
    98 bytes or more (the protocol sets no upper bound on the envelope's pad, and X1 requests lie
    within).  So a socket filter may drop the others in the kernel (``wgsig/sockfilter.py``).
    """
    configs = list(groups)
    plain = any(not g.encrypt for g in configs)
    encrypted = any(g.encrypt for g in configs)
    sizes: list[SizeRange] = []
    if plain:
        sizes.append((REQUEST_SIZE, REQUEST_SIZE))
    if encrypted:
        sizes.append((_ENCRYPTED_REQUEST_SIZE, None))
        return RequestShapes(tuple(sizes), None)
    if plain:
        sizes.append(_PLAIN_EXTENDED_SIZES)
        return RequestShapes(tuple(sizes), _PLAIN_EXTENDED_SIZES)
    return RequestShapes((), None)


class _Group(GroupTable):
    """A configured group: its record table, and what checking its requests needs.

    One object, not a table beside its settings: with 10,000 groups every
    request reads a different group, and each object it reads is likely a
    cache miss.
    """

    __slots__ = (
        "allowed_keys", "answered", "capped", "config", "encrypt", "envelopes", "max_age", "rejections", "signer",
        "signers", "x1", "xkeys",
    )

    def __init__(self, config: GroupConfig) -> None:
        super().__init__(config.max_records)
        self.config = config
        # One per secret, prepared once: request HMACs, and envelopes of encrypted groups.
        self.signers = tuple(Signer(s) for s in config.secrets)
        self.signer = self.signers[0]  # the current secret: tried first, without the tuple
        self.envelopes = tuple(Envelope(envelope_key(s)) for s in config.secrets) if config.encrypt else ()
        self.encrypt = config.encrypt
        self.allowed_keys = config.allowed_keys
        self.max_age = config.max_age
        self.x1 = GroupExtensions(config.max_records)  # what X1 adds: IPv6 sources, candidates
        self.xkeys = {s: x1.extension_key(s) for s in config.secrets}
        # Counters for the metrics (kept across reloads): requests answered, answers cut to
        # max_answer_bytes, datagrams dropped by reason once the group was known.
        self.answered = 0
        self.capped = 0
        self.rejections: dict[Reason, int] = {}


class GroupCounters(NamedTuple):
    """One group's counters, as the metrics show them."""

    group_id: int
    records: int
    answered: int
    capped: int
    rejections: dict[Reason, int]


class Server:
    """Groups, their tables, and the protocol's validation rules."""

    def __init__(
        self,
        groups: Iterable[GroupConfig],
        window: int = DEFAULT_WINDOW,
        random_bytes: Callable[[int], bytes] | None = None,
        limits: Limits = NO_LIMITS,
        relay: RelayTable | None = None,
        relay_host: str | None = None,
    ) -> None:
        self.window = window
        # The relay (off unless configured): allocations, and the address the peers send to.
        self.relay = relay if relay_host is not None else None
        self.relay_host = relay_host
        self._capabilities = CAPABILITIES | (x1.SV_RELAY if self.relay is not None else 0)
        self._random_bytes = random_bytes
        self._nonces = _RandomPool(random_bytes) if random_bytes is not None else None
        self._groups: dict[int, _Group] = {}
        self._plain_groups = False  # any group not encrypted (configure)
        self.answered = 0
        self.rejected = 0
        self.rejections: dict[Reason, int] = {}  # datagrams dropped before a group was known
        self.dirty = False  # a table changed since the last snapshot
        self.limits = limits
        self.configure(groups)

    def configure(self, groups: Iterable[GroupConfig], limits: Limits | None = None, window: int | None = None) -> None:
        """Apply a new group configuration, keeping the records of kept groups.

        ``limits`` and ``window``, if given, replace the current ones; nothing changes if the
        groups are refused (ValueError).
        """
        new: dict[int, _Group] = {}
        for config in groups:
            if config.group_id in new:
                raise ValueError(f"group {config.group_id} is configured twice")
            if config.encrypt and self._random_bytes is None:
                raise ValueError("encrypted groups need a random source")
            old = self._groups.get(config.group_id)
            group = _Group(config)
            if old is not None:
                group.load(old.slots)
                group.x1 = old.x1
                group.answered, group.capped, group.rejections = old.answered, old.capped, old.rejections
            if config.allowed_keys is not None:
                for peer_id in [r.peer_id for r in group.records()]:
                    if peer_id not in config.allowed_keys:
                        group.remove(peer_id)
                group.x1.keep_only(config.allowed_keys)
            new[config.group_id] = group
        self._groups = new
        self._plain_groups = any(not group.encrypt for group in new.values())  # else no plain X1 to look for
        self.dirty = True
        if self.relay is not None:
            self.relay.keep_groups(new)
        if window is not None:
            self.window = window
        if limits is not None:
            self.limits = limits
        # Unpacked for the per-request path: one attribute read each.
        self._answer_limiter = self.limits.answer_limiter
        self._max_answer_bytes = self.limits.max_answer_bytes
        self._replay_cache = self.limits.replay_cache
        self._replay_limiter = self.limits.replay_limiter
        if self._replay_cache is not None:
            self._replay_cache.set_window(self.window)

    @property
    def groups(self) -> Mapping[int, GroupTable]:
        return dict(self._groups)

    def group_config(self, group_id: int) -> GroupConfig:
        return self._groups[group_id].config

    def record_count(self) -> int:
        return sum(len(g) for g in self._groups.values())

    def request_shapes(self) -> RequestShapes:
        """``request_shapes`` of the groups configured now."""
        return request_shapes(g.config for g in self._groups.values())

    def group_counters(self) -> list[GroupCounters]:
        """Every group's counters, by group ID (safe on another thread: each read is one step)."""
        groups = self._groups  # configure() replaces the dict, never changes it
        return [
            GroupCounters(gid, len(g), g.answered, g.capped, dict(g.rejections)) for gid, g in sorted(groups.items())
        ]

    def receive_datagram(self, data: bytes, source: Endpoint, now: float) -> tuple[list[bytes], Event]:
        """Handle one datagram from ``source`` at UNIX time ``now``."""
        return self._receive(data, source, now, None)

    def receive_datagrams(
        self, datagrams: Iterable[tuple[bytes, Endpoint]], now: float
    ) -> tuple[list[list[bytes]], list[Event]]:
        """Handle datagrams that arrived together: each one's answer and event, in their order.

        Every request is checked and applied first; base-protocol answers are built after the
        whole batch, from the tables as the batch left them.  Requests to one group then share
        its re-authenticated datagrams instead of each re-signing them (the C server signs the
        table at every registration): under load the answer a peer gets is at most one batch
        newer than its own request, never older.  Budgets are charged as each request is taken.
        """
        deferred: list[_Deferred] = []
        receive = self._receive
        answers = []
        events = []
        for data, source in datagrams:
            answer, event = receive(data, source, now, deferred)
            answers.append(answer)
            events.append(event)
        base_answer = self._base_answer
        for later, group, group_id, signer, envelope, kept in deferred:
            later += base_answer(group, group_id, signer, envelope, kept)
        return answers, events

    def _receive(
        self, data: bytes, source: Endpoint, now: float, deferred: list[_Deferred] | None
    ) -> tuple[list[bytes], Event]:
        size = len(data)
        stored: bytes | None = _NOT_LOOKED_UP  # the base protocol's pre-check looks it up
        if size > REQUEST_SIZE and self._plain_groups and self._plain_extended(data):
            # A plain X1 request (CLFLG has XR, the block's length matches): checked whole below.
            group_id = int.from_bytes(data[REQUEST_GROUP], "big")
            group: _Group | None = self._groups[group_id]
            assert group is not None
            clear = data
            signer = self._plain_signer(group, data)
            envelope = None
        elif size == REQUEST_SIZE:
            group_id = int.from_bytes(data[REQUEST_GROUP], "big")
            group = self._groups.get(group_id)
            if group is None:
                return self._reject(Reason.UNKNOWN_GROUP, source)
            if group.encrypt:
                return self._reject(Reason.ENCRYPTION, source, group_id)
            # A label not newer than the one stored for that peer is dropped whether or not the
            # HMAC verifies: skipping the HMAC halves what a flood of exact replays costs.  The
            # datagram is not authenticated, so the event names no peer.
            stored = group.label_of(data[REQUEST_PEER_ID])
            if stored is not None and data[REQUEST_LABEL] <= stored:
                return self._reject(Reason.REPLAY, source, group_id)
            clear = data
            signer = self._plain_signer(group, data)
            envelope = None
        elif size >= _ENCRYPTED_REQUEST_SIZE:
            group_id = scrambled_group(data)
            group = self._groups.get(group_id)
            if group is None:
                return self._reject(Reason.UNKNOWN_GROUP, source)
            if not group.encrypt:
                return self._reject(Reason.ENCRYPTION, source, group_id)
            clear, signer, envelope = self._open(group, data)
            if signer is not None and int.from_bytes(clear[REQUEST_GROUP], "big") != group_id:
                return self._reject(Reason.GROUP_MISMATCH, source, group_id)
        else:
            return self._reject(Reason.SIZE, source)
        if signer is None:
            return self._reject(Reason.BAD_MAC, source, group_id)
        items = None
        if clear[CLFLG_HIGH] & x1.XR_BYTE:
            # X1: the block must be there and authentic, or nothing happens (a stripped block
            # must not pass as a plain request).
            try:
                items = x1.open_request_block(clear, group.xkeys[signer.key])
            except DecodeError:
                return self._reject(Reason.BAD_BLOCK, source, group_id)
        return self._accept(group, group_id, signer, envelope, clear, source, now, items, deferred, stored)

    def _plain_extended(self, data: bytes) -> bool:
        group = self._groups.get(int.from_bytes(data[REQUEST_GROUP], "big"))
        return (
            group is not None and not group.encrypt and bool(data[CLFLG_HIGH] & x1.XR_BYTE)
            and x1.request_extended_size(data) == len(data)
        )

    @staticmethod
    def _plain_signer(group: _Group, clear: bytes) -> Signer | None:
        """The Signer of the group secret that authenticates ``clear``, if any."""
        signed, tag = clear[:REQUEST_SIGNED], clear[REQUEST_TAG]
        if _compare_digest(group.signer.digest(signed), tag):  # Signer.verify, inline: every request
            return group.signer
        for signer in group.signers[1:]:
            if signer.verify(signed, tag):
                return signer
        return None

    @staticmethod
    def _open(group: _Group, data: bytes) -> tuple[bytes, Signer | None, Envelope | None]:
        """Decrypt with each secret's key until one authenticates the payload."""
        clear = b""
        for signer, envelope in zip(group.signers, group.envelopes, strict=True):
            clear = envelope.unseal(data, REQUEST_SIZE)
            if _compare_digest(signer.digest(clear[:REQUEST_SIGNED]), clear[REQUEST_TAG]):  # Signer.verify
                if clear[CLFLG_HIGH] & x1.XR_BYTE:
                    # X1: the block follows in the same keystream; what is left over is pad.
                    size = x1.request_extended_size(envelope.unseal(data, REQUEST_SIZE + x1.BLOCK_HEADER_SIZE))
                    if size is not None and len(data) >= HEADER_SIZE + size:
                        clear = envelope.unseal(data, size)
                return clear, signer, envelope
        return clear, None, None

    def _accept(
        self,
        group: _Group,
        group_id: int,
        signer: Signer,
        envelope: Envelope | None,
        clear: bytes,
        source: Endpoint,
        now: float,
        items: list[x1.Item] | None = None,
        deferred: list[_Deferred] | None = None,
        stored: bytes | None = _NOT_LOOKED_UP,
    ) -> tuple[list[bytes], Event]:
        peer_id = clear[REQUEST_PEER_ID]
        if peer_id == ZERO_KEY:
            return self._reject(Reason.ZERO_ID, source, group_id)
        if group.allowed_keys is not None and peer_id not in group.allowed_keys:
            return self._reject(Reason.NOT_ALLOWED, source, group_id, peer_id)
        label = clear[REQUEST_LABEL]
        if label[0] & 0xC0 != 0x40:  # label.is_valid_label's rule, inline: the length is known
            return self._reject(Reason.BAD_LABEL, source, group_id, peer_id)
        skew = label_seconds(label) - int(now)
        if skew > self.window or -skew > self.window:
            return self._reject(Reason.CLOCK_SKEW, source, group_id, peer_id, skew)
        table: GroupTable = group
        ext = group.x1
        if group.max_age is not None and table.expire(int(now) - group.max_age) + ext.v6only.expire(
            int(now) - group.max_age
        ):
            self.dirty = True
            stored = _NOT_LOOKED_UP  # the peer's record may have expired just now
        if stored is _NOT_LOOKED_UP:
            stored = table.label_of(peer_id)
        v6only = False
        if stored is None and len(ext.v6only):
            stored = ext.v6only.label_of(peer_id)
            v6only = stored is not None
        if stored is not None and label <= stored:
            return self._reject(Reason.REPLAY, source, group_id, peer_id)
        clflg = clear[CLFLG_LOW] & CLFLG_BASE  # the CLFLG rule is wire.CLFLG_UPDATE
        update = CLFLG_UPDATE[stored is not None][clflg]
        capped = False
        limiter = self._answer_limiter
        if update == STORE_NOTHING:
            # Stores no label, so it stays valid for the whole window, at every server of the group
            # and after a restart: the protocol answers its replays too (C vector clflg3_no_update),
            # but only a request tied to its peer (from the address recorded for it) and seen here
            # for the first time gets the whole answer and spends the fresh-request budget; the
            # others (replays, requests a full cache cannot track, any other source) get at most the
            # byte cap from a budget of their own, so that replays spoofed from a victim's address
            # leave its registrations alone.
            cache = self._replay_cache
            first = cache is not None and cache.check(clear[REQUEST_TAG], now) is True
            if not (first and _tied(group, peer_id, source[0], now)):
                capped = self._max_answer_bytes is not None
                limiter = self._replay_limiter
            # Cheap things first: a limited label-less request is dropped before any answer is built.
            if limiter is not None and not limiter.allow(source[0], now):
                return self._reject(Reason.RATE_LIMITED, source, group_id, peer_id)

        xa = clear[CLFLG_HIGH] & x1.XA_BYTE
        evicted = None
        ipv6 = False
        if update == STORE_ENDPOINT:
            ip = source[0]
            if ip.startswith(IPV4_MAPPED):  # unmapped(), inline: the per-request path
                ip = ip[len(IPV4_MAPPED) :]
            try:
                packed = _inet_pton(_AF_INET, ip)  # _inet_aton, inline: the per-request path
            except OSError:
                if not xa:
                    return self._reject(Reason.NOT_IPV4, source, group_id, peer_id)
                # X1 over IPv6: the source is this peer's OBS6; its IPv4 endpoint stays as it is.
                ipv6 = True
                ext.set_observed(peer_id, ip, source[1], now)
                if stored is not None:
                    (ext.v6only if v6only else table).refresh(peer_id, label)
                    change = Change.REFRESHED
                else:
                    change, evicted = ext.v6only.upsert(peer_id, NO_IPV4, label)
                    v6only = True
            else:
                if v6only:
                    ext.v6only.remove(peer_id)  # seen over IPv4 now: into the table everybody sees
                change, evicted = table.upsert(peer_id, encode_endpoint(packed, source[1]), label)
                if evicted is not None:
                    ext.forget(evicted)
                    if self.relay is not None:
                        self.relay.forget_peer(group_id, evicted)
            self.dirty = True
        elif update == STORE_LABEL:
            (ext.v6only if v6only else table).refresh(peer_id, label)
            change = Change.REFRESHED
            self.dirty = True
        else:
            change = Change.UNCHANGED
        stores_label = change is not Change.UNCHANGED
        if items is not None and stores_label:
            # Only label-storing requests change what is announced: their replays are rejected.
            ext.set_announced(peer_id, items, now)
        relays = None
        if self.relay is not None and items is not None and stores_label:
            # RELAY_REQ only in label-storing requests: authentic, and never replayed.
            wanted = x1.relay_requests(x1.request_body(clear))
            if wanted:
                self.relay.request(group_id, peer_id, wanted, _registered_ips(group, peer_id, now), now)
            relays = self._relay_items(group_id, peer_id, now)
        if stores_label and limiter is not None and not limiter.allow(source[0], now):
            # A fresh request is applied whatever its source's budget (it cannot be replayed, and a
            # peer must not stay at an old endpoint because somebody spent its address's budget):
            # only the answer is dropped.
            self._count_rejection(Reason.RATE_LIMITED, group_id)
            return [], Answered(group_id, peer_id, source, clflg, change, evicted, 0, "", ipv6, True)

        if xa:
            requester = None
            if stores_label:
                requester = encode_observed(unmapped(source[0]), source[1], x1.ItemType.OBS)
            answer = ext.answer(table, group_id, signer, group.xkeys[signer.key], requester, now,
                                self._capabilities, relays)
            extension = "x1+block" if items is not None else "x1"
            kept = self._kept(group, len(answer), len(answer[0])) if capped else len(answer)
            if kept < len(answer):
                answer = answer[:kept]
            if envelope is not None:
                answer = self._seal(answer, group_id, envelope)
            sent = sum(map(len, answer))
        else:
            extension = ""
            kept = table.datagram_count()
            if capped:
                kept = self._kept(group, kept, RESPONSE_SIZE)
            sent = kept * (RESPONSE_SIZE + HEADER_SIZE if envelope is not None else RESPONSE_SIZE)
            if deferred is None:
                answer = self._base_answer(table, group_id, signer, envelope, kept)
            else:  # built once the batch is applied (receive_datagrams)
                answer = []
                deferred.append((answer, table, group_id, signer, envelope, kept))
        if limiter is not None:
            limiter.charge(source[0], sent, now)
        self.answered += 1
        group.answered += 1
        return answer, Answered(group_id, peer_id, source, clflg, change, evicted, kept, extension, ipv6)

    def _kept(self, group: _Group, count: int, datagram_size: int) -> int:
        """How many of an answer's ``count`` datagrams the byte cap on replays and untied fetches keeps."""
        if count == 1:
            return 1
        size = datagram_size + (HEADER_SIZE if group.encrypt else 0)  # no blocks: 540 bytes
        kept = capped_datagrams(count, size, self._max_answer_bytes)  # type: ignore[arg-type]
        if kept < count:
            group.capped += 1
        return kept

    def _base_answer(
        self, table: GroupTable, group_id: int, signer: Signer, envelope: Envelope | None, kept: int
    ) -> list[bytes]:
        """A base-protocol answer from ``table`` as it is now: its first ``kept`` datagrams, sealed
        with ``envelope`` for an encrypted group."""
        answer = table.answer(group_id, signer.key, signer)
        if kept < len(answer):
            answer = answer[:kept]
        return answer if envelope is None else self._seal(answer, group_id, envelope)

    def _relay_items(self, group_id: int, peer_id: bytes, now: float) -> dict[bytes, bytes] | None:
        """The requester's RELAY items (relay address and its port), by the peer each one reaches."""
        assert self.relay is not None and self.relay_host is not None
        ports = self.relay.ports_for(group_id, peer_id, now)
        if not ports:
            return None
        host = self.relay_host
        return {peer: x1.encode_item(x1.Item(x1.ItemType.RELAY, host, port)) for peer, port in ports.items()}

    def _seal(self, answer: list[bytes], group_id: int, envelope: Envelope) -> list[bytes]:
        assert self._nonces is not None
        if len(answer) == 1:  # most answers: a group of up to ten peers
            return [envelope.seal(answer[0], group_id, self._nonces.take(NONCE_SIZE))]
        nonces = self._nonces.take(NONCE_SIZE * len(answer))
        return [
            envelope.seal(datagram, group_id, nonces[i : i + NONCE_SIZE])
            for i, datagram in zip(range(0, len(nonces), NONCE_SIZE), answer, strict=True)
        ]

    def _reject(
        self,
        reason: Reason,
        source: Endpoint,
        group: int | None = None,
        peer_id: bytes | None = None,
        skew: int | None = None,
    ) -> tuple[list[bytes], Event]:
        self._count_rejection(reason, group)
        return [], Rejected(reason, source, group, peer_id, skew)

    def _count_rejection(self, reason: Reason, group: int | None) -> None:
        self.rejected += 1
        counts = self.rejections if group is None else self._groups[group].rejections
        counts[reason] = counts.get(reason, 0) + 1


# A base-protocol answer to build once the batch is applied: the list to fill (the one returned for
# the request), its group's table, group ID, Signer, envelope (encrypted groups) and datagram count.
_Deferred = tuple[list[bytes], GroupTable, int, Signer, "Envelope | None", int]


class _RandomPool:
    """Bytes from a random source, read in blocks: one read serves hundreds of nonces."""

    def __init__(self, random_bytes: Callable[[int], bytes], block: int = 4096) -> None:
        self._read = random_bytes
        self._block = block
        self._buffer = b""
        self._offset = 0

    def take(self, size: int) -> bytes:
        start, end = self._offset, self._offset + size
        if end > len(self._buffer):
            self._buffer = self._read(max(self._block, size))
            start, end = 0, size
        self._offset = end
        return self._buffer[start:end]


def _tied(group: _Group, peer_id: bytes, ip: str, now: float) -> bool:
    """Whether ``ip`` is the address recorded for ``peer_id`` in ``group`` (IPv4, or X1's OBS6)."""
    ip = unmapped(ip)
    try:
        packed = _inet_aton(ip)
    except OSError:
        observed = group.x1.obs6.get(peer_id)
        try:
            return (
                observed is not None and observed[1] >= now
                and observed[0][x1.ITEM_ADDRESS] == encode_observed(ip, 0)[x1.ITEM_ADDRESS]  # both scrambled
            )
        except ValueError:  # not an IP address at all
            return False
    endpoint = group.endpoint_of(peer_id)
    return endpoint is not None and endpoint[:4] == encode_endpoint(packed, 0)[:4]


def _registered_ips(group: _Group, peer_id: bytes, now: float) -> tuple[str, ...]:
    """Where ``peer_id`` registered from: the IPv4 address of its record, its OBS6 (X1)."""
    ips = []
    endpoint = group.endpoint_of(peer_id)
    if endpoint is not None and endpoint != NO_IPV4:
        ips.append(socket.inet_ntop(socket.AF_INET, encode_endpoint(endpoint[:4], 0)[:4]))
    observed = group.x1.obs6.get(peer_id)
    if observed is not None and observed[1] >= now:
        ips.extend(item.host for item in x1.decode_items(observed[0]))
    return tuple(ips)


def _inet_aton(ip: str) -> bytes:
    # inet_pton, unlike inet_aton, accepts only dotted quads.
    return socket.inet_pton(socket.AF_INET, ip)
