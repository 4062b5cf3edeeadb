"""Shedding garbage before it reaches Python: the socket filter and the receive buffer.

The daemon attaches a classic BPF filter (``wgsig/sockfilter.py``) to its UDP socket, its own or
the one systemd passed: the kernel drops every datagram whose length no request of the configured
groups can have, before it takes room in the receive buffer.  On a passed socket the filter is
taken off again when wgsigd stops, so the socket unit, which keeps the socket, queues everything
for the next start (whose configuration may differ).  Where a filter cannot be attached (an old
kernel, a sandbox), one warning, and wgsigd goes on: the engine drops those datagrams too.

Known sources first: when systemd passes two sockets of one port (one ``SO_REUSEPORT`` group),
a reuseport program (``wgsig.sockfilter.source_steering``) sends the datagrams of the IPv4
addresses that recently sent an authenticated request to the first socket, every other to the
second, which the daemon reads only after the first (``wgsigd/daemon.py``).  A flood from other
addresses then fills only the second socket's queue.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import socket
import struct
import sys

from wgsig.server import RequestShapes
from wgsig.sockfilter import INSTRUCTION_SIZE, encode, request_filter, source_steering

log = logging.getLogger("wgsigd")

# asm-generic/socket.h: Python's socket module does not name these.
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
SO_RCVBUFFORCE = 33
SO_ATTACH_REUSEPORT_CBPF = 51
# The socket indexes in the reuseport group: the order the sockets joined it, which for sockets
# systemd passes is the order of the unit's ListenDatagram= lines (and of LISTEN_FDS).
KNOWN_SOURCES, OTHER_SOURCES = 0, 1
# Own socket: room for bursts and for the moments wgsigd does not run (a save, another process
# on its core): about 10,000 small datagrams, as the kernel counts each at about 830 bytes.
# bench/flood.py, 10:1:1 flood, one run each: with 1 MiB 4-7 % of the peers' requests were lost in such
# moments, with 4 MiB none.  Without CAP_NET_ADMIN, net.core.rmem_max caps it.
RECEIVE_BUFFER = 4 << 20

_FPROG = struct.Struct("@HP")  # struct sock_fprog: unsigned short len; struct sock_filter *filter


def _attach(sock: socket.socket, option: int, program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program, len(program))  # the kernel copies it in setsockopt
    fprog = _FPROG.pack(len(program) // INSTRUCTION_SIZE, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, option, fprog)


def attach_request_filter(sock: socket.socket, shapes: RequestShapes) -> bool:
    """Attach (or replace) the filter keeping only ``shapes``; False, after one warning, if it cannot be."""
    try:
        _attach(sock, SO_ATTACH_FILTER, request_filter(shapes.sizes, shapes.extended, sys.byteorder))
    except OSError as error:
        log.warning("cannot attach the socket filter that drops impossible lengths in the kernel (%s):"
                    " serving without it, the server drops them itself", error.strerror)
        return False
    return True


def is_reuseport_pair(first: socket.socket, second: socket.socket) -> bool:
    """Whether two sockets can be one port's known-sources pair: same family, address and port, both
    with SO_REUSEPORT (so in one reuseport group, as systemd's ReusePort=yes makes them)."""
    try:
        return (first.family == second.family and first.getsockname() == second.getsockname()
                and all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in (first, second)))
    except OSError:
        return False


def attach_source_steering(sock: socket.socket, addresses: list[int]) -> bool:
    """Steer ``addresses`` (IPv4, as 32-bit numbers) to the group's socket KNOWN_SOURCES and every
    other datagram to OTHER_SOURCES; ``sock`` is either.  Replaces the group's program.  False, and
    the error logged at debug level, when the kernel refuses it (the caller warns)."""
    try:
        _attach(sock, SO_ATTACH_REUSEPORT_CBPF,
                encode(source_steering(addresses, KNOWN_SOURCES, OTHER_SOURCES), sys.byteorder))
    except OSError as error:
        log.debug("cannot attach the reuseport program of %d known sources: %s", len(addresses), error.strerror)
        return False
    return True


def detach_filter(sock: socket.socket) -> None:
    """Take the filter off (nothing if none is attached, or the socket is gone)."""
    with contextlib.suppress(OSError):  # ENOENT: no filter; EBADF: closed
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)


def enlarge_receive_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER) -> None:
    """Ask for ``size`` bytes of receive buffer: beyond net.core.rmem_max when privileged."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)  # capped at net.core.rmem_max
        except OSError as error:
            log.warning("cannot enlarge the receive buffer to %d bytes: %s", size, error.strerror)
