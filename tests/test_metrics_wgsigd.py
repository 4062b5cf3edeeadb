"""wgsigd's metrics file, from the real wgsigd process on loopback.

Everything is real: wgsigd started with ``--config`` (its own UDP socket on 127.0.0.1), requests
built by the client codec and sent as UDP datagrams from 127.0.0.2 (its own answer-rate bucket),
the metrics directory in a temporary directory, its permissions (as root the server runs without
CAP_DAC_OVERRIDE, ``tests.procs.unprivileged_prefix``, so that a 0555 directory refuses it).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

import pytest

from tests.procs import Wgsigd, free_udp_port, query, unprivileged_prefix, write_secret
from wgsig.client import GroupCredentials, build_request
from wgsig.label import label_from_ns

SECRET = bytes(range(32))
OTHER = bytes(range(1, 33))
SOURCE = "127.0.0.2"  # rate-limited apart from the readiness probes, which come from 127.0.0.1


def parse_prom(text: str) -> dict[str, float]:
    """series -> value of a text exposition; HELP and TYPE must come first, once per family."""
    values: dict[str, float] = {}
    declared: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            kind, name = line.split(" ")[1:3]
            declared.setdefault(name, []).append(kind)
            continue
        series, value = line.rsplit(" ", 1)
        name = re.split(r"[{ ]", series)[0]
        assert declared.get(name) == ["HELP", "TYPE"], line
        assert series not in values, line
        values[series] = float(value)
    return values


def send(port: int, datagram: bytes, wait: float = 0.5) -> bool:
    """One datagram from 127.0.0.2; whether anything came back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((SOURCE, 0))
        sock.settimeout(wait)
        sock.sendto(datagram, ("127.0.0.1", port))
        try:
            sock.recv(4096)
        except TimeoutError:
            return False
        return True


def request(group: int, peer: int, secret: bytes = SECRET) -> bytes:
    return build_request(GroupCredentials(group, secret), bytes([peer]) * 32, label_from_ns(time.time_ns()), 0,
                         os.urandom)


def config_file(tmp_path: Path, port: int, metrics: Path) -> Path:
    secret = write_secret(tmp_path / "group.key", SECRET)
    path = tmp_path / "wgsigd.toml"
    path.write_text(
        f'listen = "127.0.0.1"\nport = {port}\nstate_directory = "{tmp_path / "state"}"\n'
        f'metrics_directory = "{metrics}"\nmetrics_interval = 1\nanswer_bytes_rate = 5\nanswer_bytes_burst = 1080\n'
        f'[group.probe]\nid = 0\nsecret_file = "{secret}"\n[group.office]\nid = 7\nsecret_file = "{secret}"\n'
    )
    return path


def wait_for(path: Path, expected: dict[str, float], timeout: float = 10.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    values: dict[str, float] = {}
    while time.monotonic() < deadline:
        if path.exists():
            values = parse_prom(path.read_text())
            if all(values.get(k) == v for k, v in expected.items()):
                return values
        time.sleep(0.1)
    raise AssertionError(f"{path}: expected {expected}, last seen {values}")


def test_counts_of_valid_and_invalid_requests_written_periodically_and_at_exit(tmp_path: Path) -> None:
    port = free_udp_port()
    metrics = tmp_path / "prom"
    metrics.mkdir()
    server = Wgsigd(["--config", str(config_file(tmp_path, port, metrics))], port, GroupCredentials(0, SECRET),
                    tmp_path / "wgsigd.log")
    expected = {
        'wgsigd_records{group="7"}': 4,  # the rate-limited registration is applied, not answered
        'wgsigd_answers_total{group="7"}': 3,
        'wgsigd_rate_limited_total{group="7"}': 1,
        'wgsigd_rejected_total{group="7",reason="rate_limited"}': 1,
        'wgsigd_rejected_total{group="7",reason="replay"}': 1,
        'wgsigd_rejected_total{group="7",reason="bad_mac"}': 2,
        'wgsigd_rejected_total{reason="unknown_group"}': 1,
        'wgsigd_answers_capped_total{group="7"}': 0,
        "wgsigd_save_failures_total": 0,
    }
    try:
        first = request(7, 1)
        assert send(port, first)
        assert send(port, request(7, 2)) and send(port, request(7, 3))
        assert not send(port, request(7, 4))  # 1,080 bytes, then one answer overdrawing them: rate-limited
        assert not send(port, first, 0.2)  # a replay
        assert not send(port, request(7, 5, OTHER), 0.2)  # another secret: bad MAC, twice
        assert not send(port, request(7, 6, OTHER), 0.2)
        assert not send(port, request(99, 1), 0.2)  # no group 99
        assert not send(port, b"\x00" * 17, 0.2)  # dropped in the kernel by the socket filter: never counted
        values = wait_for(metrics / "wgsigd.prom", expected)  # metrics_interval = 1: within seconds
        assert 'wgsigd_rejected_total{reason="size"}' not in values
        assert values['wgsigd_answers_total{group="0"}'] >= 1  # the readiness probe
        assert 'wgsigd_records{group="0"}' in values and 'wgsigd_rate_limited_total{group="0"}' in values
        assert abs(values["wgsigd_start_time_seconds"] - time.time()) < 60
        assert query(port, GroupCredentials(7, SECRET), bytes([1]) * 32) is not None  # from 127.0.0.1
        expected['wgsigd_answers_total{group="7"}'] = 4
    finally:
        assert server.stop() == 0
    # Written once more at exit: the last answer is in it.
    values = parse_prom((metrics / "wgsigd.prom").read_text())
    assert {k: values.get(k) for k in expected} == expected
    assert (metrics / "wgsigd.prom").stat().st_mode & 0o777 == 0o644  # node-exporter's user reads it
    assert sorted(os.listdir(metrics)) == ["wgsigd.prom"]  # no temporary file left
    assert "Traceback" not in (tmp_path / "wgsigd.log").read_text()


def test_unwritable_directory_is_one_line_and_the_server_keeps_answering(tmp_path: Path) -> None:
    port = free_udp_port()
    metrics = tmp_path / "prom"
    metrics.mkdir()
    metrics.chmod(0o555)
    log = tmp_path / "wgsigd.log"
    server = Wgsigd(["--config", str(config_file(tmp_path, port, metrics))], port, GroupCredentials(0, SECRET), log,
                    prefix=unprivileged_prefix())
    try:
        time.sleep(2.5)  # two more writes fail meanwhile (metrics_interval = 1)
        assert query(port, GroupCredentials(7, SECRET), bytes([1]) * 32) is not None
        lines = [line for line in log.read_text().splitlines() if "metrics" in line]
        assert len(lines) == 1, lines
        assert f"cannot write metrics to {metrics}/wgsigd.prom: Permission denied" in lines[0]
        assert os.listdir(metrics) == []
        metrics.chmod(0o755)  # repaired: written again, and said so
        wait_for(metrics / "wgsigd.prom", {'wgsigd_answers_total{group="7"}': 1})
        deadline = time.monotonic() + 5
        while "metrics written to" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"metrics written to {metrics}/wgsigd.prom again" in log.read_text()
    finally:
        metrics.chmod(0o755)
        assert server.stop() == 0
    assert "Traceback" not in log.read_text()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="mounts a tmpfs: needs root")
def test_full_disk_is_one_line_no_partial_file_and_the_server_keeps_answering(tmp_path: Path) -> None:
    """A real full file system: wgsigd runs in a mount namespace of its own (``unshare -m``) where
    the metrics directory is a 16 KB tmpfs, filled before wgsigd starts."""
    port = free_udp_port()
    metrics = tmp_path / "prom"
    metrics.mkdir()
    log = tmp_path / "wgsigd.log"
    fill = 'mount -t tmpfs -o size=16k tmpfs "$0" && { head -c 65536 /dev/zero > "$0/fill"; exec "$@"; }'
    server = Wgsigd(["--config", str(config_file(tmp_path, port, metrics))], port, GroupCredentials(0, SECRET), log,
                    prefix=["unshare", "-m", "sh", "-c", fill, str(metrics)])
    try:
        time.sleep(2.5)
        assert query(port, GroupCredentials(7, SECRET), bytes([1]) * 32) is not None
        lines = [line for line in log.read_text().splitlines() if "metrics" in line]
        assert len(lines) == 1, lines
        assert f"cannot write metrics to {metrics}/wgsigd.prom: No space left on device" in lines[0]
        # The directory as wgsigd sees it: the filler only, no temporary file, no partial wgsigd.prom.
        assert os.listdir(f"/proc/{server.proc.pid}/root{metrics}") == ["fill"]
    finally:
        assert server.stop() == 0
    assert "Traceback" not in log.read_text()


def test_no_metrics_directory_no_file(tmp_path: Path) -> None:
    """metrics_directory = "" turns them off; the command-line form writes none either."""
    port = free_udp_port()
    path = config_file(tmp_path, port, tmp_path / "unused")
    path.write_text(path.read_text().replace(f'metrics_directory = "{tmp_path / "unused"}"', 'metrics_directory = ""'))
    server = Wgsigd(["--config", str(path)], port, GroupCredentials(0, SECRET), tmp_path / "wgsigd.log")
    assert server.stop() == 0
    assert not (tmp_path / "unused").exists()
    assert "cannot write metrics" not in (tmp_path / "wgsigd.log").read_text()
