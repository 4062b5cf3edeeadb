"""The kernel drops datagrams of impossible lengths at wgsigd's real UDP socket, its own or a
passed one, while valid requests are still answered; its own socket gets a large receive buffer.

Real wgsigd processes on loopback.  What the kernel dropped is read from its per-socket drop
counter (/proc/net/udp and udp6, last column): a datagram the filter drops is counted there and
never reaches wgsigd, whose debug log (``-v``) names every datagram it drops itself.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

from bench.flood import socket_drops  # the kernel's drop counter, as the flood bench reads it
from tests.procs import Wgsigd, free_udp_port, query, write_secret
from tests.test_activation import base_env, exchange, free_port, socket_activate, stop, wgsigd_command, write_config
from wgsig.client import GroupCredentials
from wgsigd.config import DaemonConfig

SECRET = bytes(range(1, 33))
# Lengths no request to a plain group can have: 0, 81, 83, 97, 200 random bytes (within the
# lengths of a plain X1 request, but without its block header), 359, 1,400.
IMPOSSIBLE = [0, 81, 83, 97, 200, 359, 1400]


def send_impossible(port: int, family: socket.AddressFamily = socket.AF_INET) -> None:
    rng = random.Random(5)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for size in IMPOSSIBLE:
            data = bytearray(rng.randbytes(size))
            if size >= 50:
                data[46:50] = bytes(4)  # group 0, the configured one: the engine would look further
            sock.sendto(bytes(data), ("127.0.0.1" if family == socket.AF_INET else "::1", port))


def own_socket_server(tmp_path: Path, encrypt: bool = False) -> tuple[Wgsigd, GroupCredentials]:
    """A real wgsigd on its own socket (127.0.0.1), one group, debug log on."""
    port = free_udp_port()
    credentials = GroupCredentials(0, SECRET, encrypt=encrypt)
    config = tmp_path / "wgsigd.toml"
    config.write_text(f'listen = "127.0.0.1"\nport = {port}\n[group.zero]\nid = 0\nencrypt = {str(encrypt).lower()}\n'
                      f'secret_file = "{write_secret(tmp_path / "k", SECRET)}"\n')
    return Wgsigd(["--config", str(config), "-v"], port, credentials, tmp_path / "wgsigd.log"), credentials


def test_own_socket_drops_impossible_lengths_in_the_kernel(tmp_path: Path) -> None:
    server, credentials = own_socket_server(tmp_path)
    port = server.port
    try:
        before = socket_drops(port)
        send_impossible(port)
        assert query(port, credentials, bytes([0xA5]) * 32, clflg=0) is not None  # still answered
        assert socket_drops(port) - before == len(IMPOSSIBLE)
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert "dropped datagram" not in log, log  # none of them reached the engine
    assert "socket filter" not in log, log


def test_passed_socket_drops_impossible_lengths_in_the_kernel(tmp_path: Path) -> None:
    """systemd-socket-activate passes a dual-stack socket; the filter works on it, IPv4 and IPv6."""
    port = free_port()
    config = write_config(tmp_path, port)
    log = tmp_path / "wgsigd.log"
    proc = socket_activate([str(port)], wgsigd_command("fallback", "--config", str(config), "-v"), base_env(), log)
    try:
        exchange(port, bytes([0xA1]) * 32, clflg=0)  # starts wgsigd, which attaches the filter
        before = socket_drops(port)
        send_impossible(port)
        send_impossible(port, socket.AF_INET6)
        assert exchange(port, bytes([0xB2]) * 32, clflg=0)  # still answered
        assert socket_drops(port) - before == 2 * len(IMPOSSIBLE)
    finally:
        assert stop(proc) == 0, log.read_text()
    text = log.read_text()
    assert "dropped datagram" not in text, text
    assert "socket filter" not in text, text


def test_an_encrypted_group_keeps_every_length_from_98_bytes(tmp_path: Path) -> None:
    """The filter follows the groups: with an encrypted group, 200 and 1,400 bytes may be requests
    (the envelope's pad has no bound), so they reach the engine, which drops them itself."""
    server, credentials = own_socket_server(tmp_path, encrypt=True)
    port = server.port
    try:
        before = socket_drops(port)
        send_impossible(port)
        assert query(port, credentials, bytes([0xA5]) * 32, clflg=0) is not None
        kept = [size for size in IMPOSSIBLE if size >= 98]
        assert socket_drops(port) - before == len(IMPOSSIBLE) - len(kept)
    finally:
        assert server.stop() == 0
    assert server.log.read_text().count("dropped datagram") == len(kept)


def test_own_socket_gets_a_receive_buffer_for_bursts() -> None:
    from wgsigd.cli import bind_socket
    from wgsigd.shedding import RECEIVE_BUFFER

    port = free_udp_port()
    sock = bind_socket(DaemonConfig(groups=(), listen="127.0.0.1", port=port))
    try:
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
        wanted = RECEIVE_BUFFER if os.geteuid() == 0 else min(RECEIVE_BUFFER, rmem_max)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 2 * wanted  # the kernel doubles it
    finally:
        sock.close()
