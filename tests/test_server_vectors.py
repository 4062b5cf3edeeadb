"""Every server scenario recorded from the C wgsigd, judged by its verdict.

Pure tests of the sans-IO core: datagrams in, datagrams out, no sockets.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests import vectors
from wgsig.envelope import envelope_key, unseal
from wgsig.ratelimit import ReplayCache
from wgsig.server import GroupConfig, Server
from wgsig.wire import RESPONSE_SIZE, decode_response
from wgsigd.config import DaemonConfig

SECRET = vectors.secret()
NOW = float(vectors.fake_time())
C_CAPACITY = 10  # the C server keeps ten records


def make_server(encrypt: bool, group_ids: tuple[int, ...] = (0,), limits: bool = False) -> Server:
    groups = [GroupConfig(g, (SECRET,), encrypt=encrypt, max_records=C_CAPACITY) for g in group_ids]
    if not limits:
        return Server(groups, random_bytes=os.urandom)
    defaults = DaemonConfig()  # the anti-amplification limits wgsigd applies by default
    return Server(groups, defaults.window, os.urandom, defaults.limits(ReplayCache(defaults.window)))


def clear_answer(datagrams: list[bytes], encrypt: bool) -> list[bytes]:
    if not encrypt:
        return datagrams
    return [unseal(d, envelope_key(SECRET), RESPONSE_SIZE) for d in datagrams]


def step_datagram(step: dict[str, Any]) -> bytes:
    return bytes.fromhex(step["wire_hex"])


def send(server: Server, step: dict[str, Any]) -> list[bytes]:
    datagrams, _ = server.receive_datagram(step_datagram(step), tuple(step["src"]), NOW)
    return clear_answer(datagrams, server.group_config(0).encrypt)  # every test server serves group 0


MATCH = [s for s in vectors.server_scenarios() if s["verdict"].startswith("match")]
DEVIATE = {vectors.scenario_id(s): s for s in vectors.server_scenarios() if s["verdict"].startswith("DEVIATE")}


@pytest.mark.parametrize("limits", [False, True], ids=["core", "daemon-defaults"])
@pytest.mark.parametrize("scenario", MATCH, ids=vectors.scenario_id)
def test_match_scenarios_byte_for_byte(scenario: dict[str, Any], limits: bool) -> None:
    encrypt = scenario["variant"] == "enc"
    server = make_server(encrypt, limits=limits)
    for step in scenario["steps"]:
        answer = send(server, step)
        if step["response_wire_hex"] is None:
            assert answer == [], step.get("note")
        else:
            expected = step["response_clear_hex"] if encrypt else step["response_wire_hex"]
            assert [a.hex() for a in answer] == [expected]


def deviate(name: str) -> list[tuple[bool, dict[str, Any]]]:
    return [(variant == "enc", DEVIATE[f"{variant}-{name}"]) for variant in ("plain", "enc")]


@pytest.mark.parametrize(("encrypt", "scenario"), deviate("clflg1_unknown_peer_empty_db"))
def test_empty_table_answered_with_valid_hmac(encrypt: bool, scenario: dict[str, Any]) -> None:
    (answer,) = send(make_server(encrypt), scenario["steps"][0])
    response = decode_response(answer, [SECRET])  # raises unless the HMAC verifies
    assert response.records == (None,) * 10
    assert (response.n_other, response.group) == (0, 0)


@pytest.mark.parametrize(("encrypt", "scenario"), deviate("ns_top_byte_bug"))
def test_replay_check_compares_full_nanoseconds(encrypt: bool, scenario: dict[str, Any]) -> None:
    server = make_server(encrypt)
    for step in scenario["steps"]:
        (answer,) = send(server, step)  # every strictly newer request is answered
        record = decode_response(answer, [SECRET]).records[0]
        assert record is not None
        assert int.from_bytes(record.label[8:], "big") == step["request_params"]["nsec"]


@pytest.mark.parametrize(("encrypt", "scenario"), deviate("group_ignored"))
def test_group_checked_and_echoed(encrypt: bool, scenario: dict[str, Any]) -> None:
    step = scenario["steps"][0]
    group = step["request_params"]["group"]
    assert send(make_server(encrypt, (0,)), step) == []
    (answer,) = send(make_server(encrypt, (0, group)), step)
    assert decode_response(answer, [SECRET]).group == group


@pytest.mark.parametrize(("encrypt", "scenario"), deviate("ring_eviction"))
def test_full_group_evicts_least_recently_updated(encrypt: bool, scenario: dict[str, Any]) -> None:
    server = make_server(encrypt)
    steps = scenario["steps"]
    for step in steps[:C_CAPACITY]:  # same bytes as the C server until the group is full
        assert [a.hex() for a in send(server, step)] == [step["response_clear_hex" if encrypt else "response_wire_hex"]]
    # Peer 0x41 refreshes, so 0x40 is now the least recently updated record.
    (first,) = send(server, steps[1]) or [b""]  # a replay: rejected
    assert first == b""
    (answer,) = send(server, steps[C_CAPACITY])  # the 11th peer arrives
    ids = [r.peer_id[:1] for r in decode_response(answer, [SECRET]).records if r]
    assert b"\x40" not in ids and b"\x4a" in ids and len(ids) == C_CAPACITY
    assert decode_response(answer, [SECRET]).records[0].peer_id[:1] == b"\x4a"  # type: ignore[union-attr]
    (answer,) = send(server, steps[C_CAPACITY + 1])  # peer 0x40 comes back: evicts 0x41, the oldest now
    ids = [r.peer_id[:1] for r in decode_response(answer, [SECRET]).records if r]
    assert b"\x40" in ids and b"\x41" not in ids and b"\x4a" in ids


@pytest.mark.parametrize(("encrypt", "scenario"), deviate("zero_peer_id_quirk"))
def test_zero_peer_id_rejected(encrypt: bool, scenario: dict[str, Any]) -> None:
    server = make_server(encrypt)
    zero, other = scenario["steps"]
    assert send(server, zero) == []
    (answer,) = send(server, other)
    records = decode_response(answer, [SECRET]).records
    assert records[0] is not None and records[0].peer_id == bytes.fromhex(other["request_params"]["peer_id_hex"])
    assert records[1:] == (None,) * 9


def test_sgroup_must_match_inner_group() -> None:
    scenario = DEVIATE["enc-sgroup_mismatch_accepted"]
    step = scenario["steps"][0]  # SGROUP says 7, the inner GROUP is 0
    assert send(make_server(True, (0,)), step) == []
    assert send(make_server(True, (0, 7)), step) == []


def test_oversize_and_short_datagrams_dropped() -> None:
    server = make_server(False)
    long = DEVIATE["plain-oversize_datagram"]["steps"][0]
    assert send(server, long) == []
    assert len(server.groups[0]) == 0
    first, replayable, short = DEVIATE["plain-short_datagram_stale_buffer"]["steps"]
    assert len(send(server, first)) == 1
    assert len(send(server, replayable)) == 1
    assert send(server, short) == []


@pytest.mark.parametrize("name", ["plain-zero_length_datagram_kills_server", "enc-zero_length_datagram_enc"])
def test_empty_datagram_dropped_and_server_keeps_serving(name: str) -> None:
    scenario = DEVIATE[name]
    encrypt = scenario["variant"] == "enc"
    server = make_server(encrypt)
    first, empty = scenario["steps"][:2]
    assert len(send(server, first)) == 1
    assert send(server, empty) == []
    later = dict(first, src=["127.0.0.1", 40009])
    assert send(server, later) == []  # a replay: still checked, still dropped
    if encrypt:
        assert len(send(server, scenario["steps"][2])) == 1


def test_every_deviate_scenario_has_a_test() -> None:
    covered = {
        "clflg1_unknown_peer_empty_db", "ns_top_byte_bug", "group_ignored", "ring_eviction",
        "zero_peer_id_quirk", "sgroup_mismatch_accepted", "oversize_datagram",
        "short_datagram_stale_buffer", "zero_length_datagram_kills_server", "zero_length_datagram_enc",
    }
    assert {s["name"] for s in DEVIATE.values()} <= covered
