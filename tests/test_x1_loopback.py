"""X1 end to end with the real wgsigd over real UDP sockets on 127.0.0.1 and ::1 (no fakes):
a dual-stack wgsigd (listen = "::"), an IPv6 registration, candidates in a request block, and
what another peer's X1 fetch gets back; the same server still answers the base protocol as before."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from tests.procs import Wgsigd, free_udp_port, write_secret
from wgsig import x1
from wgsig.client import AnswerCollector, GroupCredentials, build_request
from wgsig.label import label_from_ns
from wgsig.x1 import Item, ItemType

SECRET = bytes(range(7, 39))
CREDS = GroupCredentials(0, SECRET)
A, B = b"\xa1" * 32, b"\xb2" * 32


def exchange(family: int, address: tuple[str, int], peer: bytes, clflg: int,
             items: list[Item] | None = None) -> tuple[AnswerCollector, int, int]:
    """One request from a fresh socket; the collector, our source port, and bytes received."""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.send(build_request(CREDS, peer, label_from_ns(time.time_ns()), clflg, os.urandom, items))
        sock.settimeout(2)
        collector = AnswerCollector(CREDS)
        received = 0
        while not collector.complete:
            data = sock.recv(4096)
            received += len(data)
            collector.receive_datagram(data)
        time.sleep(0.03)  # consecutive labels of one peer 25 ms apart, as clients do
        return collector, sock.getsockname()[1], received


def test_dual_stack_server_records_ipv6_and_candidates_for_x1_peers_only(tmp_path: Path) -> None:
    secret = write_secret(tmp_path / "secret", SECRET)
    port = free_udp_port()
    (tmp_path / "wgsigd.toml").write_text(
        f'listen = "::"\nport = {port}\nstate_directory = "{tmp_path}/state"\n'
        f'[group.g]\nid = 0\nsecret_file = "{secret}"\n'
    )
    server = Wgsigd(["--config", str(tmp_path / "wgsigd.toml")], port, CREDS, tmp_path / "wgsigd.log")
    try:
        v4, v6 = ("127.0.0.1", port), ("::1", port)
        # A: registers over IPv4 and over IPv6, then announces its LAN address.
        _, a_port, _ = exchange(socket.AF_INET, v4, A, 0 | x1.XA)
        _, a6_port, _ = exchange(socket.AF_INET6, v6, A, 0 | x1.XA)
        lan = [Item(ItemType.HOST4, "192.168.5.5", 51820)]
        answer, _, _ = exchange(socket.AF_INET, v4, A, 1 | x1.XA, lan)
        assert answer.svext == x1.SV_XR_OK | x1.SV_V6
        # B: IPv6 only.
        exchange(socket.AF_INET6, v6, B, 0 | x1.XA)
        seen, _, size = exchange(socket.AF_INET6, v6, B, 1 | x1.XA)
        records = {r.peer_id: (r.ip, r.port) for r in seen.records()}
        assert records == {A: ("127.0.0.1", a_port), B: ("0.0.0.0", 0)}
        items, requester = seen.entries()
        assert items[A] == [Item(ItemType.OBS6, "::1", a6_port), lan[0]]
        assert items[B][0].type == ItemType.OBS6 and requester[0].type == ItemType.OBS
        assert size > 540  # the block came along
        # A client of the base protocol (no XA) sees A only, in 540 bytes, SVEXT 0: as before.
        legacy, _, size = exchange(socket.AF_INET, v4, B, 3)
        assert [r.peer_id for r in legacy.records()] == [A] and legacy.svext == 0 and size == 540
    finally:
        assert server.stop() == 0
    log = (tmp_path / "wgsigd.log").read_text()
    assert "X1 over IPv6" in log, log  # B's first registration
