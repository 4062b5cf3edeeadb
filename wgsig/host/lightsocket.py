"""The socket module's names, without socket.py: for what every wgsigc run loads.

``import socket`` turns hundreds of constants into enums (``IntEnum._convert_``) and loads
``selectors``: in the order of 11 M instructions, 8 % of an idle kernel-mode run (issue 16).
The sockets themselves are the C module's (``_socket``), which socket.py wraps: this module
exports the names wgsigc uses, and ``socket`` adds only what wgsigc uses beyond them, ``with``.
Constants are plain integers (``AF_INET == socket.AF_INET``, but no enum names in messages).

Used as ``from wgsig.host import lightsocket as socket``; wgsigd and the tests use the real one.
"""

from __future__ import annotations

import _socket
from _socket import (
    AF_INET,
    AF_INET6,
    AF_NETLINK,
    AF_UNSPEC,
    IPPROTO_IPV6,
    IPPROTO_UDP,
    NETLINK_ROUTE,
    SO_RCVBUF,
    SOCK_DGRAM,
    SOCK_RAW,
    SOL_SOCKET,
    gaierror,
    getaddrinfo,
    if_nametoindex,
    inet_aton,
    inet_ntop,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self


__all__ = [
    "AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNSPEC", "IPPROTO_IPV6", "IPPROTO_UDP", "NETLINK_ROUTE", "SOCK_DGRAM",
    "SOCK_RAW", "SOL_SOCKET", "SO_RCVBUF", "gaierror", "getaddrinfo", "if_nametoindex", "inet_aton", "inet_ntop",
    "socket",
]


class socket(_socket.socket):
    """``_socket.socket`` that closes itself at the end of a ``with`` block."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
