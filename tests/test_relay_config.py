"""The relay's configuration and its bad input: the [relay] section (pure parsing), and the relay
process's one line for a port in use, a malformed or unreadable allocation file, a missing
section (real processes and sockets, no fakes)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.procs import env
from wgsig import relayfile
from wgsigd.config import ConfigError, RelayConfig, parse_config
from wgsigd.relay import RelayProcess


def config(**relay: Any) -> dict[str, Any]:
    return {"group": {"main": {"id": 0, "secret_file": "/k"}}, "relay": relay}


def test_no_relay_section_means_no_relay() -> None:
    assert parse_config({"group": {"main": {"id": 0, "secret_file": "/k"}}}, "f").relay is None


def test_a_relay_section_with_defaults_and_every_key() -> None:
    r = parse_config(config(address="203.0.113.1"), "f").relay
    assert r == RelayConfig("203.0.113.1", (40000, 40999))
    r = parse_config(config(address="2001:db8::1", ports="50000-50010", listen="::", lifetime=60, idle_timeout=30,
                            max_per_peer=2, max_per_group=5, rate=1e6, burst=100000, global_rate=1e7,
                            global_burst=1000000), "f").relay
    assert r is not None and (r.ports, r.listen, r.lifetime, r.idle, r.max_per_peer, r.max_per_group) == (
        (50000, 50010), "::", 60, 30, 2, 5)


@pytest.mark.parametrize(("relay", "message"), [
    ({}, "missing 'address'"),
    ({"address": "relay.example"}, "'address' must be an IP address"),
    ({"address": 5}, "'address' must be an IP address"),
    ({"address": "0.0.0.0"}, "not 0.0.0.0"),
    ({"address": "192.0.2.1", "ports": "40000"}, "'ports' must be a range"),
    ({"address": "192.0.2.1", "ports": "40010-40000"}, "'ports' must be a range"),
    ({"address": "192.0.2.1", "ports": "80-90"}, "'ports' must be a range"),
    ({"address": "192.0.2.1", "ports": [40000, 40010]}, "'ports' must be a range"),
    ({"address": "192.0.2.1", "rate": -1}, "'rate' = -1 is out of range"),
    ({"address": "192.0.2.1", "max_per_peer": 0}, "'max_per_peer' = 0 is out of range"),
    ({"address": "192.0.2.1", "listen": "any"}, "'listen' must be an IP address"),
    ({"address": "192.0.2.1", "port": 4}, "unknown key 'port'"),
])
def test_bad_relay_values_are_one_line_naming_the_key(relay: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        parse_config(config(**relay), "wgsigd.toml")
    assert "\n" not in str(error.value) and "[relay]" in str(error.value)


def test_relay_not_a_table() -> None:
    with pytest.raises(ConfigError, match=r"\[relay\]: must be a table"):
        parse_config({"group": {"main": {"id": 0, "secret_file": "/k"}}, "relay": 5}, "f")


def run_relay(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "wgsigd.toml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "wgsigd", "relay", "--config", str(path)], capture_output=True,
                          text=True, env=env(), timeout=30, check=False)


def test_wgsigd_relay_without_a_section_or_with_a_bad_one_says_so_in_one_line(tmp_path: Path) -> None:
    plain = f'state_directory = "{tmp_path}"\n[group.g]\nid = 0\nsecret_file = "/k"\n'
    for text, message in [(plain, "no [relay] section: the relay is off"),
                          (plain + '[relay]\naddress = "192.0.2.1"\nports = "1-2"\n', "'ports' must be a range")]:
        done = run_relay(tmp_path, text)
        assert done.returncode == 6, done
        lines = (done.stdout + done.stderr).strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in lines[0], lines
    done = subprocess.run([sys.executable, "-m", "wgsigd", "relay"], capture_output=True, text=True, env=env(),
                          timeout=30, check=False)
    assert done.returncode == 6 and "usage: wgsigd relay --config FILE" in done.stderr


def lease_file(path: Path, port_a: int, port_b: int) -> None:
    path.write_text(relayfile.HEADER + f"\n0 {port_a} 127.0.0.2 {port_b} 127.0.0.3 {time.time() + 600:.3f}\n")


def test_a_port_in_use_and_bad_allocation_files_are_one_line_each(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    other = port + 1 if port < 65535 else port - 1
    path = tmp_path / relayfile.FILE_NAME
    relay = RelayProcess(RelayConfig("127.0.0.1", (1024, 65535), listen="127.0.0.1"), path)
    try:
        caplog.set_level(logging.INFO, logger="wgsigd")
        relay.check_file(time.time())
        assert "no allocation file" in caplog.text
        lease_file(path, port, other)
        relay.check_file(time.time())
        bound = [r.getMessage() for r in caplog.records if "cannot bind" in r.getMessage()]
        assert len(bound) == 1 and f"127.0.0.1:{port}" in bound[0] and "not relayed" in bound[0], caplog.text
        assert relay.sockets == {} and relay.forwarder.ports == set()  # its partner alone is no use
        caplog.clear()
        path.write_text("garbage\n")
        relay.check_file(time.time())
        relay.check_file(time.time())  # said once
        bad = [r.getMessage() for r in caplog.records if "not usable" in r.getMessage()]
        assert len(bad) == 1 and "first line" in bad[0] and "keeping the previous" in bad[0], caplog.text
        if os.geteuid() != 0:
            caplog.clear()
            lease_file(path, port + 2, port + 3)
            path.chmod(0)
            relay.check_file(time.time())
            assert "cannot read the allocation file" in caplog.text
    finally:
        busy.close()
        for p in list(relay.sockets):
            relay._close(p)
    assert "Traceback" not in caplog.text
