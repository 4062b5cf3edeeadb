"""wgsig.ipaddr against the standard library's ipaddress (pure code, no fakes): the same
addresses accepted with the same values, the same text written, the same prefixes and the same
verdicts on loopback, link-local, multicast, reserved and unspecified; and the same ValueError
for everything else (ipaddress itself decides those)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from wgsig import ipaddr


def _number(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _from_groups(groups: list[int]) -> int:
    return sum(g << (112 - 16 * i) for i, g in enumerate(groups))


# Named functions, not lambdas (hypothesis reads a lambda's source to describe it, slowly); values
# from bytes (Debian's hypothesis draws a 128-bit st.integers() slowly too).
V4 = st.binary(min_size=4, max_size=4).map(_number)
V6 = st.binary(min_size=16, max_size=16).map(_number)
# IPv6 values with long zero runs, where "::" placement is decided
SPARSE6 = st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xDB8]), min_size=8, max_size=8).map(_from_groups)


def _v4(value: int) -> tuple[int, int]:
    return 4, value


def _v6(value: int) -> tuple[int, int]:
    return 6, value


def _text4(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def _text6(value: int) -> str:
    return str(ipaddress.IPv6Address(value))


def _exploded_upper(value: int) -> str:
    return ipaddress.IPv6Address(value).exploded.upper()


def _exploded(value: int) -> str:
    return ipaddress.IPv6Address(value).exploded


ADDRESSES = st.one_of(V4.map(_v4), V6.map(_v6), SPARSE6.map(_v6))
JUNK = st.text(alphabet="0123456789abcdefABCDEF:.%/x -", max_size=45)


def stdlib(text: str) -> tuple[int, int] | None:
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return None
    return parsed.version, int(parsed)


@given(st.one_of(V4.map(_text4), V6.map(_text6), SPARSE6.map(_text6), V6.map(_exploded_upper),
                 SPARSE6.map(_exploded)))
def test_written_addresses_read_back_as_ipaddress_reads_them(text: str) -> None:
    assert ipaddr.parse(text) == stdlib(text)


@given(JUNK)
@example("1.2.3.04")
@example("1:2:3:4:5:6:7::")
@example("::1:2:3:4:5:6:7")
@example("1:2:3:4:5:6:7:8::")
@example(":1::")
@example("1:::2")
@example("12345::")
@example("::ffff:1.2.3.4")
@example("fe80::1%eth0")
@example("256.1.1.1")
@example("")
def test_any_text_is_accepted_exactly_when_ipaddress_accepts_it(text: str) -> None:
    expected = stdlib(text)
    if expected is None:
        with pytest.raises(ValueError) as raised:
            ipaddr.parse(text)
        with pytest.raises(ValueError) as theirs:
            ipaddress.ip_address(text)
        assert str(raised.value) == str(theirs.value)  # the message too
    else:
        assert ipaddr.parse(text) == expected
    fast = ipaddr._fast(text)
    assert fast is None or fast == expected, "the fast path never accepts what ipaddress refuses"


@given(ADDRESSES)
def test_text_and_bytes_are_ipaddresss(addr: tuple[int, int]) -> None:
    theirs = ipaddress.ip_address(addr[1]) if addr[0] == 4 else ipaddress.IPv6Address(addr[1])
    assert ipaddr.to_text(addr) == str(theirs)
    assert ipaddr.canonical(str(theirs).upper()) == str(theirs)
    assert ipaddr.packed(addr) == theirs.packed
    assert ipaddr.unpacked(theirs.packed) == addr
    assert ipaddr.is_loopback(addr) == theirs.is_loopback
    assert ipaddr.is_link_local(addr) == theirs.is_link_local
    assert ipaddr.is_multicast(addr) == theirs.is_multicast
    assert ipaddr.is_reserved(addr) == theirs.is_reserved
    assert ipaddr.is_unspecified(addr) == theirs.is_unspecified


@pytest.mark.parametrize("text", ["127.0.0.1", "169.254.1.1", "224.0.0.1", "240.0.0.1", "255.255.255.255", "0.0.0.0",
                                  "::", "::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "100::1", "2001:db8::1"])
def test_the_special_ranges_are_ipaddresss(text: str) -> None:
    addr, theirs = ipaddr.parse(text), ipaddress.ip_address(text)
    assert (ipaddr.is_loopback(addr), ipaddr.is_link_local(addr), ipaddr.is_multicast(addr),
            ipaddr.is_reserved(addr), ipaddr.is_unspecified(addr)) == (
        theirs.is_loopback, theirs.is_link_local, theirs.is_multicast, theirs.is_reserved, theirs.is_unspecified)


def test_bytes_of_another_length_are_refused() -> None:
    with pytest.raises(ValueError, match="5 bytes are not an IP address"):
        ipaddr.unpacked(b"12345")


def test_a_scope_is_kept_in_text_and_dropped_in_the_value() -> None:
    assert ipaddr.canonical("FE80::1%eth0") == "fe80::1%eth0"
    assert ipaddr.parse("fe80::1%eth0") == (6, int(ipaddress.ip_address("fe80::1")))


@given(ADDRESSES, st.integers(0, 128), st.booleans())
@example((4, 0x0A000001), 24, True)
@example((4, 0x0A000001), 32, True)
@example((6, 1), 0, False)
def test_prefixes_are_ipaddresss(addr: tuple[int, int], length: int, strict: bool) -> None:
    bits = 32 if addr[0] == 4 else 128
    length = min(length, bits)
    text = f"{ipaddr.to_text(addr)}/{length}"
    try:
        theirs = ipaddress.ip_network(text, strict=strict)
    except ValueError as error:
        with pytest.raises(ValueError, match=str(error)):
            ipaddr.parse_prefix(text, strict=strict)
        return
    mine = ipaddr.parse_prefix(text, strict=strict)
    assert mine == (theirs.version, int(theirs.network_address), theirs.prefixlen)
    assert ipaddr.prefix_to_text(mine) == str(theirs)
    assert ipaddr.prefix_of(addr, length) == mine if not strict else True
    other = (addr[0], addr[1] ^ (1 << (bits - 1)))  # the top bit flipped
    for probe in (addr, other):
        theirs_probe = ipaddress.ip_address(probe[1]) if probe[0] == 4 else ipaddress.IPv6Address(probe[1])
        assert ipaddr.within(probe, mine) == (theirs_probe in theirs)


@pytest.mark.parametrize("text", ["10.0.0.0/255.0.0.0", "10.0.0.0/08", "10.0.0.0/33", "10.0.0.0/", "fe80::/x",
                                  "10.0.0.1/8", "2001:db8::1/32", "10.0.0.0", "::/0", "nonsense"])
def test_uncommon_prefix_forms_and_mistakes_are_ipaddresss(text: str) -> None:
    for strict in (True, False):
        try:
            theirs = ipaddress.ip_network(text, strict=strict)
        except ValueError as error:
            with pytest.raises(ValueError) as raised:
                ipaddr.parse_prefix(text, strict=strict)
            assert str(raised.value) == str(error)
            continue
        assert ipaddr.parse_prefix(text, strict=strict) == (theirs.version, int(theirs.network_address),
                                                            theirs.prefixlen)


def test_other_versions_are_never_within() -> None:
    assert not ipaddr.within(ipaddr.parse("10.0.0.1"), ipaddr.parse_prefix("::/0"))
    assert not ipaddr.within(ipaddr.parse("::a00:1"), ipaddr.parse_prefix("0.0.0.0/0"))
    assert sorted([ipaddr.parse("::1"), ipaddr.parse("10.0.0.1")])[0][0] == 4
