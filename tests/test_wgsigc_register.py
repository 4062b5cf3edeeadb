"""Registration from WireGuard's port, for real on loopback: a real wgsigd subprocess, real UDP
and raw sockets. The only stand-in is the port owner: an ordinary UDP socket holds the
"listen port" the way the kernel's WireGuard socket does (the host kernel has no WireGuard;
tests/test_kernel_vm.py covers the real thing). Raw sockets need root (CAP_NET_RAW)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wgsig.client import GroupCredentials
from wgsig.keys import PublicKey
from wgsigc.config import InterfaceConfig, ServerAddress
from wgsigc.exchange import exchange
from wgsigc.kernelmode import Run, _register_and_fetch, _resolve_servers
from wgsigc.plan import InterfaceState
from wgsigc.rawsend import send_from_port, udp_header

ROOT = Path(__file__).resolve().parent.parent
SECRET = bytes(range(100, 132))
OWN = PublicKey(bytes([5]) * 32)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need CAP_NET_RAW")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wgsigd", str(secret), str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        creds = GroupCredentials(0, SECRET)
        for _ in range(100):  # wait until it answers
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                if exchange(s, ("127.0.0.1", port), creds, bytes([6]) * 32, 3, attempts=1,
                            attempt_timeout=0.1).records is not None:
                    break
            time.sleep(0.05)  # refused at once until it listens
        else:
            pytest.fail("wgsigd did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_for(port: int) -> Run:
    config = InterfaceConfig("wg0", (ServerAddress("127.0.0.1", port),), "unused", attempts=3, timeout=0.5)
    run = Run(config, dry_run=False)
    _resolve_servers(run)
    return run


def test_udp_checksum_matches_rfc768_example() -> None:
    # Checksum computed independently: pseudo header 127.0.0.1 -> 127.0.0.1, ports 1000 -> 2000, "hi".
    header = udp_header(("127.0.0.1", 1000), ("127.0.0.1", 2000), b"hi")
    assert header[:6] == bytes.fromhex("03e8 07d0 000a".replace(" ", ""))
    words = (0x7F00 + 0x0001) * 2 + 17 + 10 + 1000 + 2000 + 10 + 0x6869
    while words >> 16:
        words = (words & 0xFFFF) + (words >> 16)
    assert int.from_bytes(header[6:], "big") == ~words & 0xFFFF


@needs_root
@pytest.mark.parametrize(
    ("family", "wildcard", "loopback"), [(socket.AF_INET, "0.0.0.0", "127.0.0.1"), (socket.AF_INET6, "::", "::1")],
    ids=["ipv4", "ipv6"],
)
def test_raw_send_uses_a_port_another_socket_holds_with_a_checksum_the_kernel_accepts(
    family: socket.AddressFamily, wildcard: str, loopback: str
) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as owner, socket.socket(family, socket.SOCK_DGRAM) as receiver:
        owner.bind((wildcard, 0))
        held = owner.getsockname()[1]
        receiver.bind((loopback, 0))
        receiver.settimeout(2)
        send_from_port(held, receiver.getsockname()[:2], b"odd-length payload!", 0)
        data, source = receiver.recvfrom(100)  # a wrong UDP checksum would have been dropped
    assert data == b"odd-length payload!"
    assert source[:2] == (loopback, held)


@needs_root
def test_registers_through_raw_socket_while_port_is_held(server: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as owner:
        owner.bind(("0.0.0.0", 0))
        listen_port = owner.getsockname()[1]
        run = run_for(server)
        state = InterfaceState("wg0", OWN, listen_port)
        _register_and_fetch(run, state, GroupCredentials(0, SECRET))
        (outcome,) = run.servers
        assert outcome.error is None, outcome.error
        assert outcome.registered == ("127.0.0.1", listen_port)
        own = [r for r in outcome.records or [] if r.peer_id == OWN]
        assert [(r.ip, r.port) for r in own] == [("127.0.0.1", listen_port)]
        owner.settimeout(2)
        assert len(owner.recv(2000)) >= 540  # the server's answer went to the port owner (WireGuard drops it)


def test_registers_from_the_port_itself_when_free(server: int) -> None:
    listen_port = free_port()
    run = run_for(server)
    _register_and_fetch(run, InterfaceState("wg0", OWN, listen_port), GroupCredentials(0, SECRET))
    (outcome,) = run.servers
    assert outcome.error is None and outcome.registered == ("127.0.0.1", listen_port)
    # the port is free again for WireGuard
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", listen_port))


def test_wrong_secret_gets_a_diagnosis_not_a_registration(server: int) -> None:
    run = run_for(server)
    _register_and_fetch(run, InterfaceState("wg0", OWN, free_port()), GroupCredentials(0, bytes(32)))
    (outcome,) = run.servers
    assert outcome.records is None and outcome.registered is None
    assert outcome.error is not None and "no answer" in outcome.error


def test_resolve_all_gives_each_family() -> None:
    from wgsigc.exchange import ExchangeError, resolve_all

    assert resolve_all("127.0.0.1", 5) == (("127.0.0.1", 5), None)
    assert resolve_all("::1", 5) == (None, ("::1", 5))
    with pytest.raises(ExchangeError, match="cannot resolve"):
        resolve_all("name.invalid", 5)
