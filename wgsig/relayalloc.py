"""Which peer pairs get a relay, and on which ports: the server's allocation table (pure).

A peer asks for a relay to another peer with a RELAY_REQ item in a label-storing X1 request (so
the request is authentic and cannot be replayed).  A pair of one group gets an allocation only
once *both* asked for each other within ``lifetime`` seconds: nobody is sent traffic it did not
ask for.  An allocation is two ports of the configured range, one per side: A sends to its port,
the relay forwards out of B's port to B (``wgsig/relayforward.py``).  It records the addresses
each side registered from (IPv4 record, OBS6): the relay accepts datagrams on a side's port from
those addresses only.  It lasts ``lifetime`` seconds after the older of the two sides' latest
requests, so either side withdrawing its consent ends it; at most ``max_per_peer`` allocations
involve one peer and ``max_per_group`` one group.

The time and the randomness come in as arguments; the caller authenticates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

DEFAULT_LIFETIME = 600.0  # seconds an allocation lasts after the older side's latest RELAY_REQ
DEFAULT_MAX_PER_PEER = 4
DEFAULT_MAX_PER_GROUP = 16
EXPIRE_INTERVAL = 1.0  # seconds between two walks over the table


class Allocation(NamedTuple):
    """One relayed pair: ``peer_a`` < ``peer_b`` (bytes order), each with its port and addresses."""

    group: int
    peer_a: bytes
    peer_b: bytes
    port_a: int  # A sends here (and B's datagrams reach A from here)
    port_b: int
    ips_a: tuple[str, ...]  # where A registered from: IPv4 record, OBS6
    ips_b: tuple[str, ...]
    expires: float  # UNIX time


class _Pair(NamedTuple):
    group: int
    a: bytes
    b: bytes


def _pair(group: int, one: bytes, other: bytes) -> _Pair:
    return _Pair(group, one, other) if one < other else _Pair(group, other, one)


class RelayTable:
    """The allocations of every group, and the requests not (yet) answered by the other side."""

    def __init__(
        self,
        ports: tuple[int, int],
        randbelow: Callable[[int], int],
        lifetime: float = DEFAULT_LIFETIME,
        max_per_peer: int = DEFAULT_MAX_PER_PEER,
        max_per_group: int = DEFAULT_MAX_PER_GROUP,
    ) -> None:
        low, high = ports
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"relay port range {low}-{high} is not within 1-65535")
        self.ports = (low, high)
        self._randbelow = randbelow
        self.lifetime = lifetime
        self.max_per_peer = max_per_peer
        self.max_per_group = max_per_group
        self._wants: dict[tuple[int, bytes, bytes], float] = {}  # (group, requester, target) -> time
        self._allocations: dict[_Pair, Allocation] = {}
        self._used: set[int] = set()
        self._ips: dict[tuple[int, bytes], tuple[str, ...]] = {}  # (group, peer) -> where it registered from
        self._next_expire = float("-inf")
        self.refused = 0  # pairs that both asked but hit a limit (or the range is full)
        self.dirty = False  # the allocations changed since the last ``snapshot``

    def __len__(self) -> int:
        return len(self._allocations)

    def request(self, group: int, requester: bytes, targets: Sequence[bytes], ips: tuple[str, ...],
                now: float) -> None:
        """``requester``, registered from ``ips`` (its IPv4 record, its OBS6), asked now for a relay
        to each of ``targets``."""
        self.expire(now)
        if ips:
            self._ips[(group, requester)] = ips
        for target in targets:
            if target == requester:
                continue
            self._wants[(group, requester, target)] = now
            other = self._wants.get((group, target, requester))
            pair = _pair(group, requester, target)
            known = self._allocations.get(pair)
            if other is None:
                continue  # not (yet) asked for by the other side: nothing allocated
            if known is None:
                self._allocate(pair, now, min(now, other))
                continue
            updated = known._replace(
                expires=min(now, other) + self.lifetime,
                ips_a=self._ips.get((group, pair.a), known.ips_a), ips_b=self._ips.get((group, pair.b), known.ips_b),
            )
            if updated != known:
                self._allocations[pair] = updated
                self.dirty = True

    def _allocate(self, pair: _Pair, now: float, older: float) -> None:
        ips_a, ips_b = self._ips.get((pair.group, pair.a), ()), self._ips.get((pair.group, pair.b), ())
        in_group = [p for p in self._allocations if p.group == pair.group]
        per_a = sum(1 for p in in_group if pair.a in (p.a, p.b))
        per_b = sum(1 for p in in_group if pair.b in (p.a, p.b))
        ports = None
        if ips_a and ips_b and len(in_group) < self.max_per_group and max(per_a, per_b) < self.max_per_peer:
            ports = self._free_ports(2)
        if ports is None:
            self.refused += 1
            return
        self._allocations[pair] = Allocation(pair.group, pair.a, pair.b, ports[0], ports[1], ips_a, ips_b,
                                             older + self.lifetime)
        self._used.update(ports)
        self.dirty = True

    def _free_ports(self, count: int) -> tuple[int, ...] | None:
        low, high = self.ports
        size = high - low + 1
        if size - len(self._used) < count:
            return None
        chosen: list[int] = []
        while len(chosen) < count:
            port = low + self._randbelow(size)
            for step in range(size):  # from a random start, the next free one
                candidate = low + (port - low + step) % size
                if candidate not in self._used and candidate not in chosen:
                    chosen.append(candidate)
                    break
        return tuple(chosen)

    def expire(self, now: float) -> int:
        """Forget requests older than ``lifetime`` and allocations past their expiry; how many went.
        At most once per EXPIRE_INTERVAL (it walks every entry; ``ports_for`` checks expiry itself)."""
        if now < self._next_expire:
            return 0
        self._next_expire = now + EXPIRE_INTERVAL
        oldest = now - self.lifetime
        for key in [k for k, t in self._wants.items() if t < oldest]:
            del self._wants[key]
        gone = [p for p, a in self._allocations.items() if a.expires < now]
        for pair in gone:
            allocation = self._allocations.pop(pair)
            self._used.difference_update((allocation.port_a, allocation.port_b))
        if gone:
            self.dirty = True
        if len(self._ips) > len(self._wants) + 2 * len(self._allocations):
            live = {(k[0], k[1]) for k in self._wants} | {(p.group, p.a) for p in self._allocations} \
                | {(p.group, p.b) for p in self._allocations}
            self._ips = {k: v for k, v in self._ips.items() if k in live}
        return len(gone)

    def forget_peer(self, group: int, peer: bytes) -> None:
        """``peer`` left its group (evicted, no longer allowed): its allocations end now."""
        for key in [k for k in self._wants if k[0] == group and peer in (k[1], k[2])]:
            del self._wants[key]
        self._ips.pop((group, peer), None)
        for pair in [p for p in self._allocations if p.group == group and peer in (p.a, p.b)]:
            allocation = self._allocations.pop(pair)
            self._used.difference_update((allocation.port_a, allocation.port_b))
            self.dirty = True

    def keep_groups(self, groups: Iterable[int]) -> None:
        """After a reload: allocations of groups no longer configured end."""
        kept = set(groups)
        for key in [k for k in self._wants if k[0] not in kept]:
            del self._wants[key]
        for peer_key in [k for k in self._ips if k[0] not in kept]:
            del self._ips[peer_key]
        for pair in [p for p in self._allocations if p.group not in kept]:
            allocation = self._allocations.pop(pair)
            self._used.difference_update((allocation.port_a, allocation.port_b))
            self.dirty = True

    def ports_for(self, group: int, requester: bytes, now: float) -> dict[bytes, int]:
        """Per peer that ``requester`` has a live allocation with, the port ``requester`` sends to."""
        result = {}
        for pair, allocation in self._allocations.items():
            if pair.group != group or allocation.expires < now:
                continue
            if pair.a == requester:
                result[pair.b] = allocation.port_a
            elif pair.b == requester:
                result[pair.a] = allocation.port_b
        return result

    def snapshot(self) -> list[Allocation]:
        """Every allocation, by port (what the relay process is handed); clears ``dirty``."""
        self.dirty = False
        return sorted(self._allocations.values(), key=lambda a: a.port_a)
