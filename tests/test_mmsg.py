"""wgsigd/mmsg.py: answers sent with sendmmsg(2) arrive as sendto would send them, on real sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.procs import received
from wgsigd import mmsg


def _receivers(family: int, host: str, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((host, 0))
        s.settimeout(2)
        socks.append(s)
    return socks


@pytest.fixture
def ipv4() -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    receivers = _receivers(socket.AF_INET, "127.0.0.1", 3)
    yield sender, receivers
    for s in [sender, *receivers]:
        s.close()


def test_queued_datagrams_arrive_at_their_sources_in_order(ipv4: tuple[socket.socket, list[socket.socket]]) -> None:
    sender, receivers = ipv4
    batch = mmsg.batch_sender(sender)
    assert batch is not None
    for i in range(30):
        batch.add(bytes([i]) * (1 + i * 40), receivers[i % 3].getsockname())
    assert received(receivers[0], 0.2) == []  # nothing before the flush
    batch.flush()
    for r, receiver in enumerate(receivers):
        assert received(receiver, 0.2) == [bytes([i]) * (1 + i * 40) for i in range(r, 30, 3)]


def test_a_full_batch_goes_out_by_itself_and_large_datagrams_on_their_own(
    ipv4: tuple[socket.socket, list[socket.socket]],
) -> None:
    sender, receivers = ipv4
    batch = mmsg.batch_sender(sender)
    assert batch is not None
    target = receivers[0].getsockname()
    for i in range(mmsg.CAPACITY):
        batch.add(i.to_bytes(2, "big"), target)
    big = bytes(mmsg.SLOT_SIZE + 1)
    batch.add(big, target)  # flushes what is queued first: the order stays
    got = received(receivers[0], 0.2)
    assert got == [i.to_bytes(2, "big") for i in range(mmsg.CAPACITY)] + [big]


def test_a_datagram_that_cannot_be_sent_is_skipped_and_the_rest_arrive(
    ipv4: tuple[socket.socket, list[socket.socket]],
) -> None:
    sender, receivers = ipv4
    batch = mmsg.batch_sender(sender)
    assert batch is not None
    target = receivers[0].getsockname()
    batch.add(b"one", target)
    batch.add(b"nowhere", ("127.0.0.1", 0))  # port 0: the kernel refuses it (EINVAL), as sendto does
    batch.add(b"two", target)
    batch.flush()
    assert received(receivers[0], 0.2) == [b"one", b"two"]


def test_a_dual_stack_socket_sends_to_ipv6_and_mapped_ipv4_sources() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sender.bind(("::", 0))
    except OSError:
        pytest.skip("no IPv6 socket here")
    six = _receivers(socket.AF_INET6, "::1", 1)[0]
    four = _receivers(socket.AF_INET, "127.0.0.1", 1)[0]
    try:
        batch = mmsg.batch_sender(sender)
        assert batch is not None
        batch.add(b"v6", six.getsockname())
        batch.add(b"v4", ("::ffff:127.0.0.1", four.getsockname()[1], 0, 0))
        batch.add(b"scoped", ("fe80::1%nosuchif", 9, 0, 0))  # a scope name: left to sendto, which fails
        batch.flush()
        assert received(six, 0.2) == [b"v6"]
        assert received(four, 0.2) == [b"v4"]
    finally:
        for s in (sender, six, four):
            s.close()


def test_without_sendmmsg_there_is_no_batch_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mmsg, "ctypes", None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert mmsg.batch_sender(sock) is None
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        monkeypatch.undo()
        assert mmsg.batch_sender(sock) is None
