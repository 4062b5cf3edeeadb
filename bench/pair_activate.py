#!/usr/bin/env python3
"""Run a command with a known-sources pair of UDP sockets, passed as systemd passes sockets.

    python3 bench/pair_activate.py ADDRESS PORT [--one] -- COMMAND [ARGS...]

Binds two UDP sockets to ADDRESS:PORT with SO_REUSEPORT (one reuseport group, in this order, as
wgsigd.socket's two ListenDatagram= lines with ReusePort=yes make them), each with a 4 MiB receive
buffer (the unit's ReceiveBuffer=), puts them at descriptors 3 and 4 and execs COMMAND with
LISTEN_FDS=2 and LISTEN_PID set to its own PID (exec keeps it).  ``--one`` passes one socket;
``--swap`` passes the pair the other way round (descriptor 3 the socket that joined the group
second), as the group can be after systemd reopened a socket.
For the flood bench and the tests on loopback; systemd-socket-activate has no ReusePort=.
"""

from __future__ import annotations

import os
import socket
import sys

RECEIVE_BUFFER = 4 << 20
SO_RCVBUFFORCE = 33


def bind_pair(address: str, port: int, count: int = 2) -> list[socket.socket]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    socks = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((address, port))
        port = sock.getsockname()[1]
        socks.append(sock)
    return socks


def main(argv: list[str]) -> int:
    if "--" not in argv or len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    count = 1 if "--one" in options else 2
    address, port = options[0], int(options[1])
    socks = bind_pair(address, port, count)
    if "--swap" in options:
        socks.reverse()
    fds = [os.dup(s.fileno()) for s in socks]  # above 4 first: the originals may be 3 or 4
    for s in socks:
        s.close()
    for i, fd in enumerate(fds):
        os.dup2(fd, 3 + i)  # inheritable
        os.close(fd)
    os.environ.update(LISTEN_FDS=str(count), LISTEN_PID=str(os.getpid()))
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
