"""The relay's forwarding rules: which datagram goes where, or nowhere (pure; ``now`` passed in).

For each lease (``wgsig/relayfile.py``) the relay holds two ports.  A datagram that arrives at A's
port is forwarded out of B's port to B's *latched* source when, and only when:

1. the lease has not expired;
2. it looks like WireGuard (``wireguard_shaped``): type 1 with 148 bytes, 2 with 92, 3 with 64,
   4 with 32 + 16k; bytes 1-3 zero.  Content is never looked at further: WireGuard's own crypto
   protects it, and the relay cannot tell a peer's datagram from a forged one;
3. it comes from an address A registered from (its IPv4 record, its OBS6): any port, since a NAT
   that maps each destination to a new port shows the relay a port nobody else saw.  It then
   becomes A's latched source;
4. B has a latched source, from a datagram of its own within ``idle`` seconds (so nothing is sent
   to a NAT mapping that may since belong to somebody else);
5. the lease's byte budget and the relay's global one allow it (token buckets).

Everything else is dropped and counted by reason.  A datagram is forwarded unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from wgsig.relayfile import Lease

DEFAULT_RATE = 2_000_000.0  # bytes a second per lease (both directions)
DEFAULT_BURST = 262_144
DEFAULT_GLOBAL_RATE = 50_000_000.0  # bytes a second through the whole relay
DEFAULT_GLOBAL_BURST = 4_194_304
DEFAULT_IDLE = 180.0  # seconds a latched source is kept without a datagram from it

_SIZES = {1: 148, 2: 92, 3: 64}
_MAPPED = "::ffff:"

DROP_REASONS = ("expired", "shape", "source", "no-peer", "rate", "global-rate", "unknown-port")


def wireguard_shaped(data: bytes | bytearray | memoryview, size: int) -> bool:
    """Whether the first ``size`` bytes of ``data`` have the shape of a WireGuard message."""
    if size < 32 or data[1] or data[2] or data[3]:
        return False
    kind = data[0]
    if kind == 4:
        return (size - 32) % 16 == 0
    return _SIZES.get(kind) == size


class Bucket:
    """A token bucket of bytes: ``rate`` a second, at most ``burst`` at once."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), now

    def take(self, size: int, now: float) -> bool:
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens < size:
            self.tokens = tokens
            return False
        self.tokens = tokens - size
        return True


class _Side:
    """One port of a lease: who may send to it, whom it last heard from, the other side."""

    __slots__ = ("bucket", "expires", "heard", "ips", "latched", "other", "port")

    def __init__(self, port: int, ips: frozenset[str], expires: float, bucket: Bucket) -> None:
        self.port = port
        self.ips = ips
        self.expires = expires
        self.bucket = bucket
        self.latched: tuple[str, int] | None = None
        self.heard = 0.0
        self.other: _Side = self


class Forwarder:
    """Every lease's two sides, and the counters."""

    def __init__(self, rate: float = DEFAULT_RATE, burst: float = DEFAULT_BURST,
                 global_rate: float = DEFAULT_GLOBAL_RATE, global_burst: float = DEFAULT_GLOBAL_BURST,
                 idle: float = DEFAULT_IDLE, now: float = 0.0) -> None:
        self.rate, self.burst, self.idle = rate, burst, idle
        self.bucket = Bucket(global_rate, global_burst, now)
        self._sides: dict[int, _Side] = {}
        self.forwarded = 0
        self.forwarded_bytes = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

    @property
    def ports(self) -> set[int]:
        return set(self._sides)

    def install(self, leases: Iterable[Lease], now: float) -> tuple[set[int], set[int]]:
        """Replace the leases; returns (ports to open, ports to close).  A lease kept with the same
        two ports keeps its latched sources and its budget."""
        before = self._sides
        sides: dict[int, _Side] = {}
        for lease in leases:
            if lease.expires < now:
                continue
            old_a, old_b = before.get(lease.port_a), before.get(lease.port_b)
            if old_a is not None and old_b is not None and old_a.other is old_b:
                a, b = old_a, old_b
                a.ips, b.ips, a.expires, b.expires = lease.ips_a, lease.ips_b, lease.expires, lease.expires
                for side in (a, b):
                    if side.latched is not None and _unmapped(side.latched[0]) not in side.ips:
                        side.latched = None  # it registered from elsewhere since
            else:
                bucket = Bucket(self.rate, self.burst, now)
                a = _Side(lease.port_a, lease.ips_a, lease.expires, bucket)
                b = _Side(lease.port_b, lease.ips_b, lease.expires, bucket)
                a.other, b.other = b, a
            sides[a.port], sides[b.port] = a, b
        self._sides = sides
        return set(sides) - set(before), set(before) - set(sides)

    def forward(self, port: int, data: bytes | bytearray | memoryview, size: int, source: tuple[str, int],
                now: float) -> tuple[int, tuple[str, int]] | None:
        """Where the datagram of ``size`` bytes that arrived at ``port`` from ``source`` goes:
        (the port to send it from, the destination), or None to drop it."""
        side = self._sides.get(port)
        dropped = self.dropped
        if side is None:
            dropped["unknown-port"] += 1
            return None
        if side.expires < now:
            dropped["expired"] += 1
            return None
        if not wireguard_shaped(data, size):
            dropped["shape"] += 1
            return None
        host = source[0]
        if host not in side.ips and _unmapped(host) not in side.ips:
            dropped["source"] += 1
            return None
        side.latched = source
        side.heard = now
        other = side.other
        destination = other.latched
        if destination is None or now - other.heard > self.idle:
            dropped["no-peer"] += 1
            return None
        if not side.bucket.take(size, now):
            dropped["rate"] += 1
            return None
        if not self.bucket.take(size, now):
            dropped["global-rate"] += 1
            return None
        self.forwarded += 1
        self.forwarded_bytes += size
        return other.port, destination

    def expire(self, now: float) -> set[int]:
        """Drop leases past their expiry (the daemon may be gone); returns the ports to close."""
        gone = {p for p, s in self._sides.items() if s.expires < now}
        for port in gone:
            del self._sides[port]
        return gone


def _unmapped(host: str) -> str:
    return host[len(_MAPPED):] if host.startswith(_MAPPED) else host
