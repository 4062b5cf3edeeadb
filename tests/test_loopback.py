"""The real wgsigd and wgsigc programs over real loopback UDP sockets."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from tests.procs import Wgsigd, env, free_udp_port, query, write_secret
from wgsig.client import GroupCredentials
from wgsig.keys import PublicKey

SECRET = bytes(range(32))


def key(i: int) -> str:
    return base64.b64encode(bytes([i]) * 31 + b"\x01").decode()


def peers_in(stdout: str) -> dict[str, str]:
    """PublicKey -> Endpoint of every [Peer] block of a skeleton."""
    peers, current = {}, None
    for line in stdout.splitlines():
        if line.startswith("PublicKey = "):
            current = line.removeprefix("PublicKey = ")
        elif line.startswith("Endpoint = ") and current:
            peers[current] = line.removeprefix("Endpoint = ")
    return peers


def test_group_of_25_peers_end_to_end(tmp_path: Path) -> None:
    secret = write_secret(tmp_path / "secret", SECRET)
    port = free_udp_port()
    server = Wgsigd([str(secret), str(port), "--state-dir", str(tmp_path / "state")], port,
                    GroupCredentials(0, SECRET), tmp_path / "wgsigd.log")
    try:
        local_ports = {i: free_udp_port(parity=0) for i in range(1, 26)}
        procs = {}
        for i, local in local_ports.items():  # all 25 register at once
            procs[i] = subprocess.Popen(
                [sys.executable, "-m", "wgsigc", "127.0.0.1", str(port), key(i), str(secret), str(local)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
            )
        for p in procs.values():
            assert p.wait(timeout=60) == 0, p.stderr.read() if p.stderr else ""
        # A refresh from an odd port sees all 24 others at their registered ports: three datagrams.
        refresh = subprocess.run(
            [sys.executable, "-m", "wgsigc", "127.0.0.1", str(port), key(1), str(secret), str(free_udp_port(1))],
            capture_output=True, text=True, env=env(), timeout=30, check=True,
        )
        expected = {key(i): f"127.0.0.1:{local_ports[i]}" for i in range(2, 26)}
        assert peers_in(refresh.stdout) == expected
        assert f"# Public endpoint = 127.0.0.1:{local_ports[1]}" in refresh.stdout
        assert "[Interface]" not in refresh.stdout
    finally:
        assert server.stop() == 0
    # Saved on SIGTERM, loaded at start: a restart loses nothing.
    server = Wgsigd([str(secret), str(port), "--state-dir", str(tmp_path / "state")], port,
                    GroupCredentials(0, SECRET), tmp_path / "wgsigd2.log")
    try:
        records = query(port, GroupCredentials(0, SECRET), PublicKey.from_text(key(1)))
        assert records is not None
        assert {base64.b64encode(r.peer_id).decode(): r.endpoint for r in records} == {
            key(i): f"127.0.0.1:{p}" for i, p in local_ports.items()
        }
    finally:
        server.stop()


def test_several_groups_plain_and_encrypted(tmp_path: Path) -> None:
    plain = write_secret(tmp_path / "plain.key", SECRET)
    enc_secret = os.urandom(32)
    enc = write_secret(tmp_path / "enc.key", enc_secret)
    port = free_udp_port()
    config = tmp_path / "wgsigd.toml"
    config.write_text(
        f'listen = "127.0.0.1"\nport = {port}\nstate_directory = "{tmp_path / "state"}"\n'
        f'[group.office]\nid = 7\nsecret_file = "{plain}"\n'
        f'[group.lab]\nid = 8\nsecret_file = "{enc}"\nencrypt = true\nmax_records = 3\n'
    )
    server = Wgsigd(["--config", str(config)], port, GroupCredentials(7, SECRET), tmp_path / "wgsigd.log")
    try:
        def client(i: int, group: int, secret: Path, *extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "wgsigc", "127.0.0.1", str(port), key(i), str(secret),
                 str(free_udp_port(0)), "--group", str(group), *extra],
                capture_output=True, text=True, env=env(), timeout=30, check=False,
            )

        assert client(1, 7, plain).returncode == 0
        for i in (2, 3, 4, 5):
            assert client(i, 8, enc, "--encrypt").returncode == 0
        office = query(port, GroupCredentials(7, SECRET), b"\x42" * 32)
        lab = query(port, GroupCredentials(8, enc_secret, encrypt=True), b"\x42" * 32)
        assert office is not None and lab is not None
        assert [r.peer_id for r in office] == [PublicKey.from_text(key(1))]
        # max_records = 3: the least recently updated (peer 2) was evicted.
        assert sorted(r.peer_id[0] for r in lab) == [3, 4, 5]
        # Wrong group, wrong encryption setting: no answer, and a clear diagnosis.
        wrong = client(9, 8, enc, "--attempts", "1", "--timeout", "0.3")
        assert wrong.returncode == 2
        assert "likely causes" in wrong.stderr and "Traceback" not in wrong.stderr
    finally:
        assert server.stop() == 0
