"""The allocation file wgsigd hands the relay process: its format (pure).

wgsigd decides the allocations (``wgsig/relayalloc.py``) and writes them, atomically, to
``relay-allocations`` in its state directory; the relay process (``wgsigd relay``) reads the
file again whenever it changes.  Text, one allocation a line, so an administrator can read it:

    wgsig-relay-allocations 1
    GROUP PORT_A IPS_A PORT_B IPS_B EXPIRES

IPS are the comma-separated addresses a side registered from, EXPIRES UNIX seconds.  Peer IDs
are not written: the relay needs ports and addresses only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import NamedTuple

from wgsig.relayalloc import Allocation

FILE_NAME = "relay-allocations"
HEADER = "wgsig-relay-allocations 1"


class RelayFileError(ValueError):
    """The file is not an allocation file (one line: what is wrong, where)."""


class Lease(NamedTuple):
    """One allocation as the relay process sees it."""

    group: int
    port_a: int
    ips_a: frozenset[str]
    port_b: int
    ips_b: frozenset[str]
    expires: float


def encode(allocations: Sequence[Allocation]) -> bytes:
    lines = [HEADER]
    for a in allocations:
        lines.append(f"{a.group} {a.port_a} {','.join(a.ips_a)} {a.port_b} {','.join(a.ips_b)} {a.expires:.3f}")
    return ("\n".join(lines) + "\n").encode()


def decode(data: bytes) -> list[Lease]:
    """The leases of a file's content; RelayFileError (with the line number) if it is malformed."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise RelayFileError("not ASCII text") from None
    lines = text.splitlines()
    if not lines or lines[0] != HEADER:
        raise RelayFileError(f"first line is not {HEADER!r}")
    leases = []
    ports: set[int] = set()
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if len(fields) != 6:
            raise RelayFileError(f"line {number}: {len(fields)} fields, expected 6")
        try:
            group = int(fields[0])
            port_a, port_b = int(fields[1]), int(fields[3])
            expires = float(fields[5])
            ips_a, ips_b = _ips(fields[2]), _ips(fields[4])
        except ValueError as error:
            raise RelayFileError(f"line {number}: {error}") from None
        if not (0 <= group < 1 << 32 and 0 < port_a < 65536 and 0 < port_b < 65536 and port_a != port_b):
            raise RelayFileError(f"line {number}: group or port out of range")
        if port_a in ports or port_b in ports:
            raise RelayFileError(f"line {number}: a port of an earlier line again")
        ports.update((port_a, port_b))
        leases.append(Lease(group, port_a, ips_a, port_b, ips_b, expires))
    return leases


def _ips(field: str) -> frozenset[str]:
    return frozenset(str(ipaddress.ip_address(ip)) for ip in field.split(","))
