"""The server's X1 state of one group, beside its table, and the X1 view of the group.

A group's ``GroupTable`` stays what C clients and X1-unaware clients get, byte for byte.  What
X1 adds lives here: the IPv6 source each peer registered from (OBS6), the items each peer
announced (kept encoded, ready to copy into answer blocks), and the peers seen only over IPv6
(a table of their own, records with IPv4 endpoint 0.0.0.0:0, shown only in X1 answers).

Pure: the time comes in as an argument; the caller authenticates and decides what is stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from wgsig import x1
from wgsig.signer import Signer
from wgsig.table import GroupTable
from wgsig.wire import EMPTY_RECORD, RECORD_PEER_ID, RECORDS_PER_DATAGRAM, RECORDS_SIZE, encode_endpoint, response_tail

ANNOUNCE_LIFETIME = 300.0  # seconds an announcement or an IPv6 source lasts without renewal
SLOT_BUDGET = 60  # answer block bytes per record: OBS6 21 + HOST6 21 + two HOST4 of 9
NO_IPV4 = encode_endpoint(bytes(4), 0)  # the endpoint bytes of a peer seen only over IPv6: 0.0.0.0:0
_ANNOUNCED = frozenset(int(t) for t in x1.ANNOUNCED_TYPES)
CAPABILITIES = x1.SV_XR_OK | x1.SV_V6


def encode_observed(host: str, port: int, kind: int = x1.ItemType.OBS6) -> bytes:
    return x1.encode_item(x1.Item(kind, host, port))


def announced_bytes(items: Sequence[x1.Item]) -> bytes:
    """The items a peer may announce (HOST, MAPPED), encoded; others (OBS*) are dropped."""
    return b"".join(x1.encode_item(i) for i in items if i.type in _ANNOUNCED)


class GroupExtensions:
    """OBS6 sources, announcements and IPv6-only records of one group."""

    __slots__ = ("announced", "obs6", "v6only")

    def __init__(self, max_records: int) -> None:
        self.obs6: dict[bytes, tuple[bytes, float]] = {}  # peer ID -> (encoded OBS6 item, expiry)
        self.announced: dict[bytes, tuple[bytes, float]] = {}  # peer ID -> (encoded items, expiry)
        self.v6only = GroupTable(max_records)

    def set_observed(self, peer_id: bytes, host: str, port: int, now: float) -> None:
        self.obs6[peer_id] = (encode_observed(host, port), now + ANNOUNCE_LIFETIME)

    def set_announced(self, peer_id: bytes, items: Sequence[x1.Item], now: float) -> None:
        self.announced[peer_id] = (announced_bytes(items), now + ANNOUNCE_LIFETIME)

    def forget(self, peer_id: bytes) -> None:
        self.obs6.pop(peer_id, None)
        self.announced.pop(peer_id, None)
        if self.v6only.label_of(peer_id) is not None:
            self.v6only.remove(peer_id)

    def keep_only(self, allowed: frozenset[bytes]) -> None:
        for peer_id in [p for p in (*self.obs6, *self.announced) if p not in allowed]:
            self.obs6.pop(peer_id, None)
            self.announced.pop(peer_id, None)
        for record in list(self.v6only.records()):
            if record.peer_id not in allowed:
                self.v6only.remove(record.peer_id)

    def entries_of(self, peer_id: bytes, now: float, relay: bytes | None = None) -> list[bytes]:
        """The encoded items shown for one peer: OBS6 first, then ``relay`` (the requester's RELAY
        item for this peer, if any), then its announcements in its order (a HOST6 equal to OBS6
        adds nothing), as many as fit the slot budget with their SLOT bytes."""
        observed = self.obs6.get(peer_id)
        if observed is not None and observed[1] < now:
            del self.obs6[peer_id]
            observed = None
        announced = self.announced.get(peer_id)
        if announced is not None and announced[1] < now:
            del self.announced[peer_id]
            announced = None
        candidates = [observed[0]] if observed is not None else []
        if relay is not None:
            candidates.append(relay)
        if announced is not None:
            for item in _items(announced[0]):
                address = item[x1.ITEM_ADDRESS]
                if observed is not None and item[0] == x1.ItemType.HOST6 and address == observed[0][x1.ITEM_ADDRESS]:
                    continue
                candidates.append(item)
        kept, used = [], 0
        for item in candidates:
            if used + 1 + len(item) <= SLOT_BUDGET:
                kept.append(item)
                used += 1 + len(item)
        return kept

    def answer(
        self,
        table: GroupTable,
        group: int,
        signer: Signer,
        xkey: bytes,
        requester: bytes | None,
        now: float,
        capabilities: int = CAPABILITIES,
        relays: Mapping[bytes, bytes] | None = None,
    ) -> list[bytes]:
        """The X1 view: every record (the IPv6-only ones after the others) with SVEXT set; with
        ``requester`` (the encoded OBS item of this request's source) answer blocks too.

        Blocks go only to label-storing requests (the caller passes ``requester=None`` otherwise);
        ``relays`` are the requester's RELAY items, by peer ID (``wgsig/relayalloc.py``).
        """
        relays = relays or {}
        slots = [s for s in table.slots] + [s for s in self.v6only.slots if s != EMPTY_RECORD]
        count = max(1, -(-len(slots) // RECORDS_PER_DATAGRAM))
        datagrams = []
        for index in range(count):
            chunk = slots[index * RECORDS_PER_DATAGRAM : (index + 1) * RECORDS_PER_DATAGRAM]
            records = b"".join(chunk).ljust(RECORDS_SIZE, b"\0")
            body = b""
            if requester is not None:
                if index == 0:
                    body = bytes((x1.REQUESTER_SLOT,)) + requester
                for slot, data in enumerate(chunk):
                    if data == EMPTY_RECORD:
                        continue
                    peer = bytes(data[RECORD_PEER_ID])
                    items = self.entries_of(peer, now, relays.get(peer))
                    body += b"".join(bytes((slot,)) + item for item in items)
            svext = capabilities | (x1.SV_XB if body else 0)
            signed = records + response_tail(count - 1, group, svext)
            datagram = signed + signer.digest(signed)
            datagrams.append(x1.encode_answer_block_raw(datagram, body, xkey) if body else datagram)
        return datagrams


def _items(data: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset < len(data):
        size = x1.ITEM_HEADER_SIZE + data[offset + 1]
        out.append(data[offset : offset + size])
        offset += size
    return out

