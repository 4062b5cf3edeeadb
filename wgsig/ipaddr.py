"""IP addresses and prefixes as small tuples, read and written as the standard library's
``ipaddress`` reads and writes them, without importing it.

wgsigc starts every 30 s on every peer, small boards included, and an idle run touches
addresses throughout (its endpoints, its LAN candidates, the records' codecs).  ``import
ipaddress`` (with ``functools`` and ``collections``, which it brings) was a sixth of the
instructions of an idle run beyond the bare interpreter (issue 16).

An address is ``(version, value)``: 4 or 6, and the address as an integer.  A prefix is
``(version, value, length)`` with the host bits zero.  Both are plain tuples: hashable, ordered
(every IPv4 address before every IPv6 one), cheap to build.

The common forms are parsed here; any other text (an IPv6 address with an embedded IPv4 part
or a scope, a netmask instead of a length, and every mistake) is left to ``ipaddress``, loaded
then, so that what is accepted and the message for what is not stay exactly ``ipaddress``'s.
Formatting follows Python 3.11's ``ipaddress`` (an IPv4-mapped address is ``::ffff:102:304``).
``tests/test_ipaddr.py`` checks both directions against ``ipaddress``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Sequence

    Address = tuple[int, int]
    Prefix = tuple[int, int, int]

_BITS = {4: 32, 6: 128}
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")


def _v4(text: str) -> int | None:
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        # ipaddress: 1-3 ASCII digits, no leading zero, at most 255
        if not 0 < len(part) <= 3 or not _DIGITS.issuperset(part) or (part[0] == "0" and len(part) > 1):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def _v6(text: str) -> int | None:
    head, double, tail = text.partition("::")
    high = head.split(":") if head else []
    low = tail.split(":") if tail else []
    if double:
        if "::" in tail or len(high) + len(low) > 7:
            return None
        groups = high + ["0"] * (8 - len(high) - len(low)) + low
    elif len(high) == 8:
        groups = high
    else:
        return None
    value = 0
    for group in groups:
        if not 0 < len(group) <= 4 or not _HEX.issuperset(group):
            return None
        value = value << 16 | int(group, 16)
    return value


def _fast(text: str) -> Address | None:
    if ":" in text:
        if "." in text or "%" in text:
            return None  # an embedded IPv4 part or a scope: ipaddress's
        value = _v6(text)
        return None if value is None else (6, value)
    value = _v4(text)
    return None if value is None else (4, value)


def parse(text: str) -> Address:
    """``ipaddress.ip_address(text)``: ValueError (ipaddress's) for anything else.  A scope
    (``fe80::1%eth0``) is accepted, as ipaddress accepts it, and dropped."""
    found = _fast(text) if isinstance(text, str) else None
    if found is not None:
        return found
    import ipaddress  # the uncommon forms and the errors: ipaddress decides

    parsed = ipaddress.ip_address(text)
    return parsed.version, int(parsed)


def version(text: str) -> int:
    """4 or 6; ValueError for anything that is not an address."""
    return parse(text)[0]


def to_text(addr: Address) -> str:
    """``str(ipaddress.ip_address(...))``: dotted IPv4, compressed lower-case IPv6."""
    version, value = addr
    if version == 4:
        return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"
    groups = [f"{value >> shift & 0xFFFF:x}" for shift in range(112, -1, -16)]
    # ipaddress's _compress_hextets: the first longest run of two or more zero groups becomes "::"
    best, best_length, start, length = -1, 0, -1, 0
    for index, group in enumerate(groups):
        if group == "0":
            length += 1
            if start == -1:
                start = index
            if length > best_length:
                best, best_length = start, length
        else:
            start, length = -1, 0
    if best_length > 1:
        end = best + best_length
        groups[best:end] = [""]
        if end == 8:
            groups.append("")
        if best == 0:
            groups.insert(0, "")
    return ":".join(groups)


def canonical(host: str) -> str:
    """``str(ipaddress.ip_address(host))`` (a scope kept, as ipaddress keeps it)."""
    if "%" in host:
        import ipaddress

        return str(ipaddress.ip_address(host))
    return to_text(parse(host))


def packed(addr: Address) -> bytes:
    """4 or 16 bytes, network order (``ipaddress``'s ``.packed``)."""
    return addr[1].to_bytes(4 if addr[0] == 4 else 16, "big")


def unpacked(data: bytes) -> Address:
    """The address of 4 or 16 bytes; ValueError for another length."""
    if len(data) == 4:
        return 4, int.from_bytes(data, "big")
    if len(data) == 16:
        return 6, int.from_bytes(data, "big")
    raise ValueError(f"{len(data)} bytes are not an IP address")


def parse_prefix(text: str, strict: bool = True) -> Prefix:
    """``ipaddress.ip_network(text, strict)``: "ADDRESS/LENGTH" or an address alone; host bits
    set are a ValueError when strict, cleared otherwise."""
    host, slash, length_text = text.partition("/") if isinstance(text, str) else ("", "", "")
    found = _fast(host)
    if found is not None and (not slash or (length_text.isdigit() and length_text.isascii()
                                            and (length_text == "0" or length_text[0] != "0"))):
        length = int(length_text) if slash else _BITS[found[0]]
        if length <= _BITS[found[0]]:
            network = prefix_of(found, length)
            if not strict or network[1] == found[1]:
                return network
    import ipaddress  # netmasks, host bits when strict, mistakes: ipaddress decides (and says why)

    parsed = ipaddress.ip_network(text, strict=strict)
    return parsed.version, int(parsed.network_address), parsed.prefixlen


def prefix_of(addr: Address, length: int) -> Prefix:
    """The prefix of ``length`` bits holding ``address`` (``ip_network(f"{ip}/{length}", strict=False)``)."""
    version, value = addr
    host_bits = _BITS[version] - length
    return version, value >> host_bits << host_bits, length


def prefix_to_text(network: Prefix) -> str:
    """``str(ipaddress.ip_network(...))``: "ADDRESS/LENGTH"."""
    return f"{to_text((network[0], network[1]))}/{network[2]}"


def within(addr: Address, network: Prefix) -> bool:
    """``address in network``; False for the other version (where ipaddress would say False too)."""
    version, value = addr
    if version != network[0]:
        return False
    host_bits = _BITS[version] - network[2]
    return value >> host_bits == network[1] >> host_bits


def within_any(addr: Address, networks: Sequence[Prefix]) -> bool:
    return any(within(addr, network) for network in networks)


# ipaddress's properties (Python 3.11: an IPv4-mapped IPv6 address is judged as IPv6)
_LOOPBACK = ((4, 0x7F000000, 8), (6, 1, 128))
_LINK_LOCAL = ((4, 0xA9FE0000, 16), (6, 0xFE80 << 112, 10))
_MULTICAST = ((4, 0xE0000000, 4), (6, 0xFF << 120, 8))
_RESERVED = ((4, 0xF0000000, 4), *(
    (6, int(start, 16) << 112, length) for start, length in (
        ("0", 8), ("100", 8), ("200", 7), ("400", 6), ("800", 5), ("1000", 4), ("4000", 3), ("6000", 3),
        ("8000", 3), ("A000", 3), ("C000", 3), ("E000", 4), ("F000", 5), ("F800", 6), ("FE00", 9))))


def is_unspecified(addr: Address) -> bool:
    return addr[1] == 0


def is_loopback(addr: Address) -> bool:
    return within_any(addr, _LOOPBACK)


def is_link_local(addr: Address) -> bool:
    return within_any(addr, _LINK_LOCAL)


def is_multicast(addr: Address) -> bool:
    return within_any(addr, _MULTICAST)


def is_reserved(addr: Address) -> bool:
    return within_any(addr, _RESERVED)
