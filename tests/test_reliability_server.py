"""Server reliability: anti-amplification limits, their configuration, and the
real wgsigd under replays, rate limits, secret rollover, clock skew and a
corrupt state file.

The first tests are pure tests of the sans-IO core (datagrams in, datagrams
out, time passed in); the ``real wgsigd`` tests run the daemon as a process on
loopback UDP.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.procs import Wgsigd, free_udp_port, query, write_secret
from wgsig.client import Accepted, AnswerCollector, GroupCredentials, Ignored, build_request
from wgsig.events import Answered, Change, Reason, Rejected
from wgsig.label import encode_label, label_from_ns
from wgsig.ratelimit import NO_LIMITS, AnswerLimiter, Limits, ReplayCache, capped_datagrams
from wgsig.server import GroupConfig, Server
from wgsig.statefile import decode_state, encode_state
from wgsig.wire import REQUEST_SIZE, RESPONSE_SIZE, encode_endpoint
from wgsigc.exchange import diagnose, exchange
from wgsigd.config import ConfigError, parse_config

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


def test_limiter_allows_burst_then_rate() -> None:
    limiter = AnswerLimiter(rate=10, burst=5)
    assert [limiter.allow("a", 100.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.limited == 2
    assert not limiter.allow("a", 100.05)  # half an interval: nothing yet
    assert limiter.allow("a", 100.1)  # one interval: one more answer
    assert not limiter.allow("a", 100.1)
    assert limiter.allow("b", 100.1)  # sources are independent


def test_limiter_refills_to_burst_only() -> None:
    limiter = AnswerLimiter(rate=10, burst=3)
    assert limiter.allow("a", 0.0)
    answers = [limiter.allow("a", 1000.0) for _ in range(5)]  # a long pause refills at most ``burst``
    assert answers == [True] * 3 + [False] * 2


def test_limiter_forgets_idle_sources_and_stays_bounded() -> None:
    limiter = AnswerLimiter(rate=100, burst=2, max_sources=50)
    for i in range(10_000):
        assert limiter.allow(f"10.0.{i // 256}.{i % 256}", 5.0)
        assert len(limiter) <= 50
    # Idle entries (bucket full again) are dropped as traffic goes on.
    for i in range(100):
        limiter.allow("192.0.2.1", 10.0 + i)
    assert len(limiter) <= 3


def test_limiter_survives_clock_going_backwards() -> None:
    limiter = AnswerLimiter(rate=1, burst=2)
    assert limiter.allow("a", 1000.0) and limiter.allow("a", 1000.0)
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


@pytest.mark.parametrize("clflg", [3, 1])
def test_label_less_request_is_answered_whole_once_then_capped(clflg: int) -> None:
    """CLFLG 3, and CLFLG 1 from an unknown peer, store no label: replays get only the byte cap."""
    server = server_with(25, Limits(max_answer_bytes=600, replay_cache=ReplayCache(30)))
    datagram = request(200, clflg)
    answer, event = server.receive_datagram(datagram, SOURCE, NOW)
    assert len(answer) == 3 and isinstance(event, Answered) and event.change is Change.UNCHANGED
    for spoofed in [SOURCE, ("203.0.113.9", 53), ("192.0.2.1", 123)]:
        answer, event = server.receive_datagram(datagram, spoofed, NOW + 10)
        # Answered, as the protocol allows (and the C server does), but one datagram only.
        assert len(answer) == 1 and isinstance(event, Answered) and event.change is Change.UNCHANGED


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
    server = server_with(45, Limits(max_answer_bytes=600, replay_cache=ReplayCache(30, max_entries=1)))
    first, _ = server.receive_datagram(request(250, 3, ns=1), SOURCE, NOW)
    assert len(first) == 5  # recorded in the cache: answered whole, once
    second, _ = server.receive_datagram(request(250, 3, ns=2), SOURCE, NOW)
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


def test_rate_limited_request_changes_nothing() -> None:
    server = server_with(0, Limits(answer_limiter=AnswerLimiter(rate=1, burst=2)))
    assert server.receive_datagram(request(1, 0), SOURCE, NOW)[0]
    assert server.receive_datagram(request(2, 0), SOURCE, NOW)[0]
    answer, event = server.receive_datagram(request(3, 0), SOURCE, NOW)
    assert answer == [] and isinstance(event, Rejected) and event.reason is Reason.RATE_LIMITED
    assert len(server.groups[0]) == 2
    assert server.receive_datagram(request(3, 0), ("198.51.100.8", 1), NOW)[0]  # another source is not limited


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
    keys = {"answer_rate": 2.5, "answer_burst": 7, "max_answer_bytes": 2000}
    config = parse_config({**keys, "group": group_table()}, "f")
    assert (config.answer_rate, config.answer_burst, config.max_answer_bytes) == (2.5, 7, 2000)
    limiter = config.answer_limiter()
    assert limiter is not None and (limiter.rate, limiter.burst) == (2.5, 7)
    assert parse_config({"answer_rate": 0, "group": group_table()}, "f").answer_limiter() is None
    defaults = parse_config({"group": group_table()}, "f")
    assert defaults.answer_limiter() is not None and defaults.max_answer_bytes >= 600


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("answer_rate", -1, "out of range"),
        ("answer_rate", "fast", "must be a number"),
        ("answer_burst", 0, "out of range"),
        ("answer_burst", 1.5, "must be an integer"),
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


def collect(sock: socket.socket, credentials: GroupCredentials, timeout: float) -> list[bytes]:
    got = []
    sock.settimeout(timeout)
    try:
        while True:
            got.append(sock.recv(4096))
    except TimeoutError:
        return got


def test_real_wgsigd_rate_limit(tmp_path: Path) -> None:
    write_secret(tmp_path / "s", SECRET)
    port = free_udp_port()
    creds = GroupCredentials(5, SECRET)
    server = start(tmp_path, f'port = {port}\nanswer_rate = 0.5\nanswer_burst = 4\n'
                   f'[group.g]\nid = 5\nsecret_file = "{tmp_path / "s"}"\n', creds, port)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("127.0.0.1", port))
            peek = build_request(creds, b"\x55" * 32, label_from_ns(time.time_ns()), 3, os.urandom)
            for _ in range(5):
                sock.send(peek)  # one peek and four replays: answers too, within the same limit
            # Ten fresh registrations too: far beyond the burst of four answers for this source.
            for i in range(10):
                sock.send(build_request(creds, bytes([i + 1]) * 32, label_from_ns(time.time_ns()), 0, os.urandom))
            answered = len(collect(sock, creds, 1.5))
            assert 1 <= answered <= 5  # the burst, plus at most one token refilled meanwhile
    finally:
        assert server.stop() == 0


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
    behind = [line for line in log.splitlines() if "s behind ours" in line]
    assert ahead and "QkJCQkJC" in ahead[0]  # the peer's key, base64 of 0x42...
    assert behind and any("clock is 45 s behind" in line or "clock is 44 s behind" in line for line in behind)
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
