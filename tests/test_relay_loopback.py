"""The relay end to end on loopback, with real UDP sockets and no fakes: the real wgsigd decides
the allocation from two peers' X1 requests, the real relay process (``wgsigd relay``) reads the
allocation file and forwards WireGuard-shaped datagrams between two sockets standing in for the
peers' WireGuard ports (127.0.0.2 and 127.0.0.3; an attacker at 127.0.0.4, a peer of another
group at 127.0.0.5). Spoofed and unregistered sources, another group, other shapes and a port
scan get nothing through; the rate limit, the idle timeout and the allocation's expiry are
observed with short settings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.procs import ROOT, Wgsigd, env, free_udp_port, free_udp_range, write_secret
from tests.x1_exchange import exchange
from wgsig import x1
from wgsig.client import AnswerCollector, GroupCredentials
from wgsig.x1 import ItemType

SECRET = bytes(range(7, 39))
OTHER = bytes(range(60, 92))
CREDS = GroupCredentials(0, SECRET)
OTHER_CREDS = GroupCredentials(5, OTHER)
A, B = b"\xa1" * 32, b"\xb2" * 32
LIFETIME = 8
IDLE = 2


def wg(size: int, kind: int = 4) -> bytes:
    return bytes((kind, 0, 0, 0)) + os.urandom(size - 4)


def ask(server: int, ip: str, creds: GroupCredentials, peer: bytes, clflg: int, relay_to: list[bytes] | None = None,
        sock: socket.socket | None = None) -> AnswerCollector:
    """``exchange`` from ``sock``, or from a new socket of ``ip`` closed after."""
    if sock is not None:
        return exchange(sock, ("127.0.0.1", server), creds, peer, clflg, relay_to)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as own:
        own.bind((ip, 0))
        return exchange(own, ("127.0.0.1", server), creds, peer, clflg, relay_to)


def relay_of(collector: AnswerCollector, peer: bytes) -> tuple[str, int] | None:
    items, _ = collector.entries()
    return next(((i.host, i.port) for i in items.get(peer, []) if i.type == ItemType.RELAY), None)


def received(sock: socket.socket, wait: float = 0.3) -> list[tuple[bytes, tuple[str, int]]]:
    got = []
    sock.settimeout(wait)
    try:
        while True:
            data, source = sock.recvfrom(4096)
            got.append((data, source))
            sock.settimeout(0.05)
    except TimeoutError:
        return got


def wait_for(path: Path, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path}: {path.read_text() if path.exists() else '(missing)'}")


def test_relay_forwards_only_wireguard_datagrams_between_consenting_registered_peers(tmp_path: Path) -> None:
    secret = write_secret(tmp_path / "secret", SECRET)
    other = write_secret(tmp_path / "other", OTHER)
    port = free_udp_port()
    low = free_udp_range(10)
    config = tmp_path / "wgsigd.toml"
    config.write_text(
        f'listen = "127.0.0.1"\nport = {port}\nstate_directory = "{tmp_path}/state"\n'
        f'[group.g]\nid = 0\nsecret_file = "{secret}"\n[group.h]\nid = 5\nsecret_file = "{other}"\n'
        f'[relay]\naddress = "127.0.0.1"\nlisten = "127.0.0.1"\nports = "{low}-{low + 9}"\n'
        f"lifetime = {LIFETIME}\nidle_timeout = {IDLE}\nrate = 50000\nburst = 30000\n"
    )
    (tmp_path / "state").mkdir()
    server = Wgsigd(["--config", str(config)], port, CREDS, tmp_path / "wgsigd.log")
    relay_log = tmp_path / "relay.log"
    with relay_log.open("w") as log_file:
        relay = subprocess.Popen([sys.executable, "-m", "wgsigd", "relay", "--config", str(config)],
                                 stdout=log_file, stderr=subprocess.STDOUT, env=env(), cwd=ROOT)
    wg_a, wg_b, attacker = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    try:
        wg_a.bind(("127.0.0.2", 0))
        wg_b.bind(("127.0.0.3", 0))
        attacker.bind(("127.0.0.4", 0))
        # Registrations from the "WireGuard" ports, then label-storing fetches asking for each other.
        ask(port, "127.0.0.2", CREDS, A, 0 | x1.XA, sock=wg_a)
        ask(port, "127.0.0.3", CREDS, B, 0 | x1.XA, sock=wg_b)
        first = ask(port, "127.0.0.2", CREDS, A, 1 | x1.XA, [B])
        assert first.svext & x1.SV_RELAY and relay_of(first, B) is None  # B has not asked yet
        to_a = relay_of(ask(port, "127.0.0.3", CREDS, B, 1 | x1.XA, [A]), A)
        to_b = relay_of(ask(port, "127.0.0.2", CREDS, A, 1 | x1.XA, [B]), B)
        assert to_a is not None and to_b is not None and to_a != to_b
        assert to_a[0] == "127.0.0.1" and low <= to_a[1] <= low + 9 and low <= to_b[1] <= low + 9
        # Another group's peer with B's very ID, registered elsewhere, asking for A: nothing.
        ask(port, "127.0.0.5", OTHER_CREDS, B, 0 | x1.XA)
        assert relay_of(ask(port, "127.0.0.5", OTHER_CREDS, B, 1 | x1.XA, [A]), A) is None
        wait_for(relay_log, "relaying 1 allocations")
        allocations = (tmp_path / "state" / "relay-allocations").read_text().splitlines()
        assert len(allocations) == 2 and allocations[1].startswith("0 ")  # one, group 0

        # A sends first (latches A; nothing to forward to), B's datagram reaches A, and back.
        wg_a.sendto(wg(148, 1), to_b)
        assert received(wg_b) == []
        hello = wg(92, 2)
        wg_b.sendto(hello, to_a)
        assert received(wg_a) == [(hello, to_b)]  # from the port A sends to: A's WireGuard stays there
        data = wg(32 + 16 * 88)  # 1,440 bytes
        wg_a.sendto(data, to_b)
        assert received(wg_b) == [(data, to_a)]

        # Spoofed and unregistered sources: the attacker, B's address on A's port, any port.
        attacker.sendto(wg(64, 3), to_b)
        attacker.sendto(wg(32), to_a)
        wg_b.sendto(wg(32), to_b)  # B's registered address, but A's side of the allocation
        for scanned in range(low, low + 10):
            attacker.sendto(wg(148, 1), ("127.0.0.1", scanned))
        # Other shapes from the right source.
        for junk in (bytes(82), wg(33), wg(148, 2), wg(100, 1), b"\x05\x00\x00\x00" + bytes(28), b"hello"):
            wg_a.sendto(junk, to_b)
        assert received(wg_a) == [] and received(wg_b) == [] and received(attacker) == []

        # Renew (both sides), then the rate limit: 30,000 bytes at once, 50,000 a second.
        ask(port, "127.0.0.2", CREDS, A, 1 | x1.XA, [B])
        ask(port, "127.0.0.3", CREDS, B, 1 | x1.XA, [A])
        time.sleep(0.7)  # the bucket fills again
        wg_b.sendto(wg(32), to_a)  # keep B's latch fresh
        received(wg_a, 0.1)
        started = time.monotonic()
        for _ in range(200):
            wg_a.sendto(data, to_b)
        spent = time.monotonic() - started
        got = len(received(wg_b, 0.5))
        allowed = (30000 + 50000 * (spent + 0.05)) / len(data) + 1
        assert 10 <= got <= allowed < 200, (got, spent)

        # Idle: B silent for longer than idle_timeout -> its latch is no longer a destination.
        time.sleep(IDLE + 0.5)
        wg_a.sendto(wg(32), to_b)
        assert received(wg_b) == []
        wg_b.sendto(wg(32), to_a)
        assert len(received(wg_a)) == 1  # B is back (and A's latch was refreshed just now)

        # Expiry: nobody renews; lifetime seconds after the last requests nothing passes any more.
        deadline = time.monotonic() + LIFETIME + 8
        while time.monotonic() < deadline:
            wg_b.sendto(wg(32), to_a)
            wg_a.sendto(wg(32), to_b)
            if not received(wg_b, 0.5):
                break
        else:
            pytest.fail("the allocation did not expire")
        wait_for(relay_log, "relaying 0")  # its lease expired, or the file came without it first
        # wgsigd forgets it too (its chores run at least every 5 s when idle) and rewrites the file.
        allocations = tmp_path / "state" / "relay-allocations"
        deadline = time.monotonic() + 10
        while allocations.read_text() != "wgsig-relay-allocations 1\n" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert allocations.read_text() == "wgsig-relay-allocations 1\n"
    finally:
        for s in (wg_a, wg_b, attacker):
            s.close()
        relay.terminate()
        assert relay.wait(timeout=10) == 0
        assert server.stop() == 0
    log = relay_log.read_text()
    assert "Traceback" not in log and "forwarded" in log, log
    print(log)
