"""wgsigc's metrics file (wgsigc/metricsfile.py): the families of one run, byte for byte (pure), and
the file a kernel-mode run writes.

FAKE in the kernel-mode tests: the kernel -- ``FakeKernel`` of tests/test_wgsigc_vanish.py stands in
for pyroute2 (this host has no WireGuard module); its peers never handshake. Real: the
configuration file, a wgsigd subprocess on loopback that the peers registered with, UDP
registration, the plan, the run record, the metrics file and its directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_metrics_wgsigd import parse_prom
from tests.test_wgsigc_register import SECRET, free_port, server  # noqa: F401  (the wgsigd fixture)
from tests.test_wgsigc_vanish import EXTRA, PEERS, FakeKernel, b64, registered, run  # noqa: F401  (fixture)
from wgsig.keys import PublicKey
from wgsig.metrics import encode
from wgsigc import runrecord
from wgsigc.candidates import Candidate
from wgsigc.exitcodes import EXIT_INTERFACE
from wgsigc.kernelmode import run_kernel_mode
from wgsigc.metricsfile import families, path_kind
from wgsigc.plan import Action, PeerDecision, PeerWrite, Plan

A, B, C, D = (PublicKey(bytes([i]) * 32) for i in (1, 2, 3, 4))


def decision(key: bytes, **fields: object) -> PeerDecision:
    return PeerDecision(key, Action.HEALTHY, "", **fields)  # type: ignore[arg-type]


def test_path_kind_after_the_decision() -> None:
    lan = Candidate(("192.168.1.7", 51820), "lan", 2.0)
    public = Candidate(("198.51.100.7", 40000), "public", 5.0)
    assert path_kind(decision(A, kernel_endpoint=lan.endpoint, candidates=(lan, public))) == "lan"
    write = PeerWrite(A, public.endpoint, 25, ())
    assert path_kind(decision(A, kernel_endpoint=lan.endpoint, write=write, candidates=(lan, public))) == "public"
    assert path_kind(decision(A)) == "none"
    assert path_kind(decision(A, kernel_endpoint=("203.0.113.1", 9), candidates=(lan,))) == "other"
    assert path_kind(decision(A, kernel_endpoint=public.endpoint, server_endpoint=public.endpoint)) == "public"


def test_families_of_a_run_byte_exact() -> None:
    lan = Candidate(("192.168.1.7", 51820), "lan", 2.0)
    six = Candidate(("2001:db8::7", 51820), "ipv6", 5.0)
    plan = Plan("wg0", None, (
        decision(A, kernel_endpoint=lan.endpoint, candidates=(lan,), latest_handshake=1_700_000_000 - 42,
                 record_time=1_700_000_000 - 7),
        decision(B, kernel_endpoint=six.endpoint, candidates=(six,), record_time=1_700_000_000 - 700),
        decision(C),
    ))
    text = encode(families("wg0", 5, 1_700_000_000.25, 3.14159, plan))
    ka, kb, kc = str(A), str(B), str(C)
    assert text == (
        "# HELP wgsigc_last_run_exit_code Exit code of the last run (0 all went well; wgsigc(8)).\n"
        "# TYPE wgsigc_last_run_exit_code gauge\n"
        'wgsigc_last_run_exit_code{interface="wg0"} 5\n'
        "# HELP wgsigc_last_run_timestamp_seconds When the last run ended, UNIX seconds.\n"
        "# TYPE wgsigc_last_run_timestamp_seconds gauge\n"
        'wgsigc_last_run_timestamp_seconds{interface="wg0"} 1700000000.25\n'
        "# HELP wgsigc_last_run_duration_seconds How long the last run took, seconds.\n"
        "# TYPE wgsigc_last_run_duration_seconds gauge\n"
        'wgsigc_last_run_duration_seconds{interface="wg0"} 3.142\n'
        "# HELP wgsigc_peer_path The kind of endpoint the kernel points at for the peer (1), as the last run left it.\n"
        "# TYPE wgsigc_peer_path gauge\n"
        f'wgsigc_peer_path{{interface="wg0",peer="{ka}",kind="lan"}} 1\n'
        f'wgsigc_peer_path{{interface="wg0",peer="{kb}",kind="ipv6"}} 1\n'
        f'wgsigc_peer_path{{interface="wg0",peer="{kc}",kind="none"}} 1\n'
        "# HELP wgsigc_peer_handshake_age_seconds Seconds since the peer's latest handshake, at the end of the last"
        " run (absent: never).\n"
        "# TYPE wgsigc_peer_handshake_age_seconds gauge\n"
        f'wgsigc_peer_handshake_age_seconds{{interface="wg0",peer="{ka}"}} 42\n'
        "# HELP wgsigc_peer_record_age_seconds Age of the peer's newest record on the servers, at the end of the"
        " last run (absent: none).\n"
        "# TYPE wgsigc_peer_record_age_seconds gauge\n"
        f'wgsigc_peer_record_age_seconds{{interface="wg0",peer="{ka}"}} 7\n'
        f'wgsigc_peer_record_age_seconds{{interface="wg0",peer="{kb}"}} 700\n'
    ).encode()


def test_a_run_that_decided_nothing_has_its_result_and_no_peers() -> None:
    text = encode(families("wg1", 2, 10.0, 1.0, None)).decode()
    assert 'wgsigc_last_run_exit_code{interface="wg1"} 2\n' in text
    assert "wgsigc_peer_path{" not in text and "# TYPE wgsigc_peer_path gauge\n" in text


def kernel_run(tmp_path: Path, port: int, kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch, metrics: Path) -> int:
    return run(tmp_path, port, kernel, monkeypatch, top=f'metrics_directory = "{metrics}"\n')


def test_kernel_mode_run_writes_the_file_each_run(
        tmp_path: Path, registered: int, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "prom"
    metrics.mkdir()
    assert kernel_run(tmp_path, registered, FakeKernel(free_port()), monkeypatch, metrics) == 0
    assert capsys.readouterr().err == ""
    path = metrics / "wgsigc-wg0.prom"
    values = parse_prom(path.read_text())
    assert values['wgsigc_last_run_exit_code{interface="wg0"}'] == 0
    assert 0 < values['wgsigc_last_run_duration_seconds{interface="wg0"}'] < 30
    for key in [*PEERS, EXTRA]:  # all three written their public endpoint, the one the servers saw
        peer = f'interface="wg0",peer="{b64(key)}"'
        assert values[f'wgsigc_peer_path{{{peer},kind="public"}}'] == 1
        assert 0 <= values[f"wgsigc_peer_record_age_seconds{{{peer}}}"] < 30
        assert f"wgsigc_peer_handshake_age_seconds{{{peer}}}" not in values  # the fake never handshakes
    assert path.stat().st_mode & 0o777 == 0o644
    # The next run, the interface gone midway: its code replaces the last one's, no peers decided.
    kernel = FakeKernel(free_port(), vanish_at=("info", 2))
    assert kernel_run(tmp_path, registered, kernel, monkeypatch, metrics) == EXIT_INTERFACE
    values = parse_prom(path.read_text())
    assert values['wgsigc_last_run_exit_code{interface="wg0"}'] == EXIT_INTERFACE
    assert not any(k.startswith("wgsigc_peer_") for k in values)
    assert sorted(os.listdir(metrics)) == ["wgsigc-wg0.prom"]


def test_unwritable_metrics_directory_is_one_line_and_changes_nothing_else(
        tmp_path: Path, registered: int, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    metrics = tmp_path / "file" / "prom"  # below a regular file: cannot be written, even as root
    kernel = FakeKernel(free_port())
    assert kernel_run(tmp_path, registered, kernel, monkeypatch, metrics) == 0
    err = capsys.readouterr().err
    assert err == f"wgsigc: wg0: cannot write metrics to {metrics}/wgsigc-wg0.prom: Not a directory\n"
    assert len(kernel.sets) == 3
    record = runrecord.load(tmp_path / "state" / "wgsigc-wg0.json")
    assert record is not None and record["exit_code"] == 0


def test_dry_run_writes_no_metrics(
        tmp_path: Path, registered: int, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "prom"
    metrics.mkdir()
    kernel_run(tmp_path, registered, FakeKernel(free_port()), monkeypatch, metrics)
    os.unlink(metrics / "wgsigc-wg0.prom")
    config = tmp_path / "wgsigc.toml"
    assert run_kernel_mode(str(config), None, dry_run=True) == 0
    assert os.listdir(metrics) == []
