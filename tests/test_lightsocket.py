"""wgsig.host.lightsocket: the socket module's names wgsigc uses, without socket.py (issue 16).

Real sockets on loopback; no fakes.
"""

from __future__ import annotations

import socket as real

from wgsig.host import lightsocket


def test_every_constant_and_function_is_the_socket_modules() -> None:
    for name in lightsocket.__all__:
        value = getattr(lightsocket, name)
        if isinstance(value, int):
            assert value == getattr(real, name), name
        elif name not in ("socket", "getaddrinfo"):  # socket.py wraps these two
            assert value is getattr(real, name), name
    assert issubclass(real.socket, lightsocket.socket.__mro__[1])  # both wrap _socket.socket


def test_a_socket_closes_at_the_end_of_a_with_block_and_talks_to_a_real_one() -> None:
    with real.socket(real.AF_INET, real.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(5)
        with lightsocket.socket(lightsocket.AF_INET, lightsocket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(b"ping", peer.getsockname())
            data, source = peer.recvfrom(100)
            peer.sendto(b"pong", source)
            assert (data, sock.recvfrom(100)[0]) == (b"ping", b"pong")
            assert sock.fileno() >= 0
        assert sock.fileno() == -1  # closed


def test_lookups_give_what_the_socket_module_gives() -> None:
    infos = lightsocket.getaddrinfo("127.0.0.1", 1223, lightsocket.AF_UNSPEC, lightsocket.SOCK_DGRAM)
    assert [(i[0], i[4]) for i in infos] == [
        (i[0], i[4]) for i in real.getaddrinfo("127.0.0.1", 1223, real.AF_UNSPEC, real.SOCK_DGRAM)]
    assert lightsocket.inet_ntop(lightsocket.AF_INET6, bytes(15) + b"\1") == "::1"
    assert lightsocket.gaierror is real.gaierror
