"""Server reliability: anti-amplification limits, their configuration, and the
real wgsigd under replays, rate limits, secret rollover, clock skew and a
corrupt state file.

The first tests are pure tests of the sans-IO core (datagrams in, datagrams
out, time passed in); the ``real wgsigd`` tests run the daemon as a process on
loopback UDP.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.procs import Wgsigd, env, free_udp_port, query, received, unprivileged_prefix, write_secret
from wgsig.client import Accepted, AnswerCollector, GroupCredentials, Ignored, build_request
from wgsig.events import Answered, Change, Reason, Rejected
from wgsig.label import encode_label, label_from_ns
from wgsig.ratelimit import NO_LIMITS, AnswerLimiter, Limits, ReplayCache, capped_datagrams
from wgsig.server import GroupConfig, Server
from wgsig.statefile import decode_state, encode_state
from wgsig.wire import REQUEST_SIZE, RESPONSE_SIZE, encode_endpoint
from wgsig.x1view import NO_IPV4
from wgsigc.exchange import diagnose, exchange
from wgsigd.config import ConfigError, DaemonConfig, parse_config

SECRET = bytes(range(32))
OLD_SECRET = bytes(range(100, 132))
NOW = 1_700_000_000.0
SOURCE = ("198.51.100.7", 40000)


def request(peer: int, clflg: int, now: float = NOW, secret: bytes = SECRET, group: int = 0, ns: int = 0) -> bytes:
    creds = GroupCredentials(group, secret)
    return build_request(creds, bytes([peer]) * 32, encode_label(int(now), ns), clflg, os.urandom)


def server_with(records: int, limits: Limits = NO_LIMITS) -> Server:
    """A plain group 0 holding ``records`` peers (IDs 1..records)."""
    server = Server([GroupConfig(0, (SECRET,), max_records=1000)], limits=limits)
    table = server.groups[0]
    for i in range(1, records + 1):
        table.upsert(bytes([i % 256, i // 256]) * 16, encode_endpoint(bytes([10, 0, 0, 1]), 1000 + i),
                     encode_label(int(NOW) - 5, i))
    return server


# --- AnswerLimiter (pure) ---------------------------------------------------------------------------------------


def test_limiter_budgets_bytes_overdraws_once_then_refills() -> None:
    limiter = AnswerLimiter(rate=1000, burst=3000)  # bytes a second, bytes at once
    assert limiter.allow("a", 100.0)
    limiter.charge("a", 2000, 100.0)
    assert limiter.allow("a", 100.0)  # 1,000 bytes left: a larger answer may still go, overdrawing
    limiter.charge("a", 5000, 100.0)
    assert not limiter.allow("a", 100.0) and not limiter.allow("a", 104.0)  # 4,000 bytes overdrawn
    assert limiter.limited == 2
    assert limiter.allow("a", 104.01)  # repaid after 4 s: the bucket holds bytes again
    assert limiter.allow("b", 100.0)  # sources are independent


def test_limiter_bounds_bytes_not_answers() -> None:
    """However the bytes come (many small answers or few big ones), a source gets rate * t + burst + one answer."""
    for size in (82, 540, 54_000):
        limiter, sent, now = AnswerLimiter(rate=10_000, burst=20_000), 0, 0.0
        while now < 10.0:
            if limiter.allow("victim", now):
                limiter.charge("victim", size, now)
                sent += size
            now += 0.001
        assert sent + size >= 10_000 * 10 and sent <= 10_000 * 10 + 20_000 + size, size


def test_limiter_refills_to_burst_only() -> None:
    limiter = AnswerLimiter(rate=10, burst=30)
    limiter.charge("a", 10, 0.0)
    answers = []
    for _ in range(5):  # a long pause refills at most ``burst``
        answers.append(limiter.allow("a", 1000.0))
        if answers[-1]:
            limiter.charge("a", 10, 1000.0)
    assert answers == [True] * 3 + [False] * 2


def test_limiter_forgets_idle_sources_and_stays_bounded() -> None:
    limiter = AnswerLimiter(rate=100, burst=2, max_sources=50)
    for i in range(10_000):
        source = f"10.0.{i // 256}.{i % 256}"
        assert limiter.allow(source, 5.0)
        limiter.charge(source, 1, 5.0)
        assert len(limiter) <= 50
    # Idle entries (bucket full again) are dropped as traffic goes on.
    for i in range(100):
        limiter.charge("192.0.2.1", 1, 10.0 + i)
    assert len(limiter) <= 3


def test_limiter_survives_clock_going_backwards() -> None:
    limiter = AnswerLimiter(rate=1, burst=2)
    limiter.charge("a", 100, 1000.0)
    assert not limiter.allow("a", 1000.0)
    assert limiter.allow("a", 10.0)  # clock stepped back by 990 s: the source is not locked out


# --- ReplayCache (pure) -----------------------------------------------------------------------------------------


def test_replay_cache_first_then_replay_then_expiry() -> None:
    cache = ReplayCache(window=30)
    assert cache.check(b"t1", 0.0) is True
    assert cache.check(b"t1", 60.0) is False  # still within 2 * window + 1
    assert cache.check(b"t2", 62.0) is True  # expires t1 on the way
    assert len(cache) == 1
    assert cache.check(b"t1", 62.0) is True


def test_replay_cache_full_says_so() -> None:
    cache = ReplayCache(window=30, max_entries=2)
    assert cache.check(b"a", 0.0) and cache.check(b"b", 0.0)
    assert cache.check(b"c", 1.0) is None
    assert cache.check(b"a", 1.0) is False


def test_limits_replace_on_configure_the_replay_cache_follows_the_window() -> None:
    cache = ReplayCache(window=5)
    group = GroupConfig(0, (SECRET,))
    server = Server([group], window=30, limits=Limits(replay_cache=cache))
    assert cache.lifetime == 61  # the server's window, not the one the cache was made with
    server.configure([group], Limits(max_answer_bytes=600, replay_cache=cache), window=10)
    assert (server.window, server.limits.max_answer_bytes, cache.lifetime) == (10, 600, 21)
    with pytest.raises(ValueError, match="configured twice"):
        server.configure([group, group], NO_LIMITS, window=99)
    assert (server.window, server.limits.replay_cache, cache.lifetime) == (10, cache, 21)  # refused: all kept


def test_capped_datagrams() -> None:
    assert capped_datagrams(5, 540, 1200) == 2
    assert capped_datagrams(1, 540, 600) == 1
    assert capped_datagrams(5, 556, 100) == 1  # never less than one datagram
    assert capped_datagrams(2, 540, 10_000) == 2


# --- The server core with the limits ----------------------------------------------------------------------------


PEER = bytes([200]) * 32
PEER_SOURCE = ("198.51.100.20", 51820)  # where PEER registered


def fleet(limits: Limits) -> Server:
    """One server of a group of 26 records (three datagrams), PEER's recorded at PEER_SOURCE."""
    server = server_with(25, limits)
    server.groups[0].upsert(PEER, encode_endpoint(bytes([198, 51, 100, 20]), 51820), encode_label(int(NOW) - 5, 0))
    return server


@pytest.mark.parametrize("clflg", [3, 1])
def test_label_less_request_is_answered_whole_only_when_tied_and_new(clflg: int) -> None:
    """CLFLG 3, and CLFLG 1 from an unknown peer, store no label: the whole answer goes only to the
    address recorded for the peer, the first time; every other answer is capped to one datagram."""
    peer = PEER if clflg == 3 else bytes([201]) * 32  # CLFLG 1 of a known peer stores a label
    server = fleet(Limits(max_answer_bytes=600, replay_cache=ReplayCache(30)))
    datagram = request(peer[0], clflg)
    answer, event = server.receive_datagram(datagram, (PEER_SOURCE[0], 40000), NOW)
    assert isinstance(event, Answered) and event.change is Change.UNCHANGED
    assert len(answer) == (3 if clflg == 3 else 1)  # tied (another port of the same address), or nobody's
    for spoofed in [(PEER_SOURCE[0], 40000), ("203.0.113.9", 53), ("192.0.2.1", 123)]:
        answer, event = server.receive_datagram(datagram, spoofed, NOW + 10)
        # Answered, as the protocol allows (and the C server does), but one datagram only.
        assert len(answer) == 1 and isinstance(event, Answered) and event.change is Change.UNCHANGED


def test_captured_fetch_gets_the_cap_from_other_servers_and_after_a_restart() -> None:
    """The replay cache lives in one process: another server of the group (or the same one restarted)
    has not seen the captured request, and still sends a spoofed source one datagram only."""
    captured = request(PEER[0], 3)
    server_a = fleet(Limits(max_answer_bytes=600, replay_cache=ReplayCache(30)))
    assert len(server_a.receive_datagram(captured, PEER_SOURCE, NOW)[0]) == 3  # the real fetch
    server_b = fleet(Limits(max_answer_bytes=600, replay_cache=ReplayCache(30)))
    restarted_a = fleet(Limits(max_answer_bytes=600, replay_cache=ReplayCache(30)))
    for server in (server_b, restarted_a):
        answer, event = server.receive_datagram(captured, ("203.0.113.9", 53), NOW + 1)
        assert isinstance(event, Answered) and sum(map(len, answer)) <= 600


def test_tied_over_ipv6_by_the_observed_source() -> None:
    """An X1 peer registered over IPv6 is tied by its OBS6 address."""
    server = fleet(Limits(max_answer_bytes=600, replay_cache=ReplayCache(30)))
    server.groups[0].remove(PEER)
    group = server._groups[0]
    group.x1.set_observed(PEER, "2001:db8::20", 51820, NOW)
    group.x1.v6only.upsert(PEER, NO_IPV4, encode_label(int(NOW) - 5, 0))
    assert len(server.receive_datagram(request(PEER[0], 3), ("2001:db8::20", 40000), NOW)[0]) == 3
    assert len(server.receive_datagram(request(PEER[0], 3, ns=1), ("2001:db8::21", 40000), NOW)[0]) == 1


def test_replays_of_table_changing_requests_are_rejected() -> None:
    server = server_with(0, Limits(replay_cache=ReplayCache(30)))
    for clflg in (0, 1, 2):
        datagram = request(7, clflg, ns=clflg + 1)
        assert server.receive_datagram(datagram, SOURCE, NOW)[0]
        answer, event = server.receive_datagram(datagram, ("203.0.113.9", 53), NOW)
        assert answer == [] and isinstance(event, Rejected) and event.reason is Reason.REPLAY


def test_byte_cap_applies_to_label_less_answers_only() -> None:
    """Without a replay cache (or with a full one), label-less answers are capped; a registration gets all."""
    server = server_with(45, Limits(max_answer_bytes=1200))
    assert len(server.groups[0].answer(0, SECRET)) == 5
    peek, _ = server.receive_datagram(request(250, 3), SOURCE, NOW)
    assert len(peek) == 2 and sum(map(len, peek)) <= 1200
    register, _ = server.receive_datagram(request(250, 0), SOURCE, NOW)
    assert len(register) == 5  # 46 records: the full answer, it cannot be replayed


def test_byte_cap_when_replay_cache_is_full() -> None:
    server = fleet(Limits(max_answer_bytes=600, replay_cache=ReplayCache(30, max_entries=1)))
    first, _ = server.receive_datagram(request(PEER[0], 3, ns=1), PEER_SOURCE, NOW)
    assert len(first) == 3  # recorded in the cache: answered whole, once
    second, _ = server.receive_datagram(request(PEER[0], 3, ns=2), PEER_SOURCE, NOW)
    assert len(second) == 1  # cache full: capped to one datagram


def test_encrypted_answer_cap_counts_envelope_bytes() -> None:
    server = Server([GroupConfig(9, (SECRET,), encrypt=True, max_records=100)], random_bytes=os.urandom,
                    limits=Limits(max_answer_bytes=1111))  # two encrypted datagrams need 1112
    table = server.groups[9]
    for i in range(1, 31):
        table.upsert(bytes([i]) * 32, encode_endpoint(b"\x0a\x00\x00\x01", i), encode_label(int(NOW), i))
    creds = GroupCredentials(9, SECRET, encrypt=True)
    datagram = build_request(creds, b"\xee" * 32, encode_label(int(NOW), 0), 3, os.urandom)
    answer, _ = server.receive_datagram(datagram, SOURCE, NOW)
    assert [len(d) for d in answer] == [RESPONSE_SIZE + 16]


def test_fresh_registration_over_budget_is_applied_not_answered() -> None:
    server = server_with(0, Limits(answer_limiter=AnswerLimiter(rate=1, burst=1000)))
    assert server.receive_datagram(request(1, 0), SOURCE, NOW)[0]
    assert server.receive_datagram(request(2, 0), SOURCE, NOW)[0]  # overdraws the 460 bytes left
    answer, event = server.receive_datagram(request(1, 0, ns=1), (SOURCE[0], 40001), NOW)
    assert answer == [] and isinstance(event, Answered) and event.limited and event.change is Change.MOVED
    assert {r.peer_id[0]: r.port for r in server.groups[0].records()} == {1: 40001, 2: SOURCE[1]}
    assert server.group_counters()[0].rejections == {Reason.RATE_LIMITED: 1}
    assert server.receive_datagram(request(3, 0), ("198.51.100.8", 1), NOW)[0]  # another source is not limited


def daemon_default_server(records: int = 45) -> Server:
    """The core with the limits wgsigd applies by default."""
    defaults = DaemonConfig()
    server = Server([GroupConfig(0, (SECRET,), max_records=1000)], defaults.window, os.urandom,
                    defaults.limits(ReplayCache(defaults.window)))
    for i in range(1, records + 1):
        server.groups[0].upsert(bytes([i % 256, i // 256]) * 16, encode_endpoint(bytes([10, 0, 0, 1]), 1000 + i),
                                encode_label(int(NOW) - 5, i))
    return server


def test_spoofed_replays_do_not_spend_the_victims_budget() -> None:
    """With wgsigd's defaults: thousands of replays of a captured fetch, spoofed from the victim's
    address, are answered within their own small budget; the victim's registrations are applied
    and answered, every one."""
    server = daemon_default_server()
    victim = ("192.0.2.50", 51820)
    captured = request(250, 3)
    replies = 0
    for i in range(100):  # 10 s of 50 replays a second, and a registration a second
        now = NOW + i / 10
        for j in range(5):
            replies += sum(map(len, server.receive_datagram(captured, (victim[0], 53), now + j / 50)[0]))
        answer, event = server.receive_datagram(request(99, 0, now=now, ns=i), (victim[0], 51820 + i), now)
        assert answer and isinstance(event, Answered) and not event.limited
        assert {r.port for r in server.groups[0].records() if r.peer_id == bytes([99]) * 32} == {51820 + i}
    assert replies <= 10 * 3_000 + 6_000 + 600  # the replay budget: 3,000 bytes a second, 6,000 at once


def test_default_budget_is_in_bytes_and_bounds_a_source() -> None:
    """A member spoofing fresh registrations from a victim's address: bytes, not answers, are bounded."""
    server = daemon_default_server(records=999)  # 100 datagrams, 54,000 bytes an answer
    sent = 0
    for i in range(2000):  # 2,000 registrations in 1 s
        sent += sum(map(len, server.receive_datagram(request(7, 0, ns=i), ("192.0.2.51", i), NOW + i / 2000)[0]))
    defaults = DaemonConfig()
    assert sent <= defaults.answer_bytes_rate + defaults.answer_bytes_burst + 54_000


def test_garbage_never_reaches_the_limiter() -> None:
    limiter = AnswerLimiter(rate=1, burst=1)
    server = server_with(1, Limits(answer_limiter=limiter))
    good = request(1, 3)
    for i in range(2000):
        bad = bytearray(good)
        bad[i % REQUEST_SIZE] ^= 1 + i % 255
        assert server.receive_datagram(bytes(bad), (f"10.1.{i // 256}.{i % 256}", 9), NOW)[0] == []
    assert len(limiter) == 0 and limiter.limited == 0


# --- Configuration -----------------------------------------------------------------------------------------------


def group_table() -> dict[str, object]:
    return {"a": {"id": 1, "secret_file": "/x"}}


def test_config_limit_keys() -> None:
    keys = {"answer_bytes_rate": 2500, "answer_bytes_burst": 7000, "replay_bytes_rate": 100,
            "replay_bytes_burst": 1200, "max_answer_bytes": 2000}
    config = parse_config({**keys, "group": group_table()}, "f")
    assert (config.answer_bytes_rate, config.answer_bytes_burst, config.max_answer_bytes) == (2500, 7000, 2000)
    limiter, replays = config.answer_limiter(), config.replay_limiter()
    assert limiter is not None and (limiter.rate, limiter.burst) == (2500, 7000)
    assert replays is not None and (replays.rate, replays.burst) == (100, 1200)
    off = parse_config({"answer_bytes_rate": 0, "replay_bytes_rate": 0, "group": group_table()}, "f")
    assert off.answer_limiter() is None and off.replay_limiter() is None
    defaults = parse_config({"group": group_table()}, "f")
    assert defaults.answer_limiter() is not None and defaults.replay_limiter() is not None
    assert defaults.max_answer_bytes >= 600


def test_config_old_per_answer_keys_still_work() -> None:
    """answer_rate / answer_burst (answers) count one datagram each; answer_rate = 0 turns every budget off."""
    old = parse_config({"answer_rate": 2.5, "answer_burst": 7, "group": group_table()}, "f")
    assert (old.answer_bytes_rate, old.answer_bytes_burst) == (2.5 * 540, 7 * 540)
    off = parse_config({"answer_rate": 0, "group": group_table()}, "f")
    assert off.answer_limiter() is None and off.replay_limiter() is None


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("answer_rate", -1, "out of range"),
        ("answer_rate", "fast", "must be a number"),
        ("answer_burst", 0, "out of range"),
        ("answer_burst", 1.5, "must be an integer"),
        ("answer_bytes_rate", -1, "out of range"),
        ("answer_bytes_burst", 0, "out of range"),
        ("replay_bytes_rate", "fast", "must be a number"),
        ("replay_bytes_burst", 1.5, "must be an integer"),
        ("max_answer_bytes", 100, "out of range"),
        ("max_answer_bytes", True, "must be an integer"),
    ],
)
def test_config_limit_keys_validated(key: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'.*{words}"):
        parse_config({key: value, "group": group_table()}, "f")


# --- The real wgsigd on loopback ---------------------------------------------------------------------------------


def start(tmp_path: Path, config: str, credentials: GroupCredentials, port: int) -> Wgsigd:
    path = tmp_path / "wgsigd.toml"
    path.write_text(f'state_directory = "{tmp_path / "state"}"\n{config}')
    return Wgsigd(["--config", str(path)], port, credentials, tmp_path / "wgsigd.log")


def query_from(source_ip: str, port: int, creds: GroupCredentials, peer_id: bytes, clflg: int,
               timeout: float = 2.0) -> list[bytes]:
    """One request from ``source_ip`` (a loopback address); its datagrams, once complete (or at the timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source_ip, 0))
        sock.connect(("127.0.0.1", port))
        sock.send(build_request(creds, peer_id, label_from_ns(time.time_ns()), clflg, os.urandom))
        return collect_answer(sock, creds, timeout)


def collect_answer(sock: socket.socket, creds: GroupCredentials, timeout: float) -> list[bytes]:
    collector, got = AnswerCollector(creds), []
    sock.settimeout(timeout)
    try:
        while not collector.complete:
            got.append(sock.recv(4096))
            collector.receive_datagram(got[-1])
    except TimeoutError:
        pass
    return got


def test_real_wgsigd_rate_limit(tmp_path: Path) -> None:
    write_secret(tmp_path / "s", SECRET)
    port = free_udp_port()
    creds = GroupCredentials(5, SECRET)
    server = start(tmp_path, f'port = {port}\nanswer_bytes_rate = 1\nanswer_bytes_burst = 1600\n'
                   f'replay_bytes_rate = 1\nreplay_bytes_burst = 1000\n'
                   f'[group.g]\nid = 5\nsecret_file = "{tmp_path / "s"}"\n', creds, port)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("127.0.0.1", port))
            peek = build_request(creds, b"\x55" * 32, label_from_ns(time.time_ns()), 3, os.urandom)
            for _ in range(5):
                sock.send(peek)  # one peek and four replays: the replay budget, 1,000 bytes: two answers
            # Ten fresh registrations too: 1,600 bytes, three answers of 540.
            for i in range(10):
                sock.send(build_request(creds, bytes([i + 1]) * 32, label_from_ns(time.time_ns()), 0, os.urandom))
            answered = len(received(sock, 1.5))
            assert 2 <= answered <= 7  # both budgets, plus at most one answer each refilled meanwhile
        # Every registration was applied, answered or not (asked from another address: its own budget).
        datagrams = query_from("127.0.0.2", port, creds, b"\x66" * 32, 0)
        collector = AnswerCollector(creds)
        for datagram in datagrams:
            collector.receive_datagram(datagram)
        assert collector.complete and {r.peer_id[0] for r in collector.records()} == {*range(1, 11), 0x66}
    finally:
        assert server.stop() == 0
    assert "answer budget of 127.0.0.1 spent" in server.log.read_text()


def fleet_config(tmp_path: Path, name: str, port: int) -> str:
    return (f'port = {port}\nstate_directory = "{tmp_path / name}"\n'
            f'[group.g]\nid = 5\nsecret_file = "{tmp_path / "s"}"\n')


def register_fleet(port: int, creds: GroupCredentials) -> None:
    """Peer 0x70 registers from 127.0.0.1, 24 others from 127.0.3.N: 25 records, three datagrams."""
    assert query(port, creds, bytes([0x70]) * 32, clflg=0) is not None
    for n in range(1, 25):
        assert query_from(f"127.0.3.{n}", port, creds, bytes([n]) * 32, 0)


def test_real_wgsigd_captured_fetch_capped_by_other_server_and_after_restart(tmp_path: Path) -> None:
    """Two wgsigd of one group: peer 0x70's fetch to A, captured and replayed to B from another
    address, and to A once A restarted (its replay cache gone), is answered with one datagram."""
    write_secret(tmp_path / "s", SECRET)
    creds = GroupCredentials(5, SECRET)
    port_a, port_b = free_udp_port(), free_udp_port()
    a = Wgsigd(["--config", str(write(tmp_path / "a.toml", fleet_config(tmp_path, "a", port_a)))], port_a, creds,
               tmp_path / "a.log")
    b = Wgsigd(["--config", str(write(tmp_path / "b.toml", fleet_config(tmp_path, "b", port_b)))], port_b, creds,
               tmp_path / "b.log")
    try:
        for port in (port_a, port_b):
            register_fleet(port, creds)
        captured = build_request(creds, bytes([0x70]) * 32, label_from_ns(time.time_ns()), 3, os.urandom)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.connect(("127.0.0.1", port_a))
            peer.send(captured)
            assert len(received(peer, 1.0)) == 3  # the real fetch, from the peer's address: whole
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            attacker.bind(("127.0.0.9", 0))  # the spoofed victim's address
            attacker.sendto(captured, ("127.0.0.1", port_b))
            got = received(attacker, 1.0)
            assert len(got) == 1 and sum(map(len, got)) <= 600
        assert a.stop() == 0
        a = Wgsigd(["--config", str(tmp_path / "a.toml")], port_a, creds, tmp_path / "a2.log")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            attacker.bind(("127.0.0.9", 0))
            attacker.sendto(captured, ("127.0.0.1", port_a))
            got = received(attacker, 1.0)
            assert len(got) == 1 and sum(map(len, got)) <= 600
    finally:
        assert a.stop() == 0 and b.stop() == 0


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_real_wgsigd_spoofed_replays_leave_the_victims_registrations_alone(tmp_path: Path) -> None:
    """Default limits: a flood of replays of a captured fetch spoofed from the victim's address, then
    the victim moves to a new port: its registrations are applied and answered."""
    write_secret(tmp_path / "s", SECRET)
    creds = GroupCredentials(5, SECRET)
    port = free_udp_port()
    server = Wgsigd(["--config", str(write(tmp_path / "w.toml", fleet_config(tmp_path, "w", port)))], port, creds,
                    tmp_path / "w.log")
    victim = bytes([0x71]) * 32
    try:
        register_fleet(port, creds)
        captured = build_request(creds, bytes([0x70]) * 32, label_from_ns(time.time_ns()), 3, os.urandom)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            attacker.bind(("127.0.0.44", 0))
            for n in range(300):
                attacker.sendto(captured, ("127.0.0.1", port))
                if n % 25 == 24:
                    time.sleep(0.02)  # paced: a burst overflowing the socket buffer would drop the victim's, too
        for attempt in range(5):  # the victim registers from new ports, each once
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.44", 0))
                sock.connect(("127.0.0.1", port))
                sock.send(build_request(creds, victim, label_from_ns(time.time_ns()), 0, os.urandom))
                collector = AnswerCollector(creds)
                for datagram in collect_answer(sock, creds, 2.0):
                    collector.receive_datagram(datagram)
                assert collector.complete, attempt  # answered whole
                mine = [r for r in collector.records() if r.peer_id == victim]
                assert [(r.ip, r.port) for r in mine] == [("127.0.0.44", sock.getsockname()[1])]  # applied
    finally:
        assert server.stop() == 0
    assert "answer budget of 127.0.0.44 spent" in server.log.read_text()


def test_real_wgsigd_secret_rollover(tmp_path: Path) -> None:
    """Peers on the old secret and on the new one are both answered, each with its own secret."""
    write_secret(tmp_path / "new", SECRET)
    write_secret(tmp_path / "old", OLD_SECRET)
    port = free_udp_port()
    new, old = GroupCredentials(3, SECRET), GroupCredentials(3, OLD_SECRET)
    server = start(tmp_path, f'port = {port}\n[group.g]\nid = 3\nsecret_file = "{tmp_path / "new"}"\n'
                   f'previous_secret_files = ["{tmp_path / "old"}"]\n', new, port)
    try:
        assert query(port, old, b"\x01" * 32, clflg=0) is not None  # AnswerCollector checks the old secret
        records = query(port, new, b"\x02" * 32, clflg=0)
        assert records is not None and {r.peer_id for r in records} == {b"\x01" * 32, b"\x02" * 32}
        assert query(port, GroupCredentials(3, bytes(32)), b"\x03" * 32, clflg=0, timeout=0.5) is None
        # A peer answered with the old secret cannot read an answer made with the new one, and vice versa.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("127.0.0.1", port))
            sock.send(build_request(old, b"\x01" * 32, label_from_ns(time.time_ns()), 1, os.urandom))
            sock.settimeout(2)
            datagram = sock.recv(4096)
        assert isinstance(AnswerCollector(old).receive_datagram(datagram), Accepted)
        assert isinstance(AnswerCollector(new).receive_datagram(datagram), Ignored)
    finally:
        assert server.stop() == 0


def test_real_wgsigd_logs_clock_skew(tmp_path: Path) -> None:
    write_secret(tmp_path / "s", SECRET)
    port = free_udp_port()
    creds = GroupCredentials(0, SECRET)
    server = start(tmp_path, f'port = {port}\n[group.g]\nid = 0\nsecret_file = "{tmp_path / "s"}"\n', creds, port)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            skewed = lambda: time.time_ns() + 45 * 10**9  # noqa: E731
            result = exchange(sock, ("127.0.0.1", port), creds, b"\x42" * 32, 1, attempts=2, attempt_timeout=0.3,
                              clock_ns=skewed)
        assert result.records is None
        assert "clock" in diagnose(result, ("127.0.0.1", port))
        # Many skewed requests: the log line appears, rate-limited.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("127.0.0.1", port))
            for i in range(150):
                label = label_from_ns(time.time_ns() - 45 * 10**9 + i)
                sock.send(build_request(creds, b"\x43" * 32, label, 1, os.urandom))
        # The server has read everything before this answer (the socket buffer holds them all).
        assert query(port, creds, b"\x44" * 32, timeout=5) is not None
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    ahead = [line for line in log.splitlines() if "its clock is 45 s ahead of ours" in line]
    behind = [line for line in log.splitlines() if "s behind our clock" in line]
    assert ahead and "QkJCQkJC" in ahead[0]  # the peer's key, base64 of 0x42...
    assert behind and any("timestamp is 45 s behind" in line or "timestamp is 44 s behind" in line for line in behind)
    assert all("clock skew, or a replay of an old request" in line for line in behind)
    assert len(behind) <= 20  # 150 rejections in a burst, rate-limited


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_real_wgsigd_corrupt_state_file(tmp_path: Path, damage: str) -> None:
    write_secret(tmp_path / "s", SECRET)
    state = tmp_path / "state"
    state.mkdir()
    good = encode_state({0: bytes([1]) * 32 + bytes(6) + encode_label(int(time.time()), 0)})
    data = {"truncate": good[:-7], "flip": good[:20] + bytes([good[20] ^ 1]) + good[21:],
            "garbage": os.urandom(300), "empty": b""}[damage]
    (state / "records.state").write_bytes(data)
    port = free_udp_port()
    creds = GroupCredentials(0, SECRET)
    server = Wgsigd([str(tmp_path / "s"), str(port), "--state-dir", str(state)], port, creds, tmp_path / "log")
    try:
        records = query(port, creds, b"\x09" * 32, clflg=0)
        assert records is not None and [r.peer_id for r in records] == [b"\x09" * 32]  # started empty
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert "is unusable" in log and "starting with no records" in log and "Traceback" not in log
    aside = list(state.glob("records.state.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == data  # kept for the admin, byte for byte
    assert list(decode_state((state / "records.state").read_bytes())) == [0]  # a new, valid state was saved


# --- State file faults (the real wgsigd; real directories, FIFOs, permissions and a full filesystem) -------------


def many_records(count: int) -> bytes:
    """A valid state file of group 0 holding ``count`` peers (IDs 1..count, current labels)."""
    now = int(time.time())
    slots = b"".join(i.to_bytes(2, "big") * 16 + encode_endpoint(bytes([10, 0, 0, 1]), 1000 + i)
                     + encode_label(now, i) for i in range(1, count + 1))
    return encode_state({0: slots})


def run_to_exit(tmp_path: Path, state: Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """wgsigd in the C form with ``--state-dir``, expected to exit by itself (a hang fails the test)."""
    write_secret(tmp_path / "s", SECRET)
    return subprocess.run([*(prefix or []), sys.executable, "-m", "wgsigd", str(tmp_path / "s"),
                           str(free_udp_port()), "--state-dir", str(state)],
                          capture_output=True, text=True, env=env(), timeout=30, check=False)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_real_wgsigd_state_file_that_is_a_directory(tmp_path: Path) -> None:
    """Exit 6 (RestartPreventExitStatus=6: a restart cannot fix it), one line, the directory untouched."""
    state = tmp_path / "state"
    (state / "records.state").mkdir(parents=True)
    (state / "records.state" / "keep").write_text("admin's")
    result = run_to_exit(tmp_path, state)
    line = one_error_line(result)
    assert result.returncode == 6
    assert "records.state" in line and "is a directory" in line and "move it" in line
    assert (state / "records.state" / "keep").read_text() == "admin's"


def test_real_wgsigd_state_file_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.mkfifo(state / "records.state")
    result = run_to_exit(tmp_path, state)  # today: blocks in open() before READY (the timeout fails it)
    line = one_error_line(result)
    assert result.returncode == 6 and "records.state" in line and "FIFO" in line
    assert stat.S_ISFIFO((state / "records.state").lstat().st_mode)


def test_real_wgsigd_unreadable_state_file(tmp_path: Path) -> None:
    """Mode 000, read by a wgsigd without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (setpriv): a real EACCES as root."""
    state = tmp_path / "state"
    state.mkdir()
    data = many_records(3)
    (state / "records.state").write_bytes(data)
    (state / "records.state").chmod(0)
    result = run_to_exit(tmp_path, state, unprivileged_prefix())
    line = one_error_line(result)
    assert result.returncode == 6
    assert "records.state" in line and "not readable" in line
    assert (state / "records.state").read_bytes() == data  # kept as it was


def test_real_wgsigd_failed_final_save_is_reported_and_not_exit_0(tmp_path: Path) -> None:
    """The state directory becomes read-only for wgsigd (no DAC override: setpriv) before it stops."""
    write_secret(tmp_path / "s", SECRET)
    state = tmp_path / "state"
    state.mkdir()
    before = many_records(2)
    (state / "records.state").write_bytes(before)
    port = free_udp_port()
    creds = GroupCredentials(0, SECRET)
    server = Wgsigd([str(tmp_path / "s"), str(port), "--state-dir", str(state)], port, creds, tmp_path / "log",
                    prefix=unprivileged_prefix())
    try:
        state.chmod(0o555)
        assert query(port, creds, b"\x09" * 32, clflg=0) is not None  # a change to save
    finally:
        rc = server.stop()
        state.chmod(0o755)
    log = server.log.read_text()
    assert rc == 1, log  # not 0: the records of this run are lost
    assert "saved 3 records" not in log and "Traceback" not in log
    failed = [line for line in log.splitlines() if "not saved" in line]
    assert len(failed) == 1 and "3 records" in failed[0] and "Permission denied" in failed[0], log
    assert (state / "records.state").read_bytes() == before
    assert sorted(p.name for p in state.iterdir()) == ["records.state"]  # no temporary file left


def test_real_wgsigd_full_disk_leaves_no_partial_file_and_keeps_the_state(tmp_path: Path) -> None:
    """A real full filesystem: a 64 KiB tmpfs mounted on the state directory in wgsigd's own mount
    namespace (unshare -m, as root), seen from here through /proc/PID/root."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a small tmpfs")
    write_secret(tmp_path / "s", SECRET)
    state = tmp_path / "state"
    state.mkdir()
    before = many_records(200)  # 10 kB (within the default 256 records)
    (tmp_path / "initial.state").write_bytes(before)
    port = free_udp_port()
    creds = GroupCredentials(0, SECRET)
    config = tmp_path / "wgsigd.toml"
    config.write_text(f'port = {port}\nstate_directory = "{state}"\nsave_interval = 0.05\n'
                      f'[group.g]\nid = 0\nsecret_file = "{tmp_path / "s"}"\n')
    mount = ('mount -t tmpfs -o size=64k wgsig-full "$0" && cp "$1" "$0/records.state" && shift && exec "$@"')
    server = Wgsigd(["--config", str(config)], port, creds, tmp_path / "log",
                    prefix=["unshare", "-m", "sh", "-c", mount, str(state), str(tmp_path / "initial.state")])
    seen = Path(f"/proc/{server.proc.pid}/root") / str(state).lstrip("/")
    try:
        assert (seen / "records.state").read_bytes() == before
        fd = os.open(seen / "filler", os.O_WRONLY | os.O_CREAT, 0o600)  # fill the filesystem, then free 8 kB
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, bytes(4096))
            os.ftruncate(fd, max(0, os.lseek(fd, 0, os.SEEK_CUR) - 8192))
        finally:
            os.close(fd)
        assert query(port, creds, b"\x09" * 32, clflg=0) is not None  # a change: saves start failing
        wait_for_line(server.log, "cannot save")
        assert (seen / "records.state").read_bytes() == before  # the previous state kept
        assert sorted(p.name for p in seen.iterdir()) == ["filler", "records.state"]  # no partial file
        (seen / "filler").unlink()  # space again: the next save works
        assert query(port, creds, b"\x0a" * 32, clflg=0) is not None
        deadline = time.monotonic() + 10
        while len(decode_state((seen / "records.state").read_bytes())[0]) != 202:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.05)
    finally:
        rc = server.stop()
    log = server.log.read_text()
    assert rc == 0 and "saved 202 records" in log and "Traceback" not in log


def wait_for_line(log: Path, words: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while words not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_real_wgsigd_does_not_exit_idle_while_saves_fail_and_retries_them(tmp_path: Path) -> None:
    """idle_exit would lose the records a failing save could not write: wgsigd keeps them (and
    serving) until a retry succeeds, then exits idle by itself.  setpriv: no DAC override as root."""
    write_secret(tmp_path / "s", SECRET)
    state = tmp_path / "state"
    state.mkdir()
    port = free_udp_port()
    creds = GroupCredentials(0, SECRET)
    config = tmp_path / "wgsigd.toml"
    config.write_text(f'port = {port}\nstate_directory = "{state}"\nsave_interval = 0.05\nidle_exit = 0.5\n'
                      f'[group.g]\nid = 0\nsecret_file = "{tmp_path / "s"}"\n')
    server = Wgsigd(["--config", str(config)], port, creds, tmp_path / "log", prefix=unprivileged_prefix())
    try:
        state.chmod(0o555)
        assert query(port, creds, b"\x09" * 32, clflg=0) is not None
        wait_for_line(server.log, "cannot save")
        time.sleep(2.0)  # four times idle_exit without a datagram
        assert server.proc.poll() is None, server.log.read_text()  # still holding the record
        state.chmod(0o755)
        rc = server.proc.wait(timeout=20)  # the next retry saves it, then the idle exit
    finally:
        state.chmod(0o755)
        if server.proc.poll() is None:
            server.stop()
    log = server.log.read_text()
    assert rc == 0 and "saved 1 records" in log and "no datagram for 0.5 s: exiting" in log, log
    assert [r[:32] for r in decode_state((state / "records.state").read_bytes())[0] if any(r)] == [b"\x09" * 32]
