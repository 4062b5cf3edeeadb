"""An interface that vanishes, is replaced or is re-keyed while wgsigc runs: exit code 4, one
clear line, no traceback, no peer removed, nothing written after the interface changed.

FAKE: the kernel. ``FakeKernel`` replaces the device read (``netlink.device_messages``), the
``pyroute2`` module (WireGuard, for the writes) and the host's addresses by none, and raises what
the real ones raise: the kernel's ENODEV (19) for a vanished interface and EOPNOTSUPP (95) for a
non-WireGuard one, as ``wgsig.rtnetlink.RtnetlinkError`` from the read and as the real
``pyroute2.netlink.exceptions.NetlinkError`` from ``WireGuard().set()`` in 0.7.2 and 0.9.5
(both checked against the real kernel in tests/kernel_lab.sh). Everything else is real: the configuration
file, a wgsigd subprocess on loopback, UDP registration from the (free) listen port, the plan.
"""

from __future__ import annotations

import base64
import errno
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import write_secret
from tests.test_wgsigc_register import SECRET, free_port, server  # noqa: F401  (the wgsigd fixture)
from wgsig.client import GroupCredentials
from wgsig.rtnetlink import RtnetlinkError
from wgsigc import localaddrs, netlink, runrecord
from wgsigc.exchange import exchange
from wgsigc.exitcodes import EXIT_INTERFACE
from wgsigc.kernelmode import run_kernel_mode

NetlinkError = pytest.importorskip("pyroute2.netlink.exceptions").NetlinkError

OWN = bytes([5]) * 32
PEERS = {bytes([7]) * 32: ["10.0.0.7/32", "10.70.0.0/16"], bytes([8]) * 32: ["10.0.0.8/32"]}
EXTRA = bytes([9]) * 32  # in the configuration only: would be added
MESSAGES = {errno.ENODEV: "No such device", errno.EOPNOTSUPP: "Operation not supported"}  # as the kernel says


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


class FakeKernel:
    """One WireGuard interface 'wg0'. ``vanish_at`` names the call that finds it gone:
    ('info', n) = the n-th read of the device, ('set', n) = the n-th WireGuard().set()."""

    def __init__(self, listen_port: int, vanish_at: tuple[str, int] | None = None, errno_code: int = errno.ENODEV,
                 rekey_at_info: int | None = None, version: str = "0.7.2") -> None:
        self.listen_port = listen_port
        self.vanish_at = vanish_at
        self.errno_code = errno_code
        self.rekey_at_info = rekey_at_info
        self.version = version
        self.calls = {"info": 0, "set": 0}
        self.sets: list[dict[str, Any]] = []
        self.failed_sets = 0

    def _call(self, what: str) -> None:
        self.calls[what] += 1
        if self.vanish_at is not None and what == self.vanish_at[0] and self.calls[what] >= self.vanish_at[1]:
            raise NetlinkError(self.errno_code, MESSAGES[self.errno_code])

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The fake kernel for one test: the device read (``netlink.device_messages``), pyroute2's
        WireGuard for the writes, wg0 exists, a host without addresses (the LAN candidates' dump)."""
        monkeypatch.setitem(sys.modules, "pyroute2", self.module())
        monkeypatch.setattr(netlink, "device_messages", self.device_messages)
        monkeypatch.setattr(netlink, "link_exists", lambda name: name == "wg0")
        monkeypatch.setattr(localaddrs, "read_local", lambda wireguard, *args: localaddrs.select([], [], wireguard))

    def device_messages(self, name: str) -> list[dict[str, Any]]:
        """What the stdlib reader returns (keys as raw bytes), or the kernel's refusal as it raises it."""
        try:
            self._call("info")
        except NetlinkError as error:
            raise RtnetlinkError(f"the kernel refused the dump: errno {error.code}", error.code) from None
        key = OWN if self.rekey_at_info is None or self.calls["info"] < self.rekey_at_info else EXTRA
        peers = [{"public_key": k, "allowed_ips": list(ips), "keepalive": 0,
                  "latest_handshake": {"tv_sec": 0, "tv_nsec": 0}} for k, ips in PEERS.items()]
        return [{"public_key": key, "listen_port": self.listen_port, "fwmark": 0, "peers": peers}]

    def module(self) -> types.ModuleType:
        kernel = self

        class WireGuard:
            def set(self, name: str, peer: dict[str, Any]) -> None:
                try:
                    kernel._call("set")
                except NetlinkError:
                    kernel.failed_sets += 1
                    raise
                kernel.sets.append(peer)

            def close(self) -> None:
                pass

        fake = types.ModuleType("pyroute2")
        # pyroute2 before 0.9.3 has the kernel's UPDATE_ONLY flag wrong (2 instead of 4)
        update_only = 2 if kernel.version.startswith("0.7") else 4
        fake.__dict__.update(WireGuard=WireGuard, WGPEER_F_UPDATE_ONLY=update_only)
        return fake


def register_peers(port: int, source: str) -> None:
    creds = GroupCredentials(0, SECRET)
    for key in [*PEERS, EXTRA]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source, 0))
            assert exchange(s, ("127.0.0.1", port), creds, key, 0, attempts=3, attempt_timeout=0.5).records


@pytest.fixture
def registered(server: int) -> Iterator[int]:  # noqa: F811
    """The server knows both peers of wg0 and the configured extra peer, all at 127.0.0.2
    (this host registers as 127.0.0.1: no 'same public IP' problem)."""
    register_peers(server, "127.0.0.2")
    yield server


def run(tmp_path: Path, port: int, kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch, top: str = "") -> int:
    """One kernel-mode run against the fake kernel: interface wg0, the server on loopback at ``port``,
    the extra peer configured; ``top`` adds top-level settings."""
    secret = write_secret(tmp_path / "secret", SECRET)
    config = tmp_path / "wgsigc.toml"
    config.write_text(
        f'state_directory = "{tmp_path}/state"\n{top}[interface.wg0]\nservers = ["127.0.0.1:{port}"]\n'
        f'secret_file = "{secret}"\ntimeout = 0.5\nconverge_seconds = 0\n'
        f'[[interface.wg0.peer]]\npublic_key = "{b64(EXTRA)}"\nallowed_ips = ["10.0.0.9/32"]\n'
    )
    kernel.install(monkeypatch)
    return run_kernel_mode(str(config), None, dry_run=False)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_control_without_vanishing_writes_every_peer(
        tmp_path: Path, registered: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The fake is good enough to reach the writes: without a vanish all three peers are written."""
    kernel = FakeKernel(free_port())
    assert run(tmp_path, registered, kernel, monkeypatch) == 0, capsys.readouterr()
    assert {p["public_key"] for p in kernel.sets} == {b64(k) for k in [*PEERS, EXTRA]}
    assert kernel.calls["info"] == 2  # read before registering, read again before planning


def test_vanished_before_the_writes_exits_4_and_writes_nothing(
        tmp_path: Path, registered: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    kernel = FakeKernel(free_port(), vanish_at=("info", 2))  # gone while registering
    assert run(tmp_path, registered, kernel, monkeypatch) == EXIT_INTERFACE
    line = one_line(capsys)
    assert line.startswith("wgsigc: wg0: interface wg0 does not exist") and "nothing was written" in line
    assert kernel.calls["set"] == 0
    record = runrecord.load(tmp_path / "state" / "wgsigc-wg0.json")
    assert record is not None and record["exit_code"] == EXIT_INTERFACE


@pytest.mark.parametrize("version", ["0.7.2", "0.9.5"])
def test_vanished_during_the_writes_exits_4_and_stops(
        tmp_path: Path, registered: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        version: str) -> None:
    kernel = FakeKernel(free_port(), vanish_at=("set", 2), version=version)  # first write goes through
    assert run(tmp_path, registered, kernel, monkeypatch) == EXIT_INTERFACE
    line = one_line(capsys)
    assert line.startswith("wgsigc: wg0: interface wg0 does not exist") and "stopped writing" in line
    # no write after the first failure, and the one that went through removed nothing and kept allowed IPs
    assert (kernel.calls["set"], kernel.failed_sets, len(kernel.sets)) == (2, 1, 1)
    (written,) = kernel.sets
    assert "remove" not in written
    key = base64.b64decode(written["public_key"])
    if version == "0.7.2":
        assert written["allowed_ips"] == PEERS.get(key, ["10.0.0.9/32"])
    elif key in PEERS:
        assert written["update_only"] is True and "allowed_ips" not in written


def test_replaced_by_a_non_wireguard_link_exits_4(
        tmp_path: Path, registered: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    kernel = FakeKernel(free_port(), vanish_at=("set", 1), errno_code=errno.EOPNOTSUPP)
    assert run(tmp_path, registered, kernel, monkeypatch) == EXIT_INTERFACE
    assert "is not a WireGuard interface; stopped writing" in one_line(capsys)
    assert kernel.sets == []


def test_rekeyed_during_the_run_exits_4_and_writes_nothing(
        tmp_path: Path, registered: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    kernel = FakeKernel(free_port(), rekey_at_info=2)
    assert run(tmp_path, registered, kernel, monkeypatch) == EXIT_INTERFACE
    assert "changed during the run" in one_line(capsys)
    assert kernel.calls["set"] == 0


def test_gone_at_the_first_read_exits_4(
        tmp_path: Path, registered: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    kernel = FakeKernel(free_port(), vanish_at=("info", 1))  # deleted between link lookup and read
    assert run(tmp_path, registered, kernel, monkeypatch) == EXIT_INTERFACE
    assert one_line(capsys).startswith("wgsigc: wg0: interface wg0 does not exist")
    assert kernel.calls["set"] == 0
