"""WireGuard's generic netlink codec (wgsig/wgnetlink.py): byte vectors written from
linux/genetlink.h and linux/wireguard.h, the same bytes decoded by pyroute2's own message class
(the reference reader this codec replaced for reads), and the shell's error mapping. The real
kernel's dump is compared with pyroute2's in the VM (tests/kernel_lab.sh, tests/test_kernel_vm.py)."""

from __future__ import annotations

import base64
import contextlib
import errno
import sys

import pytest

from wgsig import rtnetlink, wgnetlink
from wgsig.keys import PublicKey
from wgsig.rtnetlink import RtnetlinkError
from wgsigc import netlink
from wgsigc.exitcodes import CapabilityMissing

little = pytest.mark.skipif(sys.byteorder != "little", reason="vectors are written in little-endian host order")

OWN = bytes([9]) * 32
FIRST = bytes(range(32))
SECOND = bytes([7]) * 32

# The controller's answer (CTRL_CMD_NEWFAMILY 1, version 2): CTRL_ATTR_FAMILY_NAME "wireguard",
# CTRL_ATTR_FAMILY_ID 0x15 (a u16 padded to 4)
FAMILY_ANSWER = bytes.fromhex("01" "02" "0000" "0e00" "0200" "77697265677561726400" "0000" "0600" "0100" "1500" "0000")

_ALLOWED_V4 = "1c00" "0080" "0600" "0100" "0200" "0000" "0800" "0200" "0a000002" "0500" "0300" "20" "000000"
_ALLOWED_V6 = ("2800" "0080" "0600" "0100" "0a00" "0000" "1400" "0200" "20010db8000000000000000000000000"
               "0500" "0300" "30" "000000")
_PEER_1 = (
    "a000" "0080"
    "2400" "0100" + FIRST.hex()
    # WGPEER_A_ENDPOINT: sockaddr_in AF_INET (host order), port 4000 (network order), 203.0.113.5, 8 zero bytes
    + "1400" "0400" "0200" "0fa0" "cb007105" "0000000000000000"
    + "0600" "0500" "1900" "0000"  # persistent keepalive 25
    + "1400" "0600" "d204000000000000" "0500000000000000"  # last handshake 1234 s 5 ns
    + "4800" "0980" + _ALLOWED_V4 + _ALLOWED_V6
)
_PEER_2 = (
    "4800" "0080"
    "2400" "0100" + SECOND.hex()
    # sockaddr_in6: AF_INET6, port 51820, flow info 0, 2001:db8::9, scope ID 0
    + "2000" "0400" "0a00" "ca6c" "00000000" "20010db8000000000000000000000009" "00000000"
)
# WG_CMD_GET_DEVICE's first message: listen port 51820, fwmark 0x51, the public key, two peers
DEVICE = bytes.fromhex(
    "00" "01" "0000"
    "0600" "0600" "6cca" "0000"
    "0800" "0700" "51000000"
    "2400" "0400" + OWN.hex()
    + "ec00" "0880" + _PEER_1 + _PEER_2
)
# a later message of the same dump: the first peer again with one more allowed IP
CONTINUED = bytes.fromhex(
    "00" "01" "0000"
    "4c00" "0880" "4800" "0080" "2400" "0100" + FIRST.hex()
    + "2000" "0980" + _ALLOWED_V4.replace("0a000002", "0a000003")
)


def _message(family: int, body: bytes, flags: int = rtnetlink.NLM_F_MULTI, sequence: int = 2) -> bytes:
    return rtnetlink.NLMSGHDR.pack(16 + len(body), family, flags, sequence, 77) + body


@little
def test_requests_bytes() -> None:
    # length 36, GENL_ID_CTRL, NLM_F_REQUEST, sequence 1; CTRL_CMD_GETFAMILY version 1; the name padded to 16
    assert wgnetlink.family_request(1) == bytes.fromhex(
        "24000000" "1000" "0100" "01000000" "00000000" "03" "01" "0000" "0e00" "0200" "77697265677561726400" "0000")
    # the family's ID as message type, NLM_F_REQUEST | NLM_F_DUMP; WG_CMD_GET_DEVICE version 1; WGDEVICE_A_IFNAME
    assert wgnetlink.device_request(0x15, 2, "wg0") == bytes.fromhex(
        "1c000000" "1500" "0103" "02000000" "00000000" "00" "01" "0000" "0800" "0200" "77673000")


@little
def test_family_and_device_decode() -> None:
    assert wgnetlink.family_id(FAMILY_ANSWER) == 0x15
    first = wgnetlink.device(DEVICE)
    assert (first["public_key"], first["listen_port"], first["fwmark"]) == (OWN, 51820, 0x51)
    one, two = first["peers"]
    assert one == {"public_key": FIRST, "endpoint": {"addr": "203.0.113.5", "port": 4000}, "keepalive": 25,
                   "latest_handshake": {"tv_sec": 1234, "tv_nsec": 5},
                   "allowed_ips": ["10.0.0.2/32", "2001:db8::/48"]}
    assert two == {"public_key": SECOND, "endpoint": {"addr": "2001:db8::9", "port": 51820}, "allowed_ips": []}
    later = wgnetlink.device(CONTINUED)
    assert "public_key" not in later and "listen_port" not in later
    state = netlink.merge_device([first, later], "wg0")
    assert state.public_key == PublicKey(OWN) and (state.listen_port, state.fwmark) == (51820, 0x51)
    peer = state.peers[PublicKey(FIRST)]
    assert peer.allowed_ips == ("10.0.0.2/32", "2001:db8::/48", "10.0.0.3/32")
    assert (peer.endpoint, peer.keepalive, peer.latest_handshake) == (("203.0.113.5", 4000), 25, 1234)
    assert state.peers[PublicKey(SECOND)].endpoint == ("2001:db8::9", 51820)


@little
def test_pyroute2_decodes_the_same_bytes_alike() -> None:
    """The vectors are what pyroute2's wgmsg (the reader this codec replaced) decodes to the same values."""
    pytest.importorskip("pyroute2")
    from wgsigc import pyroute2load

    wgmsg = sys.modules[pyroute2load.wireguard_class().__module__].wgmsg
    for body in (DEVICE, CONTINUED):
        message = wgmsg(_message(0x15, body))
        message.decode()
        ours = wgnetlink.device(body)
        key = message.get_attr("WGDEVICE_A_PUBLIC_KEY")
        assert (base64.b64decode(key) if key else None) == ours.get("public_key")
        assert message.get_attr("WGDEVICE_A_LISTEN_PORT") == ours.get("listen_port")
        theirs = message.get_attr("WGDEVICE_A_PEERS") or []
        assert len(theirs) == len(ours["peers"])
        for peer, mine in zip(theirs, ours["peers"], strict=True):
            assert base64.b64decode(peer.get_attr("WGPEER_A_PUBLIC_KEY")) == mine["public_key"]
            endpoint = peer.get_attr("WGPEER_A_ENDPOINT")
            assert ({"addr": endpoint["addr"], "port": endpoint["port"]} if endpoint else None) == mine.get("endpoint")
            assert [ip["addr"] for ip in peer.get_attr("WGPEER_A_ALLOWEDIPS") or ()] == mine["allowed_ips"]
            assert peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") == mine.get("keepalive")
            handshake = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
            assert (handshake["tv_sec"] if handshake else None) == mine.get("latest_handshake", {}).get("tv_sec")


@little
def test_no_private_key_and_malformed_attributes() -> None:
    zeros = bytes.fromhex("00" "01" "0000" "2400" "0400") + bytes(32)  # a key of zeros: no key set
    assert "public_key" not in wgnetlink.device(zeros)
    with pytest.raises(netlink.InterfaceError, match="no private key"):
        netlink.merge_device([wgnetlink.device(zeros)], "wg0")
    short_key = bytes.fromhex("00" "01" "0000" "1000" "0880" "0c00" "0080" "0800" "0100" "01020304")
    for broken in (DEVICE[:-3], short_key, b"\x00\x01", FAMILY_ANSWER[:12]):
        with pytest.raises(RtnetlinkError):
            wgnetlink.device(broken) if broken is not FAMILY_ANSWER[:12] else wgnetlink.family_id(broken)


def test_every_malformed_message_raises_only_the_codec_error() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")

    @hypothesis.given(strategies.binary(max_size=300) | strategies.builds(
        lambda cut, junk: DEVICE[:cut] + junk, strategies.integers(0, len(DEVICE)), strategies.binary(max_size=8)))
    @hypothesis.settings(max_examples=400, deadline=None)
    def check(data: bytes) -> None:
        with contextlib.suppress(RtnetlinkError, netlink.InterfaceError):
            netlink.merge_device([wgnetlink.device(data)], "wg0")

    check()


class FakeSocket:
    """The kernel's side of one netlink socket: each send queues the answers given for it."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = answers
        self.queue: list[bytes] = []
        self.sent: list[bytes] = []

    def __enter__(self) -> FakeSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def settimeout(self, seconds: float) -> None:
        pass

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        self.queue.extend(self.answers.pop(0))

    def recv(self, size: int) -> bytes:
        return self.queue.pop(0)


def _error(code: int, sequence: int) -> bytes:
    return _message(rtnetlink.NLMSG_ERROR, (-code).to_bytes(4, sys.byteorder, signed=True) + bytes(16), 0, sequence)


FAMILY = _message(0x10, FAMILY_ANSWER, 0, 1)
DONE = _message(rtnetlink.NLMSG_DONE, bytes(4))


@little
def test_the_shell_reads_a_split_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    """FAKE: the netlink socket (the real kernel is in the VM tests). Two parts of one dump in
    two receives, a stray message of another sequence skipped."""
    fake = FakeSocket([[FAMILY], [_message(0x15, DEVICE) + _message(0x15, DEVICE, sequence=9),
                                  _message(0x15, CONTINUED) + DONE]])
    monkeypatch.setattr(netlink.socket, "socket", lambda *args: fake)  # wgsig.host.lightsocket
    monkeypatch.setattr(netlink, "link_exists", lambda name: True)
    state = netlink.read_interface("wg0")
    assert len(state.peers[PublicKey(FIRST)].allowed_ips) == 3
    assert [m[4:6] for m in fake.sent] == [b"\x10\x00", b"\x15\x00"]


@little
@pytest.mark.parametrize(("answers", "raised", "text"), [
    ([[_error(errno.ENOENT, 1)]], netlink.InterfaceError, "is not a WireGuard interface"),  # module not loaded
    ([[FAMILY], [_error(errno.ENODEV, 2)]], netlink.InterfaceError, "does not exist"),
    ([[FAMILY], [_error(errno.EOPNOTSUPP, 2)]], netlink.InterfaceError, "is not a WireGuard interface"),
    ([[FAMILY], [_error(errno.EPERM, 2)]], CapabilityMissing, "needs CAP_NET_ADMIN"),
    ([[FAMILY], [_message(0x15, DEVICE), _message(rtnetlink.NLMSG_DONE, (-errno.EMSGSIZE).to_bytes(
        4, sys.byteorder, signed=True))]], netlink.NetlinkFailure, "errno 90"),
    ([[FAMILY], [_message(0x15, DEVICE[:-5]) + DONE]], netlink.NetlinkFailure, "reading interface wg0"),
])
def test_the_kernels_refusals_are_one_line_each(monkeypatch: pytest.MonkeyPatch, answers: list[list[bytes]],
                                                raised: type[Exception], text: str) -> None:
    monkeypatch.setattr(netlink.socket, "socket", lambda *args: FakeSocket(answers))
    monkeypatch.setattr(netlink, "link_exists", lambda name: True)
    with pytest.raises(raised, match=text):
        netlink.read_interface("wg0")
