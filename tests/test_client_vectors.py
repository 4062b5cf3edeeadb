"""Every client scenario recorded from the C wgsigc.

The first tests are pure (requests and skeletons from the core); the last one
runs the real ``wgsigc`` program against a real UDP socket that plays the
recorded server's part.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests import vectors
from wgsig.client import AnswerCollector, GroupCredentials, build_request
from wgsig.events import Answered
from wgsig.keys import PublicKey
from wgsig.label import encode_label
from wgsig.server import GroupConfig, Server
from wgsigc.skeleton import format_skeleton

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = vectors.client_scenarios()
WRONG_HMAC_LINE = "received datagram with wrong hmac\n"


def credentials(scenario: dict[str, Any]) -> GroupCredentials:
    return GroupCredentials(0, vectors.secret(), scenario["variant"] == "enc")


def peer_id(scenario: dict[str, Any]) -> bytes:
    key = PublicKey.parse(scenario["argv"][3])
    assert key is not None
    return key


def expected_stdout(scenario: dict[str, Any]) -> str:
    # The C client prints this diagnostic on stdout; wgsigc prints it on stderr.
    return str(scenario["client_stdout"]).replace(WRONG_HMAC_LINE, "")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=vectors.scenario_id)
def test_request_bytes_match_the_c_client(scenario: dict[str, Any]) -> None:
    label = encode_label(scenario["fake_time"], scenario["fake_nsec"])
    clflg = scenario["local_port"] % 2
    nonce = bytes.fromhex(scenario.get("request_nonce_hex", ""))
    # The C client sends no pad: a random source that yields the nonce, then a zero pad length.
    stream = [nonce, b"\x00", b""]
    request = build_request(credentials(scenario), peer_id(scenario), label, clflg, lambda n: stream.pop(0))
    assert request.hex() == scenario["request_wire_hex"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=vectors.scenario_id)
def test_skeleton_matches_the_c_client(scenario: dict[str, Any]) -> None:
    collector = AnswerCollector(credentials(scenario))
    bad = scenario.get("bad_response_first_wire_hex")
    if bad:
        assert not hasattr(collector.receive_datagram(bytes.fromhex(bad)), "complete")
    outcome = collector.receive_datagram(bytes.fromhex(scenario["response_wire_hex"]))
    assert getattr(outcome, "complete", False)
    local_port = scenario["local_port"]
    listen_port = local_port if local_port % 2 == 0 else None
    text = format_skeleton(collector.records(), peer_id(scenario), scenario["fake_time"], listen_port)
    assert text == expected_stdout(scenario)


class FakeServer:
    """A real UDP socket answering each request with recorded datagrams."""

    def __init__(self, answers: list[bytes]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.answers = answers
        self.requests: list[tuple[bytes, tuple[str, int]]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            data, source = self.sock.recvfrom(2048)
        except OSError:
            return
        self.requests.append((data, source))
        for answer in self.answers:
            self.sock.sendto(answer, source)

    def close(self) -> None:
        self.sock.close()


def free_port(parity: int) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("0.0.0.0", 0))
            port = int(probe.getsockname()[1])
        if port % 2 == parity:
            return port
    raise RuntimeError("no free port")


def run_wgsigc(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "wgsigc", *args], capture_output=True, text=True, env=env, timeout=30, check=False
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=vectors.scenario_id)
def test_wgsigc_program_over_udp(scenario: dict[str, Any], tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(vectors.secret())
    secret.chmod(0o600)
    answers = [bytes.fromhex(scenario["response_wire_hex"])]
    if scenario.get("bad_response_first_wire_hex"):
        answers.insert(0, bytes.fromhex(scenario["bad_response_first_wire_hex"]))
    server = FakeServer(answers)
    local_port = free_port(scenario["local_port"] % 2)
    argv = ["127.0.0.1", str(server.port), scenario["argv"][3], str(secret), str(local_port)]
    if scenario["variant"] == "enc":
        argv.append("--encrypt")
    try:
        result = run_wgsigc(*argv)
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    # The request on the wire: the scenario's CLFLG, our key, an authentic request (a Server accepts it).
    data, source = server.requests[0]
    assert source[1] == local_port
    config = GroupConfig(0, (vectors.secret(),), encrypt=scenario["variant"] == "enc")
    _, event = Server([config], random_bytes=os.urandom).receive_datagram(data, source, float(time.time()))
    assert isinstance(event, Answered), event
    assert (event.peer_id, event.clflg) == (peer_id(scenario), scenario["local_port"] % 2)
    # "Seen N s ago" depends on the clock: compare everything else, line by line.
    got = [line for line in result.stdout.splitlines() if not line.startswith("# Seen")]
    want = [line for line in expected_stdout(scenario).splitlines() if not line.startswith("# Seen")]
    want = [line.replace(f"ListenPort = {scenario['local_port']}", f"ListenPort = {local_port}") for line in want]
    assert got == want
    if scenario.get("bad_response_first_wire_hex"):
        assert "HMAC does not verify" in result.stderr
