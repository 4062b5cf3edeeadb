"""Unit tests of the run record (real files in tmp_path) and of the status view (a hand-made
InterfaceState stands in for the live kernel read), plus kernel mode's handling of a bad
configuration and of a missing interface through the real command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wgsig import ipaddr
from wgsig.keys import PublicKey
from wgsig.label import encode_label
from wgsig.wire import Record
from wgsigc import runrecord
from wgsigc.candidates import Announced, LocalView
from wgsigc.cli import main
from wgsigc.plan import InterfaceState, PeerMemory, PeerState, Plan, Settings, plan
from wgsigc.status import format_view, status_view

NOW = 1_700_000_000
OWN = PublicKey(bytes([1]) * 32)
PEER = PublicKey(bytes([2]) * 32)


def a_plan() -> Plan:
    peer = PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)
    records = {
        OWN: Record(OWN, "198.51.100.1", 51820, encode_label(NOW - 1, 0)),
        PEER: Record(PEER, "203.0.113.5", 4000, encode_label(NOW - 30, 0)),
    }
    return plan(InterfaceState("wg0", OWN, 51820, 0, {PEER: peer}), records, Settings(), NOW)


def test_record_round_trip_keeps_pending(tmp_path: Path) -> None:
    record = runrecord.build_record("wg0", NOW, 0, [], a_plan(), [{"server": "s:1223"}], applied=True)
    path = tmp_path / "sub" / "wgsigc-wg0.json"
    runrecord.save(path, record)
    loaded = runrecord.load(path)
    assert loaded == json.loads(json.dumps(record))
    (decision,) = a_plan().decisions
    assert decision.pending is not None and decision.pending.endpoint == ("203.0.113.5", 4000)
    assert runrecord.pending_from(loaded) == {PEER: decision.pending}  # every field survives the file
    assert [p.name for p in path.parent.iterdir()] == ["wgsigc-wg0.json"]  # no temporary left


def test_failed_run_carries_pending_over() -> None:
    pending = {PEER: PeerMemory(("203.0.113.5", 4000), NOW - 50)}
    record = runrecord.build_record("wg0", NOW, 2, ["no answer"], None, [], False, pending)
    assert runrecord.pending_from(record) == pending


def test_unreadable_record_is_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    assert runrecord.load(tmp_path / "bad.json") is None
    assert runrecord.load(tmp_path / "missing.json") is None


def test_status_view_combines_record_and_live_kernel() -> None:
    record = runrecord.build_record("wg0", NOW, 0, [], a_plan(), [], applied=True)
    live = InterfaceState("wg0", OWN, 51820, 0, {
        PEER: PeerState(PEER, ("203.0.113.5", 4000), ("10.0.0.2/32",), 25, NOW + 5),
    })
    view = status_view("wg0", record, live, None, NOW + 10)
    (peer,) = view["peers"]
    assert peer["public_key"] == str(PEER)
    assert peer["server_endpoint"] == "203.0.113.5:4000"
    assert peer["kernel_endpoint"] == "203.0.113.5:4000"
    assert peer["record_age"] == 40
    assert peer["handshake_age"] == 5
    assert peer["last_action"] == "set endpoint"
    assert view["last_run"]["own_endpoint"] == "198.51.100.1:51820"
    text = format_view(view)
    assert "server endpoint: 203.0.113.5:4000 (record 40 s old)" in text
    assert "latest handshake: 5 s ago" in text
    assert "last run: set endpoint" in text


def test_status_without_kernel_access_says_so() -> None:
    view = status_view("wg0", None, None, "reading interface wg0: needs CAP_NET_ADMIN", NOW)
    text = format_view(view)
    assert "kernel state not read: reading interface wg0: needs CAP_NET_ADMIN" in text
    assert "last run: none recorded" in text


def test_bad_config_is_exit_6_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[interface.wg0]\n")
    assert main(["--config", str(path)]) == 6
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "servers must be a list" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="netlink reads need CAP_NET_ADMIN")
def test_missing_interface_is_exit_4_and_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyroute2")
    path = _config_with_state(tmp_path, "wgsigtest9")
    assert main(["--config", str(path)]) == 4
    err = capsys.readouterr().err
    assert "wgsigc: wgsigtest9: interface wgsigtest9 does not exist" in err and err.count("\n") == 1
    record = runrecord.load(tmp_path / "wgsigc-wgsigtest9.json")
    assert record is not None and record["exit_code"] == 4
    assert main(["--config", str(path), "--interface", "other"]) == 6


def test_status_says_which_candidate_is_in_use_and_why() -> None:
    local = LocalView("198.51.100.1", (ipaddr.parse_prefix("192.168.1.0/24"),), False)
    announced = {PEER: Announced(None, (("192.168.1.2", 51820),))}
    records = {OWN: Record(OWN, "198.51.100.1", 51820, encode_label(NOW - 1, 0)),
               PEER: Record(PEER, "198.51.100.1", 40000, encode_label(NOW - 30, 0))}
    fresh = PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)
    cycling = plan(InterfaceState("wg0", OWN, 51820, 0, {PEER: fresh}), records, Settings(), NOW,
                   announced=announced, local=local)
    record = runrecord.build_record("wg0", NOW, 0, [], cycling, [], applied=True)
    (peer,) = status_view("wg0", record, None, None, NOW + 1)["peers"]
    assert peer["candidates"] == [{"endpoint": "192.168.1.2:51820", "kind": "lan"},
                                  {"endpoint": "198.51.100.1:40000", "kind": "hairpin"}]
    assert peer["in_use"] == "192.168.1.2:51820 (lan)" and peer["why"] == "cycling: step 1 of 2"
    assert "in use: 192.168.1.2:51820 (lan), cycling: step 1 of 2" in format_view(
        status_view("wg0", record, None, None, NOW + 1), NOW + 1)
    # live: the handshake came on it
    live = InterfaceState("wg0", OWN, 51820, 0,
                          {PEER: PeerState(PEER, ("192.168.1.2", 51820), ("10.0.0.2/32",), 25, NOW + 2)})
    view = status_view("wg0", record, live, None, NOW + 5)
    assert "in use: 192.168.1.2:51820 (lan), handshake 3 s ago" in format_view(view, NOW + 5)
    # live: WireGuard roamed somewhere no candidate names
    roamed = InterfaceState("wg0", OWN, 51820, 0,
                            {PEER: PeerState(PEER, ("198.18.0.9", 3333), ("10.0.0.2/32",), 25, NOW - 500)})
    (p,) = status_view("wg0", record, roamed, None, NOW + 5)["peers"]
    assert p["in_use"] == "198.18.0.9:3333 (set by hand or learned by WireGuard)"
    assert p["why"] == "changed since the last run"


def test_status_of_a_malformed_record_is_shown_without_a_traceback() -> None:
    record = {"version": 2, "time": "then", "messages": "oops", "servers": 3,
              "peers": [5, {"public_key": str(PEER), "candidates": 7, "in_use": 1, "pending": {"worked": "x"}}]}
    view = status_view("wg0", record, None, None, NOW)
    text = format_view(view, NOW)
    assert f"peer {PEER}" in text and view["last_run"]["messages"] == []


def _config_with_state(tmp_path: Path, interface: str) -> Path:
    secret = tmp_path / "s"
    secret.write_bytes(bytes(32))
    secret.chmod(0o600)
    path = tmp_path / "c.toml"
    path.write_text(
        f'state_directory = "{tmp_path}"\nmetrics_directory = ""\n[interface.{interface}]\n'
        f'servers = ["127.0.0.1:1"]\nsecret_file = "{secret}"\n'
    )
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="netlink reads need CAP_NET_ADMIN")
def test_status_and_kernel_runs_survive_a_record_holding_nan(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A run record with NaN and a huge integer (hand-edited, or written by something else): wgsigc status
    shows no last run and says so in one line; a kernel run warns once, goes on (exit 4 here: no such
    interface) and replaces the record with a valid one."""
    pytest.importorskip("pyroute2")
    config = _config_with_state(tmp_path, "wgsigtest8")
    state = tmp_path / "wgsigc-wgsigtest8.json"
    state.write_text('{"version": 2, "interface": "wgsigtest8", "time": NaN, "exit_code": 0, "messages": [],'
                     f' "peers": [{{"public_key": "{PEER}", "pending": {{"since": 1{"0" * 400}}}}}]}}')
    assert main(["status", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "last run: none recorded" in captured.out
    assert captured.err.count("\n") == 1 and f"run record {state} is not valid" in captured.err
    assert "Traceback" not in captured.err
    assert main(["--config", str(config)]) == 4
    err = capsys.readouterr().err
    assert f"run record {state} is not valid" in err and "interface wgsigtest8 does not exist" in err
    assert err.count("run record") == 1
    record, problem = runrecord.read(state)
    assert problem is None and record is not None and record["exit_code"] == 4


def test_status_view_of_non_finite_numbers_is_shown_without_a_traceback() -> None:
    """status_view given a record that bypassed runrecord.read(): NaN and infinities show as unknown."""
    nan, inf = float("nan"), float("inf")
    worked = [{"endpoint": "1.2.3.4:5", "handshake": nan}]
    record = {"version": 2, "time": nan, "peers": [{"public_key": str(PEER), "record_time": inf,
                                                   "latest_handshake": nan, "pending": {"worked": worked}}]}
    view = status_view("wg0", record, None, None, NOW)
    assert view["last_run"]["age"] is None and view["peers"][0]["record_age"] is None
    assert f"peer {PEER}" in format_view(view, NOW)


def test_status_names_what_this_hosts_nat_was_seen_to_do() -> None:
    nat = "this host's NAT keeps WireGuard's port 51820, the same public endpoint for every server (...)"
    record = runrecord.build_record("wg0", NOW, 0, [], a_plan(), [], True, None, None, nat)
    view = status_view("wg0", json.loads(json.dumps(record)), None, None, NOW + 10)
    assert view["last_run"]["nat"] == nat
    assert f"  NAT: {nat}\n" in format_view(view, NOW + 10)
    assert status_view("wg0", {**record, "nat": 7}, None, None, NOW)["last_run"]["nat"] is None  # not text: left out
