"""The run record as the next run's memory (wgsigc/runrecord.py): real files in tmp_path; plans
from hand-made interface states and records (no kernel, no servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgsig import ipaddr
from wgsig.keys import PublicKey
from wgsig.label import encode_label
from wgsig.wire import Record
from wgsigc import runrecord
from wgsigc.candidates import Announced, LocalView
from wgsigc.plan import InterfaceState, PeerMemory, PeerState, Plan, Settings, plan

NOW = 1_700_000_000
OWN, PEER = PublicKey(bytes([1]) * 32), PublicKey(bytes([2]) * 32)
LAN = LocalView("198.51.100.1", (ipaddr.parse_prefix("192.168.1.0/24"),), True)
ANNOUNCED = Announced(("2001:db8:1::2", 51820), (("192.168.1.2", 51820),), (("198.51.100.1", 4000),))


def decide(peer: PeerState, now: float, memory: dict[bytes, PeerMemory]) -> Plan:
    records = {OWN: Record(OWN, "198.51.100.1", 51820, encode_label(NOW, 0)),
               PEER: Record(PEER, "198.51.100.1", 40000, encode_label(NOW - 5, 0))}
    return plan(InterfaceState("wg0", OWN, 51820, 0, {PEER: peer}), records, Settings(), now, memory,
                announced={PEER: ANNOUNCED}, local=LAN)


def through_file(tmp_path: Path, p: Plan, now: float) -> dict[bytes, PeerMemory]:
    path = tmp_path / "wgsigc-wg0.json"
    runrecord.save(path, runrecord.build_record("wg0", now, 0, [], p, [], applied=True))
    return runrecord.pending_from(runrecord.load(path))


def test_every_memory_field_survives_the_file(tmp_path: Path) -> None:
    memory = PeerMemory(("2001:db8:1::2", 51820), NOW + 0.25, NOW - 3.5, ("198.51.100.1", 40000),
                        encode_label(NOW - 5, 7), (("192.168.1.2", 51820), ("2001:db8:1::2", 51820)),
                        ((("192.168.1.2", 51820), float(NOW - 100)),), True, True)
    record = runrecord.build_record("wg0", NOW, 2, ["x"], None, [], False, {PEER: memory})
    path = tmp_path / "r.json"
    runrecord.save(path, record)
    assert runrecord.pending_from(runrecord.load(path)) == {PEER: memory}


def test_the_endpoint_that_worked_goes_first_in_the_next_run(tmp_path: Path) -> None:
    on_lan = PeerState(PEER, ("192.168.1.2", 51820), ("10.0.0.2/32",), 25, NOW - 10)
    memory = through_file(tmp_path, decide(on_lan, NOW, {}), NOW)
    assert memory[PEER].worked[0][0] == ("192.168.1.2", 51820)
    # an hour later, the tunnel idle, on the public endpoint meanwhile (set by hand, say)
    idle = PeerState(PEER, ("198.51.100.1", 40000), ("10.0.0.2/32",), 25, NOW - 10)
    (d,) = decide(idle, NOW + 300, memory).decisions
    assert d.write is not None and d.write.endpoint == ("192.168.1.2", 51820)


def test_a_version_1_file_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"version": 1, "interface": "wg0", "time": NOW, "exit_code": 5, "messages": [],
                                "peers": [{"public_key": str(PEER), "action": "set endpoint",
                                           "pending": {"endpoint": "203.0.113.5:4000", "since": NOW - 50}}]}))
    assert runrecord.pending_from(runrecord.load(path)) == {
        PEER: PeerMemory(("203.0.113.5", 4000), NOW - 50, NOW - 50)}


def test_a_wrong_version_or_corrupt_file_is_a_fresh_start(tmp_path: Path) -> None:
    for text in ('{"version": 99, "peers": []}', "[]", "", "\x00\xff", '{"version": 2, "peers": 5}',
                 '{"version": 2, "peers": [{"public_key": 5, "pending": {}}]}'):
        path = tmp_path / "r.json"
        path.write_text(text, errors="surrogateescape")
        assert runrecord.pending_from(runrecord.load(path)) == {}


def test_malformed_memory_fields_are_forgotten_not_fatal() -> None:
    raw = {"endpoint": "nonsense:port", "since": "yesterday", "waiting_since": True,
           "record_endpoint": "198.51.100.1:40000", "record_label": "zz", "announced": "192.168.1.2:51820",
           "worked": [5, {"endpoint": "192.168.1.2:70000", "handshake": 1}, {"endpoint": "[::1]:1", "handshake": "x"}],
           "resting": "yes"}
    record = {"version": 2, "peers": [{"public_key": str(PEER), "pending": raw}]}
    assert runrecord.pending_from(record) == {PEER: PeerMemory()}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=5),
    max_leaves=25,
)
memory_keys = st.sampled_from(["endpoint", "since", "waiting_since", "record_endpoint", "record_label", "announced",
                               "worked", "resting", "following"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(memory_keys, json_values | st.sampled_from(["1.2.3.4:5", "[2001:db8::1]:7", "40" * 12])),
       st.sampled_from([1, 2]), json_values)
def test_any_json_gives_a_memory_or_nothing_never_a_traceback(raw: dict[str, Any], version: int, junk: Any) -> None:
    for record in ({"version": version, "peers": [{"public_key": str(PEER), "pending": raw}]},
                   {"version": version, "peers": junk}, {"version": version, "peers": [junk]}):
        memory = runrecord.pending_from(record)
        for value in memory.values():
            assert isinstance(value, PeerMemory)
            plan(InterfaceState("wg0", OWN, 51820, 0, {PEER: PeerState(PEER, None, (), 0, 0)}),
                 {PEER: Record(PEER, "203.0.113.5", 1, encode_label(NOW, 0))}, Settings(), NOW, memory)


def test_memory_of_a_peer_without_a_record_this_run_is_kept(tmp_path: Path) -> None:
    on_lan = PeerState(PEER, ("192.168.1.2", 51820), ("10.0.0.2/32",), 25, NOW - 10)
    memory = through_file(tmp_path, decide(on_lan, NOW, {}), NOW)
    no_records = plan(InterfaceState("wg0", OWN, 51820, 0, {PEER: on_lan}), {}, Settings(), NOW + 30, memory)
    assert through_file(tmp_path, no_records, NOW + 30) == memory


def test_this_hosts_endpoint_is_remembered_and_carried_over_a_run_that_failed_early() -> None:
    """The next run compares it with its own registration (a moved host re-opens its peers)."""
    failed = runrecord.build_record("wg0", 1.0, 2, ["no answer"], None, [], False, {}, ("198.51.100.1", 51820))
    assert failed["own_endpoint"] == "198.51.100.1:51820"
    assert runrecord.own_endpoint_from(json.loads(json.dumps(failed))) == ("198.51.100.1", 51820)
    assert runrecord.own_endpoint_from(None) is None
    assert runrecord.own_endpoint_from({"own_endpoint": 7}) is None
    v6 = runrecord.build_record("wg0", 1.0, 2, [], None, [], False, {}, ("2001:db8::1", 51820))
    assert runrecord.own_endpoint_from(v6) == ("2001:db8::1", 51820)


BAD_RECORDS = {
    "time NaN": '{"version": 2, "interface": "wg0", "time": NaN, "exit_code": 0, "peers": []}',
    "since Infinity": '{"version": 2, "time": 1, "peers": [{"public_key": "%s", "pending": {"since": Infinity}}]}',
    "record_time 1e999": '{"version": 2, "time": 1, "peers": [{"public_key": "%s", "record_time": 1e999}]}',
    "huge integer": '{"version": 2, "time": 1, "peers": [{"public_key": "%s", "pending": {"since": 1%s}}]}',
    "time a string": '{"version": 2, "time": "yesterday", "peers": []}',
    "exit code a list": '{"version": 2, "time": 1, "exit_code": [], "peers": []}',
    "peers a number": '{"version": 2, "time": 1, "peers": 5}',
    "handshake a string": '{"version": 2, "time": 1, "peers": [{"public_key": "%s", "latest_handshake": "x"}]}',
}


def bad_record(kind: str) -> str:
    text = BAD_RECORDS[kind]
    if kind == "huge integer":
        return text % (str(PublicKey(PEER)), "0" * 400)
    return text % str(PublicKey(PEER)) if "%s" in text else text


@pytest.mark.parametrize("kind", sorted(BAD_RECORDS))
def test_a_record_with_nan_or_wrong_types_is_no_record_and_one_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "wgsigc-wg0.json"
    path.write_text(bad_record(kind))
    record, problem = runrecord.read(path)
    assert record is None and runrecord.load(path) is None
    assert problem is not None and "\n" not in problem and str(path) in problem and "ignored" in problem
    assert runrecord.pending_from(runrecord.load(path)) == {}


def test_a_missing_record_is_no_record_and_says_nothing(tmp_path: Path) -> None:
    assert runrecord.read(tmp_path / "none.json") == (None, None)


def test_memory_numbers_that_are_not_finite_are_forgotten() -> None:
    """pending_from on a record that bypassed read(): NaN, infinities and huge integers are not remembered."""
    for value in (float("nan"), float("inf"), 10**400):
        record = {"version": 2, "peers": [{"public_key": str(PublicKey(PEER)), "pending": {
            "endpoint": "203.0.113.5:4000", "since": value, "waiting_since": value,
            "worked": [{"endpoint": "203.0.113.5:4000", "handshake": value}]}}]}
        memory = runrecord.pending_from(record)[PEER]
        assert memory.since == 0.0 and memory.waiting_since is None and memory.worked == ()
        plan(InterfaceState("wg0", OWN, 51820, 0, {PEER: PeerState(PEER, ("203.0.113.5", 4000), (), 0, NOW - 500)}),
             {PEER: Record(PEER, "203.0.113.5", 4000, encode_label(NOW, 0))}, Settings(), NOW, {PEER: memory})
