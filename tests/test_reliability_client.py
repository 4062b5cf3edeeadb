"""The client against everything a server or the network can do wrong.

Each test runs the real wgsigc program (print mode) against a small fake
server in the test: a real UDP socket on loopback that answers with crafted
datagrams (partial answers, forged answers from another port, another group,
a bad HMAC, old records, ...).  The exit code and the one-line message are
checked, and that no traceback appears.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.procs import env, free_udp_port, run_wgsigc, write_secret
from wgsig.client import GroupCredentials
from wgsig.envelope import envelope_key, seal
from wgsig.keys import PublicKey
from wgsig.label import encode_label
from wgsig.wire import REQUEST_SIZE, Record, decode_request, encode_responses
from wgsigc.exchange import exchange

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
ME = bytes([0xA1]) * 32
PEER = bytes([0xB2]) * 32
PEER2 = bytes([0xC3]) * 32

Handler = Callable[[bytes, tuple[str, int]], list[bytes]]


class FakeServer:
    """A UDP socket on loopback that answers each request with ``handler``'s datagrams.

    ``other`` is a second socket on another port, to send datagrams that do
    not come from the server's address.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, source = self.sock.recvfrom(4096)
            except (TimeoutError, ConnectionRefusedError):
                continue
            self.requests.append(data)
            for datagram in self.handler(data, source):
                self.sock.sendto(datagram, source)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()
        self.other.close()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    return write_secret(tmp_path / "secret", SECRET)


def now_label(offset: float = 0.0) -> bytes:
    t = time.time() + offset
    return encode_label(int(t), int(t % 1 * 1e9))


def records(*peers: tuple[bytes, int, float]) -> list[Record | None]:
    return [Record(peer, "192.0.2.10", port, now_label(age)) for peer, port, age in peers]


def answer(recs: list[Record | None], group: int = 0, secret: bytes = SECRET) -> list[bytes]:
    return encode_responses(recs, group, secret)


@pytest.fixture
def fake() -> Iterator[Callable[[Handler], FakeServer]]:
    servers: list[FakeServer] = []

    def make(handler: Handler) -> FakeServer:
        servers.append(FakeServer(handler))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def wgsigc(port: int, secret_file: Path, *extra: str, local: int | None = None) -> subprocess.CompletedProcess[str]:
    local = free_udp_port(parity=1) if local is None else local  # odd: refresh, nothing to punch
    result = run_wgsigc("127.0.0.1", str(port), str(PublicKey(ME)), str(secret_file), str(local),
                        "--timeout", "0.4", "--attempts", "2", *extra)
    assert "Traceback" not in result.stderr
    return result


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


# --- A good exchange, as the reference for the failures below -----------------------------------------------------


def test_good_answer(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    server = fake(lambda req, src: answer(records((ME, 1, 0), (PEER, 2, -1), (PEER2, 3, -5))))
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("[Peer]") == 2 and "Endpoint = 192.0.2.10:2" in result.stdout
    request = decode_request(server.requests[0])
    assert request.clflg == 1 and request.peer_id == ME  # odd local port: refresh only


# --- Server side failures -----------------------------------------------------------------------------------------


def test_server_down(secret_file: Path) -> None:
    result = wgsigc(free_udp_port(), secret_file)
    assert result.returncode == 2
    assert "refused the request (ICMP port unreachable): is wgsigd running" in last_line(result)


@pytest.mark.skipif(os.geteuid() != 0, reason="adds an nftables rule: needs root (scripts/test.sh runs as root)")
def test_firewall_rejecting_the_request(secret_file: Path) -> None:
    """A real ICMP "administratively prohibited" (nftables rejects the request on loopback): one line, exit 1."""
    port = free_udp_port()
    table = f"wgsigtest{port}"
    subprocess.run(["nft", "add", "table", "inet", table], check=True)
    try:
        for rule in (["chain", "inet", table, "input", "{ type filter hook input priority 0; }"],
                     ["rule", "inet", table, "input", "udp", "dport", str(port),
                      "reject", "with", "icmpx", "type", "admin-prohibited"]):
            subprocess.run(["nft", "add", *rule], check=True)
        result = wgsigc(port, secret_file)
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=True)
    assert result.returncode == 1
    assert f"cannot reach 127.0.0.1:{port}: No route to host (an ICMP error came back" in last_line(result)


def test_server_silent(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    """A server that drops the request (skewed clock, wrong secret on its side, ...)."""
    server = fake(lambda req, src: [])
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 2
    line = last_line(result)
    assert "no answer from" in line and "after 2 attempts" in line and "clock is more than 30 s off" in line
    assert len(server.requests) == 2
    labels = [decode_request(r).label for r in server.requests]
    assert labels[0] < labels[1]  # every retry carries a fresh label, so the server cannot see it as a replay


def test_wrong_secret(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    server = fake(lambda req, src: answer(records((PEER, 2, 0)), secret=OTHER_SECRET))
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 2 and result.stdout == ""
    assert "failed authentication (response HMAC does not verify)" in last_line(result)
    assert "check the secret file, the group ID" in last_line(result)


def test_wrong_group(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    server = fake(lambda req, src: answer(records((PEER, 2, 0)), group=7))
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 2 and result.stdout == ""
    assert "answer is for group 7, not 0" in result.stderr


def test_encryption_mismatch_client_encrypts(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    server = fake(lambda req, src: answer(records((PEER, 2, 0))))  # plain answers
    result = wgsigc(server.port, secret_file, "--encrypt")
    assert result.returncode == 2
    assert "too short for an encrypted answer" in result.stderr
    assert len(server.requests[0]) > REQUEST_SIZE  # the request was encrypted


def test_encryption_mismatch_server_encrypts(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    key = envelope_key(SECRET)
    server = fake(lambda req, src: [seal(d, 0, key, os.urandom(12)) for d in answer(records((PEER, 2, 0)))])
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 2
    assert "response is 556 bytes, expected 540" in result.stderr


def test_partial_answer(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    """Only one of three datagrams arrives, three times: never a complete answer."""
    full = answer(records(*[(bytes([i]) * 32, i, 0) for i in range(1, 26)]))
    assert len(full) == 3
    server = fake(lambda req, src: [full[0], full[0], full[0]])
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 2 and result.stdout == ""
    assert "incomplete answer from 127.0.0.1" in last_line(result) and "1 of 3 datagrams" in last_line(result)


def test_partial_then_complete(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    full = answer(records(*[(bytes([i]) * 32, i, 0) for i in range(1, 26)]))
    server = fake(lambda req, src: [full[2], full[0]] if len(server.requests) == 1 else full)
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("[Peer]") == 25


def test_forged_answer_from_another_port(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    """A valid answer sent from another port never reaches the client (connect() filters it)."""

    def forge(req: bytes, src: tuple[str, int]) -> list[bytes]:
        for datagram in answer(records((PEER, 6666, 0))):
            server.other.sendto(datagram, src)
        return []

    server = fake(forge)
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 2 and result.stdout == ""
    assert "no answer from 127.0.0.1" in last_line(result)


def test_forged_from_another_port_then_real(fake: Callable[[Handler], FakeServer]) -> None:
    """In-process: the connected socket delivers only the server's datagrams, whatever arrives first."""

    def forge(req: bytes, src: tuple[str, int]) -> list[bytes]:
        for datagram in answer(records((PEER, 6666, 0))):
            server.other.sendto(datagram, src)
        time.sleep(0.05)
        return answer(records((PEER2, 7777, 0)))

    server = fake(forge)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        result = exchange(sock, ("127.0.0.1", server.port), GroupCredentials(0, SECRET), ME, 3, attempt_timeout=2)
        assert sock.getpeername() == ("127.0.0.1", server.port)
    assert result.records is not None and [(r.peer_id, r.port) for r in result.records] == [(PEER2, 7777)]
    assert result.ignored == []


def test_garbage_from_the_server_address(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    good = answer(records((PEER, 2, 0)))[0]
    bad_label = bytearray(good)
    # the answer with its last byte changed (a fixed b"\0" was the answer itself 1 time in 256)
    server = fake(lambda req, src: [b"", b"x" * 539, b"y" * 541, os.urandom(540),
                                    bytes(bad_label[:-1]) + bytes([bad_label[-1] ^ 1])])
    # One attempt with time for all five to arrive on a loaded machine (they are the whole test).
    result = wgsigc(server.port, secret_file, "--timeout", "2", "--attempts", "1")
    assert result.returncode == 2
    assert result.stderr.count("ignored a datagram") >= 5


def test_very_old_records_dropped(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    """A replayed or stale answer: records older than --max-age are not printed."""
    server = fake(lambda req, src: answer(records((PEER, 2, -3600), (PEER2, 3, -10))))
    result = wgsigc(server.port, secret_file, "--max-age", "60")
    assert result.returncode == 0, result.stderr
    assert str(PublicKey(PEER2)) in result.stdout and str(PublicKey(PEER)) not in result.stdout


def test_answer_with_invalid_record_label(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    bad = Record(PEER, "192.0.2.10", 2, b"\x80" + bytes(11))  # bit 63 set: not a valid label
    server = fake(lambda req, src: answer([bad]))
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 2 and "invalid label" in result.stderr


# --- Local failures ------------------------------------------------------------------------------------------------


def test_dns_failing(secret_file: Path) -> None:
    """A network namespace with only loopback: the resolver cannot be reached (no traffic leaves)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private network namespace")
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "wgsigc", "wgsig-test.example", "1223", str(PublicKey(ME)),
         str(secret_file), "1225", "--timeout", "0.2", "--attempts", "1"],
        capture_output=True, text=True, env=env(), timeout=60, check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "cannot resolve server name 'wgsig-test.example'" in result.stderr and "Traceback" not in result.stderr


def test_malformed_server_name(secret_file: Path) -> None:
    result = run_wgsigc("bad..name", "1223", str(PublicKey(ME)), str(secret_file), "1225")
    assert result.returncode == 3 and "not a valid host name" in result.stderr and "Traceback" not in result.stderr


def test_local_port_busy(fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    server = fake(lambda req, src: [])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("0.0.0.0", 0))
        result = wgsigc(server.port, secret_file, local=busy.getsockname()[1])
    assert result.returncode == 1 and "cannot bind local port" in result.stderr
    assert server.requests == []


@pytest.mark.parametrize(
    ("damage", "words"),
    [("missing", "does not exist"), ("short", "32"), ("open", "group or others")],
)
def test_bad_secret_file(tmp_path: Path, damage: str, words: str) -> None:
    path = tmp_path / "secret"
    if damage == "short":
        write_secret(path, b"x" * 20)
    elif damage == "open":
        write_secret(path, SECRET).chmod(0o644)
    result = run_wgsigc("127.0.0.1", "1223", str(PublicKey(ME)), str(path), "1225")
    assert result.returncode == 6 and "Traceback" not in result.stderr
    assert words in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("timeout", ["nan", "inf", "0"])
def test_timeout_must_be_a_positive_number(secret_file: Path, timeout: str) -> None:
    result = run_wgsigc("127.0.0.1", "1223", str(PublicKey(ME)), str(secret_file), "1225", "--timeout", timeout)
    assert result.returncode == 6 and "--timeout positive" in result.stderr and "Traceback" not in result.stderr


def test_bad_public_key(secret_file: Path) -> None:
    result = run_wgsigc("127.0.0.1", "1223", base64.b64encode(b"short").decode(), str(secret_file), "1225")
    assert result.returncode == 6 and "not a base64 WireGuard public key" in result.stderr


@pytest.mark.parametrize("max_age", ["nan", "-1", "0", "inf"])
def test_max_age_must_be_a_positive_number(secret_file: Path, max_age: str) -> None:
    """--max-age nan, -1 or 0 would drop every record (and inf none): refused with one line, before any request."""
    result = run_wgsigc("127.0.0.1", "1223", str(PublicKey(ME)), str(secret_file), "1225", "--max-age", max_age)
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert f"--max-age {max_age} is not a positive number of seconds" in result.stderr


# --- Versions of one answer, junk floods ---------------------------------------------------------------------------


def twenty(base: int, moved: bool = False) -> list[bytes]:
    """An answer of 20 peers (two datagrams) registered at ``base``; ``moved``: peer 3 (in datagram 0)
    re-registered from port 9999 a minute later."""
    recs: list[Record | None] = [
        Record(bytes([i + 1]) * 32, "192.0.2.10", 1000 + i, encode_label(base, i)) for i in range(20)
    ]
    if moved:
        recs[3] = Record(bytes([4]) * 32, "192.0.2.10", 9999, encode_label(base + 59, 0))
    return answer(recs)


def printed_peers(stdout: str) -> list[str]:
    return [line.removeprefix("PublicKey = ") for line in stdout.splitlines() if line.startswith("PublicKey = ")]


def test_a_retry_answered_after_the_table_changed_is_not_mixed_into_one_answer(
        fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    """Attempt 1's answer loses its second datagram; before attempt 2 a peer of the first datagram moves.
    The two versions of datagram 0 are not a two-datagram answer: attempt 2's whole answer is printed,
    each peer once."""
    base = int(time.time()) - 60
    old, new = twenty(base), twenty(base, moved=True)
    assert old[0] != new[0] and old[1] == new[1]
    server = fake(lambda req, src: [old[0]] if len(server.requests) == 1 else new)
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 0, result.stderr
    peers = printed_peers(result.stdout)
    assert sorted(peers) == sorted(str(PublicKey(bytes([i + 1]) * 32)) for i in range(20))  # each once, none missing
    assert "Endpoint = 192.0.2.10:9999" in result.stdout and "Endpoint = 192.0.2.10:1003" not in result.stdout
    assert len(server.requests) == 2


def test_a_replayed_old_datagram_is_not_taken_as_part_of_the_answer(
        fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    """Someone replays datagram 0 of an older answer from the server's address between the two
    fresh datagrams: the fresh answer is printed, each peer once, and the replay is named."""
    base = int(time.time()) - 60
    old, new = twenty(base), twenty(base, moved=True)
    server = fake(lambda req, src: [new[0], old[0], new[1]])
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 0, result.stderr
    assert len(printed_peers(result.stdout)) == 20 and "Endpoint = 192.0.2.10:9999" in result.stdout
    assert "ignored a datagram: an older version of an answer datagram already received" in result.stderr


def junk(count: int) -> list[bytes]:
    """Every length from 0 to 1,400 bytes and bit-flipped copies of a real answer datagram."""
    real = answer(records((PEER, 2, 0)))[0]
    out = []
    for i in range(count):
        if i % 2:
            flipped = bytearray(real)
            flipped[i % len(flipped)] ^= 1 << (i % 8)
            out.append(bytes(flipped))
        else:
            out.append(os.urandom(i % 1401))
    return out


def test_a_junk_flood_from_the_server_address_is_summarised_and_diagnosed(
        fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    """3,000 junk datagrams answer each request: a few lines, then one count, and a diagnosis that says
    what happened instead of blaming the secret alone."""
    flood = junk(3000)
    server = fake(lambda req, src: flood)
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 8, lines[:10]
    assert sum("ignored a datagram" in line for line in lines) == 5
    summary = next(line for line in lines if "more datagrams" in line)
    ignored = int(summary.split("ignored ")[1].split()[0]) + 5
    assert ignored >= 1000  # loopback may drop some of 6,000 datagrams, never most
    diagnosis = lines[-1]
    assert f"{ignored} datagrams from 127.0.0.1:{server.port} failed authentication" in diagnosis
    assert "something else sends to this port" in diagnosis and "secret" in diagnosis


def test_a_junk_flood_before_the_real_answer_still_prints_the_skeleton(
        fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    flood = junk(200)  # fits the receive buffer with the answer behind it (more may drop the answer)
    server = fake(lambda req, src: flood + answer(records((ME, 1, 0), (PEER, 2, -1))))
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 0, result.stderr
    assert f"PublicKey = {PublicKey(PEER)}" in result.stdout
    assert len(result.stderr.strip().splitlines()) <= 6


def test_one_wrong_hmac_datagram_is_one_line_on_stderr_as_the_c_client_prints_it(
        fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    """The C client prints one line per wrong-HMAC datagram (on stdout; wgsigc on stderr) and goes on."""
    bad = bytearray(answer(records((PEER, 2, 0)))[0])
    bad[-1] ^= 1
    server = fake(lambda req, src: [bytes(bad), *answer(records((ME, 1, 0), (PEER, 2, -1)))])
    result = wgsigc(server.port, secret_file)
    assert result.returncode == 0 and f"PublicKey = {PublicKey(PEER)}" in result.stdout
    assert result.stderr == "wgsigc: ignored a datagram: response HMAC does not verify\n"


def test_unusable_endpoints_are_printed_as_the_c_client_does_unless_asked(
        fake: Callable[[Handler], FakeServer], secret_file: Path) -> None:
    """Print mode prints every record, as the C client does; --skip-unusable leaves out the ones no peer
    can be reached at, one stderr line each."""
    bad = [Record(bytes([0x40 + i]) * 32, ip, port, now_label(-1)) for i, (ip, port) in enumerate(
        [("255.255.255.255", 51820), ("0.0.0.0", 51820), ("198.51.100.7", 0), ("224.0.0.1", 51820)])]
    good = Record(PEER, "198.51.100.8", 51820, now_label(-1))
    server = fake(lambda req, src: answer([*bad, good]))
    plain = wgsigc(server.port, secret_file)
    assert plain.returncode == 0 and plain.stdout.count("[Peer]") == 5 and plain.stderr == ""
    assert "Endpoint = 255.255.255.255:51820" in plain.stdout
    skipped = wgsigc(server.port, secret_file, "--skip-unusable")
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.count("[Peer]") == 1 and "Endpoint = 198.51.100.8:51820" in skipped.stdout
    lines = skipped.stderr.strip().splitlines()
    assert len(lines) == 4 and all("left out" in line for line in lines)
    assert f"peer {PublicKey(bad[0].peer_id)}: endpoint 255.255.255.255:51820 is the broadcast address" in lines[0]


class SilentResolver:
    """A real UDP socket on 127.0.0.77:53 that reads DNS queries and never answers, and a private
    resolv.conf naming it (with a resolver timeout of 30 s), bind-mounted over /etc/resolv.conf in a
    mount namespace of the command only (``unshare -m``; the host's file is untouched)."""

    def __init__(self, tmp_path: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.77", 53))
        self.sock.settimeout(0.05)
        self.queries = 0
        self.conf = tmp_path / "resolv.conf"
        self.conf.write_text("nameserver 127.0.0.77\noptions timeout:30 attempts:1\n")
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.sock.recv(4096)
                self.queries += 1
            except TimeoutError:
                continue

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
        return subprocess.run(["unshare", "-m", "sh", "-c", script, str(self.conf), *argv],
                              capture_output=True, text=True, env=env(), timeout=25, check=False)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture
def silent_resolver(tmp_path: Path) -> Iterator[SilentResolver]:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private resolv.conf in a mount namespace")
    resolver = SilentResolver(tmp_path)
    yield resolver
    resolver.close()


def test_a_dns_server_that_never_answers_is_given_up_within_the_timeout(
        silent_resolver: SilentResolver, secret_file: Path) -> None:
    """The resolver would wait 30 s (resolv.conf says so); wgsigc gives up after --attempts x --timeout
    (0.6 s here) with exit 3 and one line. The subprocess limit of 25 s is what the old code broke."""
    result = silent_resolver.run(sys.executable, "-m", "wgsigc", "wgsig-test.example", "1223", str(PublicKey(ME)),
                                 str(secret_file), "1225", "--timeout", "0.3", "--attempts", "2")
    assert result.returncode == 3, result.stderr
    assert result.stderr == ("wgsigc: cannot resolve server name 'wgsig-test.example': the DNS resolver did not"
                             " answer within 0.6 s\n")
    assert silent_resolver.queries >= 1  # a real query reached the silent resolver


def test_kernel_mode_resolution_has_the_same_deadline(silent_resolver: SilentResolver) -> None:
    """resolve_all (kernel mode, IPv4 and IPv6) against the same silent resolver."""
    code = ("from wgsigc.exchange import ExchangeError, resolve_all\n"
            "try:\n    resolve_all('wgsig-test.example', 1223, 0.5)\n"
            "except ExchangeError as error:\n    print(error)\n")
    result = silent_resolver.run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("cannot resolve server name 'wgsig-test.example': the DNS resolver did not answer"
                             " within 0.5 s\n")
