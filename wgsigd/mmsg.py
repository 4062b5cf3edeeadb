"""Answers sent in batches with sendmmsg(2), which the standard library lacks (issue 16).

On this machine's loopback a ``sendto`` of a 540-byte answer costs about 7 us of CPU, of which the
system call's entry and exit and Python's call are a share that one ``sendmmsg`` for up to
``CAPACITY`` datagrams pays once.  ``BatchSender`` keeps its message headers, I/O vectors,
addresses and datagram slots in arrays allocated once: queueing an answer copies its bytes and
its destination's address (cached per source) into the next slot; ``flush`` sends them.

``batch_sender(sock)`` returns None where this cannot work (no ctypes, no ``sendmmsg`` in the C
library, a socket family other than IPv4/IPv6): the daemon then calls ``sendto`` per datagram.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys

try:
    import ctypes
except ImportError:  # pragma: no cover - an interpreter without ctypes
    ctypes = None  # type: ignore[assignment]

log = logging.getLogger("wgsigd")

CAPACITY = 256  # datagrams per call: the daemon's pass (CHORE_EVERY) answers at most that many requests
SLOT_SIZE = 2048  # bytes per datagram slot; a larger datagram is sent on its own with sendto
_ADDRESS_CACHE = 4096  # sockaddr encodings kept, then the cache starts again


class _Arrays:
    """CAPACITY message headers, each with one I/O vector over its own datagram slot and its own
    address, allocated once (struct mmsghdr, struct iovec, struct sockaddr_in or _in6)."""

    def __init__(self, sock: socket.socket, slot_size: int) -> None:
        assert ctypes is not None
        self.ipv6 = sock.family == socket.AF_INET6
        name_size = 28 if self.ipv6 else 16  # sizeof(struct sockaddr_in6), sizeof(struct sockaddr_in)
        self.name_size = name_size

        class IoVec(ctypes.Structure):
            _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))

        class MsgHdr(ctypes.Structure):
            _fields_ = (
                ("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int),
            )

        class MMsgHdr(ctypes.Structure):
            _fields_ = (("hdr", MsgHdr), ("len", ctypes.c_uint))

        self.headers = (MMsgHdr * CAPACITY)()
        self.iovecs = (IoVec * CAPACITY)()
        self.names = ctypes.create_string_buffer(name_size * CAPACITY)
        self.slots = ctypes.create_string_buffer(slot_size * CAPACITY)
        names, slots = ctypes.addressof(self.names), ctypes.addressof(self.slots)
        for k in range(CAPACITY):
            self.iovecs[k].base = slots + k * slot_size
            self.iovecs[k].len = slot_size
            header = self.headers[k].hdr
            header.name = names + k * name_size
            header.namelen = name_size
            header.iov = ctypes.addressof(self.iovecs[k])
            header.iovlen = 1
        # Per datagram only lengths, addresses and bytes change: through memoryviews, no ctypes call.
        self.slot_view = memoryview(self.slots).cast("B")
        self.name_view = memoryview(self.names).cast("B")
        self.iovec_view = memoryview(self.iovecs).cast("B")
        self.header_view = memoryview(self.headers).cast("B")
        self.iovec_size = ctypes.sizeof(IoVec)
        self.iovec_len_at = IoVec.len.offset
        self.header_size = ctypes.sizeof(MMsgHdr)
        self.msg_len_at = MMsgHdr.len.offset
        self.headers_at = ctypes.addressof(self.headers)


class BatchSender:
    """Datagrams queued with ``add`` and sent with one sendmmsg(2) per ``flush`` (or when full)."""

    def __init__(self, sock: socket.socket, sendmmsg: object) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._sendmmsg = sendmmsg
        arrays = self._arrays = _Arrays(sock, SLOT_SIZE)
        self._ipv6 = arrays.ipv6
        self._name_size = arrays.name_size
        self._slot_view, self._name_view, self._iovec_view = arrays.slot_view, arrays.name_view, arrays.iovec_view
        self._iovec_size, self._len_at = arrays.iovec_size, arrays.iovec_len_at
        self._pack_len = struct.Struct("N").pack_into
        self._headers_at = arrays.headers_at
        self._sources: list[tuple[object, ...]] = []  # each queued datagram's destination, for messages
        self._addresses: dict[tuple[object, ...], bytes] = {}
        self._count = 0

    def add(self, datagram: bytes, source: tuple[object, ...]) -> None:
        """Queue ``datagram`` for ``source`` (an address as recvfrom gives it)."""
        name = self._addresses.get(source)
        if name is None:
            name = self._address(source)
            if name is None or len(datagram) > SLOT_SIZE:
                self._send_one(datagram, source)
                return
        elif len(datagram) > SLOT_SIZE:
            self._send_one(datagram, source)
            return
        k = self._count
        size = len(datagram)
        start = k * SLOT_SIZE
        self._slot_view[start : start + size] = datagram
        self._pack_len(self._iovec_view, k * self._iovec_size + self._len_at, size)
        start = k * self._name_size
        self._name_view[start : start + self._name_size] = name
        self._sources.append(source)
        self._count = k + 1
        if k + 1 == CAPACITY:
            self.flush()

    def flush(self) -> None:
        """Send every queued datagram; one that cannot be sent is logged (debug) and skipped."""
        count, done = self._count, 0
        if not count:
            return
        assert ctypes is not None
        headers, size = self._headers_at, self._arrays.header_size
        while done < count:
            sent = self._sendmmsg(self._fd, headers + done * size, count - done, 0)  # type: ignore[operator]
            if sent < 0:
                error = ctypes.get_errno()
                if error == errno.EINTR:  # nothing sent, try again
                    continue
                # The datagram at ``done`` failed (as its sendto would have): skip it.
                log.debug("cannot answer %s: %s", self._sources[done], os.strerror(error))
                sent = 1
            done += sent
        self._count = 0
        self._sources.clear()

    def _send_one(self, datagram: bytes, source: tuple[object, ...]) -> None:
        self.flush()  # keeps a source's datagrams in order
        try:
            self._sock.sendto(datagram, source)
        except OSError as error:
            log.debug("cannot answer %s: %s", source, error.strerror)

    def _address(self, source: tuple[object, ...]) -> bytes | None:
        """The sockaddr for ``source``, or None for one this class does not encode (scoped IPv6)."""
        if len(self._addresses) >= _ADDRESS_CACHE:
            self._addresses.clear()
        host, port = source[0], source[1]
        if not isinstance(host, str) or not isinstance(port, int):
            return None
        try:
            if self._ipv6:
                flow = source[2] if len(source) > 2 else 0
                scope = source[3] if len(source) > 3 else 0
                if "%" in host or not isinstance(flow, int) or not isinstance(scope, int):
                    return None  # a scope name: left to sendto
                name = struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, flow) + socket.inet_pton(
                    socket.AF_INET6, host) + struct.pack("=I", scope)
            else:
                name = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_pton(
                    socket.AF_INET, host) + bytes(8)
        except (OSError, struct.error):
            return None
        self._addresses[source] = name
        return name


class BatchReceiver:
    """Up to CAPACITY datagrams read with one recvmmsg(2), as ``recvfrom`` would give them."""

    def __init__(self, sock: socket.socket, recvmmsg: object, size: int) -> None:
        self._fd = sock.fileno()
        self._recvmmsg = recvmmsg
        self._arrays = _Arrays(sock, size)
        self._slot_size = size
        self._sources: dict[bytes, tuple[object, ...]] = {}  # raw sockaddr -> recvfrom's tuple

    def receive(self, limit: int) -> list[tuple[bytes, tuple[object, ...]]]:
        """The datagrams queued now, at most ``limit`` (and CAPACITY); empty when none is."""
        assert ctypes is not None
        arrays = self._arrays
        while True:
            count = self._recvmmsg(  # type: ignore[operator]
                self._fd, arrays.headers_at, min(limit, CAPACITY), _MSG_DONTWAIT, None)
            if count >= 0:
                break
            error = ctypes.get_errno()
            if error in (errno.EAGAIN, errno.EWOULDBLOCK):
                return []
            if error not in (errno.EINTR, errno.ECONNREFUSED):  # ICMP error from an earlier answer
                raise OSError(error, os.strerror(error))
        headers, slots, names, sources = arrays.header_view, arrays.slot_view, arrays.name_view, self._sources
        unpack_len, header_size, len_at = _UNSIGNED.unpack_from, arrays.header_size, arrays.msg_len_at
        slot_size, name_size = self._slot_size, arrays.name_size
        out = []
        for k in range(count):
            size = unpack_len(headers, k * header_size + len_at)[0]
            start = k * slot_size
            name = bytes(names[k * name_size : (k + 1) * name_size])
            source = sources.get(name)
            if source is None:
                source = self._source(name)
            out.append((bytes(slots[start : start + size]), source))
        return out

    def _source(self, name: bytes) -> tuple[object, ...]:
        """recvfrom's address tuple for a raw sockaddr (cached)."""
        if len(self._sources) >= _ADDRESS_CACHE:
            self._sources.clear()
        port = int.from_bytes(name[2:4], "big")
        source: tuple[object, ...]
        if self._arrays.ipv6:
            flow, scope = int.from_bytes(name[4:8], "big"), int.from_bytes(name[24:28], sys.byteorder)
            host = socket.inet_ntop(socket.AF_INET6, name[8:24])
            if scope:
                try:
                    host += "%" + socket.if_indextoname(scope)
                except OSError:
                    host += f"%{scope}"
            source = (host, port, flow, scope)
        else:
            source = (socket.inet_ntop(socket.AF_INET, name[4:8]), port)
        self._sources[name] = source
        return source


_MSG_DONTWAIT = 0x40
_UNSIGNED = struct.Struct("I")


def _libc_function(name: str, argtypes: list[object]) -> object | None:
    if ctypes is None:
        return None
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    found: object = function
    return found


def batch_sender(sock: socket.socket) -> BatchSender | None:
    """A BatchSender for ``sock``, or None where sendmmsg(2) is not available."""
    if ctypes is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    sendmmsg = _libc_function("sendmmsg", [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int])
    return None if sendmmsg is None else BatchSender(sock, sendmmsg)


def batch_receiver(sock: socket.socket, size: int) -> BatchReceiver | None:
    """A BatchReceiver of datagrams up to ``size`` bytes for ``sock``, or None where recvmmsg(2) is not
    available (or the platform is not Linux, whose MSG_DONTWAIT this uses)."""
    if ctypes is None or sock.family not in (socket.AF_INET, socket.AF_INET6) or not sys.platform.startswith("linux"):
        return None
    recvmmsg = _libc_function(
        "recvmmsg", [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p])
    return None if recvmmsg is None else BatchReceiver(sock, recvmmsg, size)
