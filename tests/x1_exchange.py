"""One X1 request and its whole answer, from a given socket: what the relay tests ask wgsigd
(tests/test_relay_loopback.py on the host, tests/nspawn_relay_guest.py in the container, which
ships this file next to it and imports it once the project is installed)."""

from __future__ import annotations

import os
import socket
import time

from wgsig.client import AnswerCollector, GroupCredentials, build_request
from wgsig.label import label_from_ns


def exchange(sock: socket.socket, server: tuple[str, int], creds: GroupCredentials, peer: bytes, clflg: int,
             relay_to: list[bytes] | None = None, timeout: float = 2.0) -> AnswerCollector:
    """Send ``peer``'s request (with ``relay_to``: X1 asking for a relay to those peers) from ``sock``
    to ``server``; return the complete answer (TimeoutError when it is not complete within ``timeout``),
    after a short pause that lets wgsigd write what it decided."""
    items = [] if relay_to is not None else None
    sock.sendto(build_request(creds, peer, label_from_ns(time.time_ns()), clflg, os.urandom, items, relay_to or []),
                server)
    sock.settimeout(timeout)
    collector = AnswerCollector(creds)
    while not collector.complete:
        collector.receive_datagram(sock.recv(4096))
    time.sleep(0.03)
    return collector
