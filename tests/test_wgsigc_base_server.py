"""wgsigc's signalling against a server without X1, over real UDP on loopback.

The server here is a stand-in for the deployed C server (which no committed script may build):
a thread that speaks only the base protocol with the core's reference codec — it checks each
request's HMAC, records the source of registrations, and answers with the plain 540-byte
datagrams and SVEXT 0, as the C server does. Everything on the client side is the real code
(sockets, retries, the X1 negotiation). The claims under test: an X1 client sends a server that did
not say it takes extension bytes nothing but 82-byte requests, never the XR bit, and still
registers and fetches; and kernel mode's retries wait long enough for a server that is starting.
(``mock.patch`` only sets the retry factor to compare it with none.)
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from unittest import mock

import pytest

from wgsig import wire, x1
from wgsig.client import GroupCredentials
from wgsig.keys import PublicKey
from wgsig.label import encode_label
from wgsigc import signalling
from wgsigc.config import InterfaceConfig, ServerAddress
from wgsigc.kernelmode import Run, _resolve_servers
from wgsigc.plan import InterfaceState
from wgsigc.signalling import fetch_all, own_items, register_and_fetch

SECRET = bytes(range(50, 82))
OWN, OTHER = PublicKey(bytes([7]) * 32), PublicKey(bytes([8]) * 32)


class BaseServer:
    """The base protocol only: what it received, and a table it answers with."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.received: list[bytes] = []
        self.table = {OTHER: wire.Record(OTHER, "203.0.113.8", 4000, encode_label(1_700_000_000, 0))}
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(4096)
            except OSError:
                return
            self.received.append(data)
            if len(data) != wire.REQUEST_SIZE:
                continue  # a C server drops anything but 82 bytes
            request = wire.decode_request(data)
            if not wire.mac_ok(SECRET, data[: wire.REQUEST_SIZE - len(request.tag)], request.tag):
                continue
            if request.clflg & 0xFF in (0, 1):  # registrations (3 only fetches)
                self.table[request.peer_id] = wire.Record(request.peer_id, source[0], source[1], request.label)
            try:
                for datagram in wire.encode_responses(list(self.table.values()), 0, SECRET):
                    self.sock.sendto(datagram, source)
            except OSError:
                return  # closed by the test while answering

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=2)


@pytest.fixture
def base_server() -> Iterator[BaseServer]:
    server = BaseServer()
    yield server
    server.close()


def test_an_x1_client_sends_a_server_without_x1_only_base_requests_and_still_gets_the_table(
        base_server: BaseServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        listen_port = int(probe.getsockname()[1])  # free again: wgsigc binds it, as the C client does
    config = InterfaceConfig("wg0", (ServerAddress("127.0.0.1", base_server.port),), "unused",
                             attempts=3, timeout=0.5)
    run = Run(config, dry_run=False)
    _resolve_servers(run)
    state = InterfaceState("wg0", OWN, listen_port)
    credentials = GroupCredentials(0, SECRET)
    items = own_items(["192.168.1.5"], listen_port, [("198.51.100.7", 51820)])
    assert items  # there are candidates to announce: only the server's answer keeps them back
    register_and_fetch(run.servers, state, credentials, config, items, ipv6=False)
    fetch_all(run.servers, state, credentials, config, items)
    (outcome,) = run.servers
    assert outcome.error is None, outcome.error
    assert outcome.registered == ("127.0.0.1", listen_port)
    assert {r.peer_id for r in outcome.records or []} == {OWN, OTHER}
    assert outcome.items == {}
    assert base_server.received, "nothing was sent"
    assert all(len(d) == wire.REQUEST_SIZE for d in base_server.received), [len(d) for d in base_server.received]
    flags = [wire.decode_request(d).clflg for d in base_server.received]
    assert not any(f & x1.XR for f in flags), [hex(f) for f in flags]


class ColdServer(BaseServer):
    """A server that its socket is still starting: requests wait in the socket until it runs."""

    def __init__(self, starts_after: float) -> None:
        self.starts_after = starts_after
        super().__init__()

    def _serve(self) -> None:
        try:
            self.sock.recvfrom(4096, socket.MSG_PEEK)  # the first request starts it ...
        except OSError:
            return
        time.sleep(self.starts_after)  # ... which takes a while; then it answers what is queued
        super()._serve()


def test_kernel_mode_waits_longer_at_each_attempt_so_a_starting_server_still_answers() -> None:
    """timeout 0.2 s, 3 attempts: 0.2 + 0.4 + 0.8 s of waiting, enough for a server that starts
    in 0.9 s; three waits of 0.2 s (the print mode's, as the C client's) are not."""
    for backoff, answered in [(2.0, True), (1.0, False)]:
        server = ColdServer(starts_after=0.9)
        try:
            config = InterfaceConfig("wg0", (ServerAddress("127.0.0.1", server.port),), "unused",
                                     attempts=3, timeout=0.2)
            run = Run(config, dry_run=False)
            _resolve_servers(run)
            state = InterfaceState("wg0", OWN, 0)
            started = time.monotonic()
            with mock.patch.object(signalling, "RETRY_BACKOFF", backoff):
                signalling.fetch(run.servers[0], state, GroupCredentials(0, SECRET), config)
            waited = time.monotonic() - started
            assert (run.servers[0].records is not None) is answered, (backoff, waited, run.servers[0].error)
            if not answered:
                assert waited < 0.9  # it gave up before the server ran
        finally:
            server.close()
