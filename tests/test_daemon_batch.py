"""The daemon's answering pass over a real socket: with recvmmsg/sendmmsg (wgsigd/mmsg.py) and
without (recvfrom/sendto, where the C library lacks them), the same requests get the same answers."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.procs import received
from wgsig.label import encode_label
from wgsig.wire import RESPONSE_SIZE, encode_request
from wgsigd import mmsg
from wgsigd.config import load_config
from wgsigd.daemon import CHORE_EVERY, Daemon

SECRET = bytes(range(32))


def _daemon(tmp_path: Path, sock: socket.socket, batch: bool) -> Daemon:
    secret = tmp_path / "g.key"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    (tmp_path / "c.toml").write_text(
        f'port = 1\nanswer_rate = 0\n[group.g]\nid = 7\nmax_records = 10\nsecret_file = "{secret}"\n')
    daemon = Daemon(load_config(str(tmp_path / "c.toml")), sock)
    daemon.batch_syscalls = batch
    sock.setblocking(False)
    return daemon


@pytest.mark.parametrize("batch", [True, False], ids=["mmsg", "recvfrom"])
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "dual-stack"])
def test_every_request_of_a_pass_is_answered_to_its_source(
    tmp_path: Path, batch: bool, family: socket.AddressFamily
) -> None:
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    if family == socket.AF_INET6:
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            server.bind(("::", 0))
        except OSError:
            pytest.skip("no IPv6 here")
    else:
        server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    daemon = _daemon(tmp_path, server, batch)
    try:
        for c in clients:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            c.connect(("127.0.0.1", port))
        now = int(time.time())
        count = CHORE_EVERY + 44  # more than one pass
        for i in range(count):
            peer = bytes([1]) + i.to_bytes(31, "big")
            clients[i % 3].send(encode_request(peer, encode_label(now, i), 0, 7, SECRET))
        clients[0].send(b"garbage")  # dropped, not answered
        assert daemon._answer_queued(CHORE_EVERY) == CHORE_EVERY
        assert daemon._answer_queued(CHORE_EVERY) == count + 1 - CHORE_EVERY
        assert daemon._answer_queued(CHORE_EVERY) == 0
        assert daemon.server.answered == count
        for k, c in enumerate(clients):
            got = received(c, 0)
            assert len(got) == len(range(k, count, 3))
            assert {len(a) for a in got} == {RESPONSE_SIZE}
        # each source's address, as recvfrom names it, reached the table
        records = list(daemon.server.groups[7].records())
        assert {r.port for r in records} <= {c.getsockname()[1] for c in clients}
        assert {r.ip for r in records} == {"127.0.0.1"}
    finally:
        for s in [server, *clients]:
            s.close()


def test_the_receiver_names_sources_as_recvfrom_does() -> None:
    server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        server.bind(("::", 0))
    except OSError:
        pytest.skip("no IPv6 here")
    server.setblocking(False)
    four = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        port = server.getsockname()[1]
        receiver = mmsg.batch_receiver(server, 2048)
        assert receiver is not None
        assert receiver.receive(10) == []  # empty: no error
        for _ in range(2):
            four.sendto(b"4" * 82, ("127.0.0.1", port))
            six.sendto(b"6" * 3000, ("::1", port))  # longer than the slot: cut, as recvfrom(2048) does
        got = receiver.receive(10)
        for _ in range(2):
            four.sendto(b"4" * 82, ("127.0.0.1", port))
            six.sendto(b"6" * 3000, ("::1", port))
        expected = [server.recvfrom(2048) for _ in range(4)]
        assert got == expected
        assert got[0][1][0] == "::ffff:127.0.0.1" and got[1][1][0] == "::1"
        assert len(got[1][0]) == 2048
    finally:
        for s in (server, four, six):
            s.close()


def test_a_pass_without_the_libc_calls_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wgsigd.daemon

    monkeypatch.setattr(mmsg, "ctypes", None)
    monkeypatch.setattr(wgsigd.daemon, "batch_receiver", mmsg.batch_receiver)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon = _daemon(tmp_path, server, True)
    try:
        client.connect(server.getsockname())
        client.send(encode_request(os.urandom(32), encode_label(int(time.time()), 1), 0, 7, SECRET))
        assert daemon._answer_queued(CHORE_EVERY) == 1
        assert daemon._batches[server] == (None, None)
        assert [len(a) for a in received(client, 0)] == [RESPONSE_SIZE]
    finally:
        server.close()
        client.close()
