"""The thin netlink shell: read a WireGuard interface, carry out a plan's writes.

Reads go over the standard library's netlink socket with the core's codec
(``wgsig.wgnetlink``); writes go through pyroute2's WireGuard class, which
``pyroute2load`` loads only when a run has something to write.  Everything
version-dependent about pyroute2 is decided by pure functions here
(``peer_updates``, ``merge_device``) so that it can be unit-tested.

pyroute2 0.7.2 (Debian bookworm) through 0.9.2 send the wrong peer flags: each
``set()`` with a peer replaces that peer's allowed IPs (clearing them when none
are given) and never sends UPDATE_ONLY.  With those versions every write passes
the peer's current allowed IPs back; from 0.9.3 writes say ``update_only`` and
leave allowed IPs out (``pyroute2load.sends_kernel_peer_flags`` tells which).
"""

from __future__ import annotations

import errno

from wgsig import rtnetlink, wgnetlink
from wgsig.endpoint import Endpoint
from wgsig.host import lightsocket as socket
from wgsig.keys import PublicKey
from wgsig.rtnetlink import RtnetlinkError
from wgsig.wire import KEY_SIZE
from wgsigc.exitcodes import EXIT_INTERFACE, EXIT_SOCKET, CapabilityMissing, WgsigcError
from wgsigc.plan import InterfaceState, PeerState, PeerWrite

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any


class InterfaceError(WgsigcError):
    """The interface is missing or is not WireGuard."""

    exit_code = EXIT_INTERFACE


class NetlinkFailure(WgsigcError):
    """Any other netlink error, as one line."""

    exit_code = EXIT_SOCKET


# --- pure parts -------------------------------------------------------------


def peer_updates(write: PeerWrite, fixed_flags: bool) -> list[dict[str, Any]]:
    """The ``peer=`` arguments of the ``WireGuard().set()`` calls that carry out one write, in order.

    The kernel sends a keepalive at once (and so starts a handshake) only when a peer's
    persistent keepalive goes from 0 to non-zero on a running interface.  A peer whose
    keepalive is already set therefore gets two messages: the endpoint with keepalive 0,
    then the keepalive.  Each message is complete by itself (endpoint plus allowed IPs
    for old pyroute2), so an interruption leaves no peer without its allowed IPs.
    """
    key = str(write.public_key)
    addr, port = write.endpoint
    first: dict[str, Any] = {"public_key": key, "endpoint_addr": addr, "endpoint_port": port}
    if write.new_peer:
        first["allowed_ips"] = list(write.allowed_ips)
        if fixed_flags:
            first["replace_allowed_ips"] = False
        first["persistent_keepalive"] = write.keepalive
        return [first]
    if fixed_flags:
        first["update_only"] = True
    else:
        first["allowed_ips"] = list(write.allowed_ips)
    if write.old_keepalive == 0:
        first["persistent_keepalive"] = write.keepalive
        return [first]
    first["persistent_keepalive"] = 0
    second = {k: v for k, v in first.items() if k not in ("endpoint_addr", "endpoint_port")}
    second["persistent_keepalive"] = write.keepalive
    return [first, second]


def _key(value: Any) -> PublicKey:
    """A key attribute: the 32 bytes (``wgsig.wgnetlink``), or pyroute2's base64 text as str or bytes."""
    if isinstance(value, bytes) and len(value) == KEY_SIZE:
        return PublicKey(value)
    key = PublicKey.parse(value.decode("ascii", "replace") if isinstance(value, bytes) else value)
    if key is not None:
        return key
    raise NetlinkFailure(f"unexpected key attribute from the kernel: {value!r}")


def _endpoint(value: Any) -> Endpoint | None:
    if not value:
        return None
    addr, port = value.get("addr"), value.get("port")
    if not addr or not port or addr in ("0.0.0.0", "::"):
        return None
    return str(addr), int(port)


def merge_device(messages: Iterable[Mapping[str, Any]], name: str) -> InterfaceState:
    """One interface state from the kernel's dump, which may split the peer list (and even one
    peer's allowed IPs) over several messages: a peer repeated in a later message continues."""
    public_key: PublicKey | None = None
    listen_port = 0
    fwmark = 0
    peers: dict[PublicKey, PeerState] = {}
    for message in messages:
        if message.get("public_key"):
            public_key = _key(message["public_key"])
        listen_port = int(message.get("listen_port") or listen_port)
        fwmark = int(message.get("fwmark") or fwmark)
        for raw in message.get("peers") or ():
            key = _key(raw["public_key"])
            ips = tuple(raw.get("allowed_ips") or ())
            known = peers.get(key)
            if known is not None:
                peers[key] = PeerState(
                    key, known.endpoint, known.allowed_ips + ips, known.keepalive, known.latest_handshake
                )
                continue
            handshake = raw.get("latest_handshake") or {}
            peers[key] = PeerState(
                key,
                _endpoint(raw.get("endpoint")),
                ips,
                int(raw.get("keepalive") or 0),
                int(handshake.get("tv_sec", 0)) if isinstance(handshake, dict) else 0,
            )
    if public_key is None:
        raise InterfaceError(f"interface {name} has no private key: set one with 'wg set {name} private-key FILE'")
    return InterfaceState(name, public_key, listen_port, fwmark, peers)


# --- the shell --------------------------------------------------------------


def _failure(error: Exception, doing: str) -> WgsigcError:
    code = getattr(error, "code", None)  # pyroute2's NetlinkError
    if code is None and isinstance(error, OSError | RtnetlinkError):
        code = error.errno
    if code == errno.EPERM:
        return CapabilityMissing(f"{doing}: operation not permitted: wgsigc needs CAP_NET_ADMIN (run as root)")
    if code == errno.ENOENT:
        return NetlinkFailure(f"{doing}: the kernel has no WireGuard netlink family (module 'wireguard' not loaded?)")
    text = getattr(error, "args", [str(error)])
    return NetlinkFailure(f"{doing}: {text[-1] if text else error}")


def read_interface(name: str) -> InterfaceState:
    """The interface and all its peers, or InterfaceError / CapabilityMissing / NetlinkFailure.

    Only WireGuard's generic netlink is asked: it says ENODEV for a missing interface and
    EOPNOTSUPP for one that is not WireGuard. The read uses the standard library's netlink
    socket and the core's codec (``wgsig.wgnetlink``): a run that writes nothing (every peer
    healthy, most runs) never loads pyroute2."""
    missing = InterfaceError(f"interface {name} does not exist: create it ('ip link add {name} type wireguard')")
    if not link_exists(name):
        raise missing
    try:
        messages = device_messages(name)
    except (OSError, RtnetlinkError) as error:
        code = error.errno
        if code == errno.ENODEV:
            raise missing from None
        if code in (errno.ENOENT, errno.EOPNOTSUPP):  # ENOENT: no WireGuard family, so no WireGuard link
            raise InterfaceError(f"interface {name} is not a WireGuard interface") from None
        raise _failure(error, f"reading interface {name}") from None
    return merge_device(messages, name)


def device_messages(name: str) -> list[dict[str, Any]]:
    """The kernel's dump of one WireGuard device (``wgsig.wgnetlink.device`` per message).
    OSError or RtnetlinkError, whose ``errno`` is the kernel's answer (ENODEV, EOPNOTSUPP, ...)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, wgnetlink.NETLINK_GENERIC) as sock:
        sock.settimeout(_NETLINK_TIMEOUT)
        (answer,) = _answers(sock, wgnetlink.family_request(1), 1)
        family = wgnetlink.family_id(answer)
        return [wgnetlink.device(body) for body in _answers(sock, wgnetlink.device_request(family, 2, name), 2)]


_NETLINK_TIMEOUT = 2.0  # the kernel answers at once; a bound in case it never does
_NETLINK_BUFFER = 65536  # wider than any one message of a dump (the kernel fills about a page)


def _answers(sock: socket.socket, request: bytes, sequence: int) -> list[bytes]:
    """The bodies of the answers to one request: a dump's records until its NLMSG_DONE, or the
    one answer to a plain request (the controller's family lookup)."""
    sock.send(request)
    dump = bool(rtnetlink.NLMSGHDR.unpack_from(request)[2] & rtnetlink.NLM_F_DUMP)
    bodies: list[bytes] = []
    while True:
        for kind, seq, body in rtnetlink.messages(sock.recv(_NETLINK_BUFFER)):
            if seq != sequence:
                continue  # a late part of an earlier request
            if kind == rtnetlink.NLMSG_DONE:
                code = rtnetlink.done_errno(body)
                if code:
                    raise RtnetlinkError(f"the kernel stopped the dump: errno {code}", code)
                return bodies
            bodies.append(body)
            if not dump:
                return bodies


def link_exists(name: str) -> bool:
    """Whether this namespace has a link of that name (asked first: pyroute2 logs errors of its
    own when the WireGuard module is not loaded, which is the usual case for a missing link)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _wireguard_class() -> Any:
    try:
        from wgsigc import pyroute2load  # importlib.util and pyroute2: writes only

        return pyroute2load.wireguard_class()
    except ImportError:
        raise NetlinkFailure("pyroute2 is not installed (Debian: apt install python3-pyroute2)") from None


def _interface_problem(error: Exception, name: str) -> InterfaceError | None:
    """What pyroute2 (0.7.2 and 0.9.5, verified in tests/kernel_lab.sh) raises when the interface
    vanished or is no longer WireGuard: NetlinkError with ENODEV or EOPNOTSUPP."""
    code = getattr(error, "code", None)
    if code == errno.ENODEV:
        return InterfaceError(f"interface {name} does not exist (deleted during the run?)")
    if code == errno.EOPNOTSUPP:
        return InterfaceError(f"interface {name} is not a WireGuard interface")
    return None


def apply_writes(name: str, writes: list[PeerWrite], fixed_flags: bool) -> list[str]:
    """Carry out the writes, one peer at a time; returns one error line per peer that failed.

    A failure on one peer does not stop the others; each netlink message is atomic in
    the kernel, so a failed write leaves that peer as it was (see ``peer_updates``).
    An interface that vanished (or is no longer WireGuard) stops all writes: InterfaceError.
    """
    wireguard = _wireguard_class()
    errors = []
    try:
        wg = wireguard()
    except Exception as error:
        raise _failure(error, f"opening WireGuard netlink for {name}") from None
    try:
        for write in writes:
            for peer in peer_updates(write, fixed_flags):
                try:
                    wg.set(name, peer=peer)
                except Exception as error:
                    problem = _interface_problem(error, name)
                    if problem is not None:
                        raise problem from None
                    failure = _failure(error, f"writing peer {write.public_key} of {name}")
                    if isinstance(failure, CapabilityMissing):
                        raise failure from None
                    errors.append(str(failure))
                    break
    finally:
        wg.close()
    return errors
