"""Known sources first (issue 12, point 7): wgsigd on a passed pair of SO_REUSEPORT sockets.

Real wgsigd processes on loopback, on sockets bound and passed as systemd passes them
(bench/pair_activate.py: LISTEN_FDS, descriptors 3 and 4, one reuseport group).  Which socket
queued a datagram is read from /proc/net/udp (rx_queue and drops, by the socket's inode).  To
saturate a queue deterministically, wgsigd is stopped (SIGSTOP) while the flood fills it.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.procs import collect_answer, free_udp_port, write_secret
from wgsig.client import GroupCredentials, build_request
from wgsig.label import label_from_ns

ROOT = Path(__file__).resolve().parent.parent
SECRET = bytes(range(3, 35))
CREDENTIALS = GroupCredentials(0, SECRET)
KNOWN, NEW, FLOOD, PROBE = "127.0.3.1", "127.0.3.2", "127.0.3.200", "127.0.3.9"


def start(tmp_path: Path, sockets: int, swap: bool = False, port: int = 0) -> tuple[subprocess.Popen[bytes], int, Path]:
    """wgsigd on ``sockets`` (1 or 2) passed sockets of 127.0.0.1 (``swap``: the pair passed the other way
    round); returns once it answers."""
    port = port or free_udp_port()
    secret = write_secret(tmp_path / "zero.key", SECRET)
    config = tmp_path / "wgsigd.toml"
    config.write_text(f'listen = "127.0.0.1"\nport = {port}\nstate_directory = "{tmp_path / "state"}"\n'
                      f'[group.zero]\nid = 0\nsecret_file = "{secret}"\n')
    log = tmp_path / "wgsigd.log"
    command = [sys.executable, str(ROOT / "bench" / "pair_activate.py"), "127.0.0.1", str(port),
               *(["--one"] if sockets == 1 else []), *(["--swap"] if swap else []), "--",
               sys.executable, "-m", "wgsigd", "--config", str(config)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
    deadline = time.monotonic() + 15
    while ask(port, PROBE, b"\x09" * 32, timeout=0.2) is None:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"wgsigd did not answer: {log.read_text()}")
    return proc, port, log


def ask(
    port: int, source: str, peer_id: bytes, timeout: float = 2.0, sock: socket.socket | None = None
) -> float | None:
    """One registration from ``source``; seconds until its whole answer, or None."""
    own = sock is None
    if sock is None:
        sock = bound(source, port)
    try:
        started = time.monotonic()
        send_registration(sock, peer_id)
        return None if collect_answer(sock, CREDENTIALS, timeout) is None else time.monotonic() - started
    finally:
        if own:
            sock.close()


def send_registration(sock: socket.socket, peer_id: bytes) -> None:
    """A registration (CLFLG 0) of ``peer_id`` on the connected ``sock``, its answer not read."""
    sock.send(build_request(CREDENTIALS, peer_id, label_from_ns(time.time_ns()), 0, os.urandom))


def bound(source: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def queues(pid: int, count: int) -> list[tuple[int, int]]:
    """(bytes queued, drops) of the passed sockets at descriptors 3.. of ``pid``, in that order."""
    inodes = [int(os.readlink(f"/proc/{pid}/fd/{3 + i}").split("[")[1].rstrip("]")) for i in range(count)]
    found: dict[int, tuple[int, int]] = {}
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            fields = line.split()
            found[int(fields[9])] = (int(fields[4].split(":")[1], 16), int(fields[-1]))
    return [found[inode] for inode in inodes]


def garbage(rng: random.Random) -> bytes:
    """82 random bytes for group 0: the socket filter keeps them, only the HMAC tells."""
    data = bytearray(rng.randbytes(82))
    data[46:50] = bytes(4)
    return bytes(data)


def fill(port: int, pid: int, sockets: int, index: int) -> None:
    """Flood from FLOOD until socket ``index`` (of a stopped wgsigd) drops datagrams: its queue is full."""
    rng = random.Random(7)
    with bound(FLOOD, port) as sock:
        before = queues(pid, sockets)[index][1]
        for _ in range(200):
            for _ in range(500):
                sock.send(garbage(rng))
            if queues(pid, sockets)[index][1] > before:
                return
    pytest.fail("the queue did not fill")


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """wgsigd stopped (SIGSTOP): what is sent meanwhile waits in its sockets' queues."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextmanager
def serving(tmp_path: Path, sockets: int, swap: bool = False, port: int = 0
            ) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``start``'s wgsigd, its process, port and log; at the end terminated, and it must exit 0."""
    proc, port, log = start(tmp_path, sockets, swap, port)
    try:
        yield proc, port, log
    finally:
        proc.terminate()
        assert proc.wait(15) == 0, log.read_text()


def wait_known(port: int, pid: int, source: str, peer_id: bytes, known: int = 0) -> None:
    """Register from ``source`` until, with wgsigd stopped, its request queues on the passed socket
    ``known`` (0: descriptor 3, 1: descriptor 4), not on the other."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert ask(port, source, peer_id) is not None
        with stopped(pid), bound(source, port) as sock:
            send_registration(sock, peer_id)
            time.sleep(0.05)
            steered, other = queues(pid, 2)[known], queues(pid, 2)[1 - known]
        if steered[0] and not other[0]:
            while queues(pid, 2)[known][0] and time.monotonic() < deadline:  # let wgsigd read it
                time.sleep(0.01)
            return
        time.sleep(0.3)  # the program is rebuilt at most once a second
    pytest.fail(f"{source} never steered to the known sources' socket")


@pytest.mark.parametrize("swap", [False, True], ids=["in-order", "swapped"])
def test_a_known_peer_is_answered_while_the_other_queue_is_full(tmp_path: Path, swap: bool) -> None:
    """``swapped``: descriptor 3 is the socket that joined the reuseport group second; wgsigd notices
    that known sources arrive on the socket it reads second and reads that one first."""
    known, other = (1, 0) if swap else (0, 1)
    with serving(tmp_path, 2, swap) as (proc, port, log):
        wait_known(port, proc.pid, KNOWN, b"\xa1" * 32, known)
        if swap:
            deadline = time.monotonic() + 15
            while "reading it first" not in log.read_text() and time.monotonic() < deadline:
                assert ask(port, KNOWN, b"\xa1" * 32) is not None
                time.sleep(0.2)
            assert "reading it first" in log.read_text(), log.read_text()
        with bound(KNOWN, port) as peer:
            with stopped(proc.pid):
                fill(port, proc.pid, 2, other)
                queued_known, drops_known = queues(proc.pid, 2)[known]
                assert queued_known == 0 and drops_known == 0, "the flood reached the known sources' socket"
                assert queues(proc.pid, 2)[other][0] > 1 << 20
            # Thousands of flood datagrams wait on the other socket; the known peer's request is read first.
            latency = ask(port, KNOWN, b"\xa1" * 32, timeout=2.0, sock=peer)
        assert latency is not None, log.read_text()
        assert queues(proc.pid, 2)[known][1] == 0
    text = log.read_text()
    assert "(a pair: known sources first)" in text, text
    assert "cannot attach" not in text, text
    assert ("reading it first" in text) == swap, text


def test_a_new_peer_is_registered_and_then_known(tmp_path: Path) -> None:
    with serving(tmp_path, 2) as (proc, port, _):
        assert ask(port, NEW, b"\xb2" * 32) is not None  # through the other sources' socket
        wait_known(port, proc.pid, NEW, b"\xb2" * 32)


def test_the_loaded_records_addresses_are_known_at_start(tmp_path: Path) -> None:
    with serving(tmp_path, 2) as (_, port, _):
        assert ask(port, KNOWN, b"\xa1" * 32) is not None
    with serving(tmp_path, 2, port=port) as (proc, port, _):  # loads the record of KNOWN
        with stopped(proc.pid):
            with bound(KNOWN, port) as sock:
                send_registration(sock, b"\xa1" * 32)
                time.sleep(0.05)
                first, second = queues(proc.pid, 2)
            assert first[0] and not second[0], (first, second)


def test_one_passed_socket_is_served_as_before(tmp_path: Path) -> None:
    """One socket: no reuseport program, and a full queue drops a known peer's request too."""
    with serving(tmp_path, 1) as (proc, port, log):
        assert ask(port, KNOWN, b"\xa1" * 32) is not None
        time.sleep(1.2)
        with stopped(proc.pid):
            fill(port, proc.pid, 1, 0)
            with bound(KNOWN, port) as peer:
                dropped = queues(proc.pid, 1)[0][1]
                send_registration(peer, b"\xa1" * 32)
                time.sleep(0.05)
                assert queues(proc.pid, 1)[0][1] == dropped + 1  # the known peer's request was dropped
        deadline = time.monotonic() + 10
        while queues(proc.pid, 1)[0][0] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ask(port, KNOWN, b"\xa1" * 32) is not None  # once the queue is read
    text = log.read_text()
    assert "known sources" not in text, text
    assert "wgsigd serving on 127.0.0.1:" in text, text


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "dual-stack"])
def test_the_kernel_steers_as_the_program_says(family: socket.AddressFamily) -> None:
    """The largest program (MAX_STEERED_SOURCES addresses) on a real pair: every decision right, on an
    IPv4 pair and on a dual-stack one (IPv4 datagrams arrive with their IPv4 header; IPv6 is unknown)."""
    from bench.pair_activate import bind_pair
    from wgsig.sockfilter import MAX_STEERED_SOURCES
    from wgsigd.shedding import attach_source_steering, is_reuseport_pair

    known = [f"127.0.{4 + i // 250}.{1 + i % 250}" for i in range(MAX_STEERED_SOURCES)]
    pair = bind_pair("::" if family == socket.AF_INET6 else "127.0.0.1", 0)
    try:
        assert is_reuseport_pair(*pair)
        assert attach_source_steering(pair[1], [int.from_bytes(socket.inet_aton(ip), "big") for ip in known])
        port = pair[0].getsockname()[1]
        probes = [*random.Random(3).sample(known, 40), "127.0.3.250", "127.0.12.1", "127.0.4.251", "127.0.0.1"]
        for source in probes:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind((source, 0))
                sock.sendto(source.encode(), ("127.0.0.1", port))
        if family == socket.AF_INET6:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"::1", ("::1", port))
            probes.append("::1")
        time.sleep(0.1)
        arrived = {}
        for index, sock in enumerate(pair):
            sock.setblocking(False)
            while True:
                try:
                    arrived[sock.recv(64).decode()] = index
                except BlockingIOError:
                    break
        assert arrived == {ip: 0 if ip in known else 1 for ip in probes}
    finally:
        for sock in pair:
            sock.close()


def pair_daemon(tmp_path: Path) -> tuple[Any, list[socket.socket]]:
    """A Daemon (not run) on a real pair, for its steering chores."""
    from bench.pair_activate import bind_pair
    from wgsigd.config import load_config
    from wgsigd.daemon import Daemon

    secret = write_secret(tmp_path / "zero.key", SECRET)
    (tmp_path / "c.toml").write_text(f'port = 1\n[group.zero]\nid = 0\nsecret_file = "{secret}"\n')
    pair = bind_pair("127.0.0.1", 0)
    return Daemon(load_config(str(tmp_path / "c.toml")), pair[0], others=pair[1]), pair


def test_a_refused_program_is_one_warning_and_then_one_line_when_it_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import wgsigd.daemon

    caplog.set_level(logging.INFO, logger="wgsigd")
    daemon, pair = pair_daemon(tmp_path)
    try:
        monkeypatch.setattr(wgsigd.daemon, "attach_source_steering", lambda sock, addresses: False)
        daemon._known.update({"127.0.3.1": True, "::1": True})
        for _ in range(3):
            daemon._update_steering()
        assert [r.levelname for r in caplog.records] == ["WARNING"], caplog.text
        assert "1 known sources" in caplog.text
        seen: list[list[int]] = []
        monkeypatch.setattr(wgsigd.daemon, "attach_source_steering",
                            lambda sock, addresses: seen.append(addresses) or True)
        daemon._update_steering()
        assert seen == [[0x7F000301]]  # IPv6 is never steered
        assert "known sources first again: 1 addresses" in caplog.text
    finally:
        for sock in pair:
            sock.close()


def test_the_roles_swap_only_on_known_sources_read_from_the_second_socket_alone(tmp_path: Path) -> None:
    d, pair = pair_daemon(tmp_path)
    try:
        d._on_second, d._on_first = 3, 1
        d._check_order()
        assert (d.sock, d.others) == (pair[0], pair[1])
        d._on_second = 2
        d._check_order()
        assert (d.sock, d.others) == (pair[0], pair[1])
        d._on_second = 3
        d._check_order()
        assert (d.sock, d.others) == (pair[1], pair[0])
        assert (d._on_first, d._on_second) == (0, 0)
    finally:
        for sock in pair:
            sock.close()
