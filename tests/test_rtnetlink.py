"""The rtnetlink codec (wgsig/rtnetlink.py): byte vectors written from linux/rtnetlink.h, and the
real kernel's dumps read beside pyroute2's (the reference reader this codec replaced)."""

from __future__ import annotations

import socket
import sys

import pytest

from wgsig import rtnetlink
from wgsig.rtnetlink import AddressRecord, LinkRecord, RouteRecord, RtnetlinkError

little = pytest.mark.skipif(sys.byteorder != "little", reason="vectors are written in little-endian host order")

# nlmsghdr: length 0x30, RTM_NEWADDR (20), NLM_F_MULTI, sequence 2, port 77
# ifaddrmsg: AF_INET, /24, flags 0x80 (IFA_F_PERMANENT), scope 0 (universe), index 4
# IFA_ADDRESS 192.0.2.255 (a point-to-point far end), IFA_LOCAL 192.0.2.2, IFA_FLAGS 0x280 (32 bits)
ADDR4 = bytes.fromhex(
    "30000000" "1400" "0200" "02000000" "4d000000"
    "02" "18" "80" "00" "04000000"
    "0800" "0100" "c00002ff"
    "0800" "0200" "c0000202"
    "0800" "0800" "80020000"
)
# ifaddrmsg AF_INET6 /64, header flags 0x01 (temporary), no IFA_FLAGS: the header's 8 bits count
ADDR6 = bytes.fromhex(
    "2c000000" "1400" "0200" "02000000" "4d000000"
    "0a" "40" "01" "00" "05000000"
    "1400" "0100" "20010db8000000000000000000000002"
)
# RTM_NEWLINK: ifinfomsg AF_UNSPEC, type 65534 (ARPHRD_NONE), index 7, flags 0x91 (UP|POINTOPOINT|NOARP), change 0
# IFLA_IFNAME "wg0\0", IFLA_LINKINFO (nested flag 0x8000 set) { IFLA_INFO_KIND "wireguard\0" (14 bytes + 2 pad) }
LINK = bytes.fromhex(
    "3c000000" "1000" "0200" "01000000" "4d000000"
    "00" "00" "feff" "07000000" "91000000" "00000000"
    "0800" "0300" "77673000"
    "1400" "1280" "0e00" "0100" "77697265677561726400" "0000"
)
# RTM_NEWROUTE: rtmsg AF_INET6, dst_len 0, table 254, protocol 3 (boot), scope 0, type 1 (unicast); RTA_TABLE 254
ROUTE = bytes.fromhex(
    "24000000" "1800" "0200" "03000000" "4d000000"
    "0a" "00" "00" "00" "fe" "03" "00" "01" "00000000"
    "0800" "0f00" "fe000000"
)
DONE = bytes.fromhex("14000000" "0300" "0200" "02000000" "4d000000" "00000000")
ERROR_EPERM = bytes.fromhex("24000000" "0200" "0000" "02000000" "4d000000" "ffffffff") + bytes(16)


@little
def test_dump_request_bytes() -> None:
    # length 20, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP (0x301), sequence 9, port 0; ifaddrmsg all zero
    assert rtnetlink.dump_request(rtnetlink.RTM_GETADDR, 9) == bytes.fromhex(
        "18000000" "1600" "0103" "09000000" "00000000" "0000000000000000")
    # RTM_GETROUTE for AF_INET6: a 12-byte rtmsg whose family is 10
    assert rtnetlink.dump_request(rtnetlink.RTM_GETROUTE, 3, socket.AF_INET6) == bytes.fromhex(
        "1c000000" "1a00" "0103" "03000000" "00000000" "0a00000000000000" "00000000")
    assert len(rtnetlink.dump_request(rtnetlink.RTM_GETLINK, 1)) == 16 + 16


@little
def test_one_buffer_of_several_messages_until_done() -> None:
    found = list(rtnetlink.messages(ADDR4 + ADDR6 + DONE))
    assert [(kind, seq) for kind, seq, _ in found] == [(20, 2), (20, 2), (rtnetlink.NLMSG_DONE, 2)]
    assert rtnetlink.address(found[0][2]) == AddressRecord(4, socket.AF_INET, "192.0.2.2", 24, 0, 0x280)
    # no IFA_FLAGS: the 8-bit header flags (here IFA_F_TEMPORARY) are what the address carries
    assert rtnetlink.address(found[1][2]) == AddressRecord(5, socket.AF_INET6, "2001:db8::2", 64, 0, 0x01)


@little
def test_link_with_nested_kind_and_route() -> None:
    (_, _, link_body), = rtnetlink.messages(LINK)
    assert rtnetlink.link(link_body) == LinkRecord(7, "wg0", 0x91, "wireguard")
    (_, _, route_body), = rtnetlink.messages(ROUTE)
    record = rtnetlink.route(route_body)
    assert record == RouteRecord(socket.AF_INET6, 0, 254, rtnetlink.RTN_UNICAST)
    assert rtnetlink.is_default_route(record)
    assert not rtnetlink.is_default_route(RouteRecord(socket.AF_INET6, 0, 254, 7))  # unreachable default
    assert not rtnetlink.is_default_route(RouteRecord(socket.AF_INET6, 64, 254, 1))
    assert not rtnetlink.is_default_route(RouteRecord(socket.AF_INET6, 0, 100, 1))  # another table


@little
def test_the_kernels_error_and_truncations_are_one_error_type() -> None:
    with pytest.raises(RtnetlinkError) as refused:
        list(rtnetlink.messages(ERROR_EPERM))
    assert refused.value.errno == 1
    for broken in (ADDR4[:-3], ADDR4 + b"\x01\x02", LINK[:20] + LINK[24:]):
        with pytest.raises(RtnetlinkError):
            for _kind, _seq, body in rtnetlink.messages(broken):
                rtnetlink.address(body) if _kind == 20 else rtnetlink.link(body)
    with pytest.raises(RtnetlinkError):
        rtnetlink.address(b"\x02\x18")  # shorter than ifaddrmsg
    # an acknowledgement (NLMSG_ERROR with errno 0) is not an error and yields nothing
    assert list(rtnetlink.messages(ERROR_EPERM[:16] + bytes(20))) == []


def test_every_malformed_buffer_raises_only_the_codec_error() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")

    @hypothesis.given(strategies.binary(max_size=200))
    @hypothesis.settings(max_examples=400, deadline=None)
    def check(data: bytes) -> None:
        try:
            for kind, _seq, body in rtnetlink.messages(data):
                rtnetlink.link(body) if kind == 16 else rtnetlink.route(body) if kind == 24 else rtnetlink.address(body)
        except RtnetlinkError:
            pass

    check()


def test_real_kernel_dumps_match_pyroute2() -> None:
    iproute = pytest.importorskip("pyroute2").IPRoute
    from wgsigc.localaddrs import _dump

    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        links = [rtnetlink.link(body) for body in _dump(sock, rtnetlink.RTM_GETLINK, 1)]
        addresses = [a for body in _dump(sock, rtnetlink.RTM_GETADDR, 2) if (a := rtnetlink.address(body))]
        routes = [rtnetlink.route(body) for body in _dump(sock, rtnetlink.RTM_GETROUTE, 3, socket.AF_INET6)]
    with iproute() as ip:
        ref_links = [(m["index"], m.get_attr("IFLA_IFNAME"), m["flags"]) for m in ip.get_links()]
        ref_addresses = [(m["index"], m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS"), m["prefixlen"],
                          m["scope"], m.get_attr("IFA_FLAGS")) for m in ip.get_addr()]
        ref_default6 = len(ip.get_default_routes(family=socket.AF_INET6))
    assert [(r.index, r.name, r.flags) for r in links] == ref_links
    assert [(a.index, a.address, a.prefixlen, a.scope, a.flags) for a in addresses] == ref_addresses
    assert sum(rtnetlink.is_default_route(r) for r in routes) == ref_default6
