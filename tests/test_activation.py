"""wgsigd under a service manager, on the host (systemd is not PID 1 here).

``systemd-socket-activate --datagram`` creates a real UDP socket, waits for
the first datagram and execs wgsigd with it, exactly as systemd passes a
socket (LISTEN_FDS/LISTEN_PID).  The notify protocol is checked against a
real AF_UNIX datagram socket created by the test and named in NOTIFY_SOCKET.
Each run is done twice: with systemd-python and with it hidden (the
fallbacks in wgsigd/activation.py).  The journal tests at the end use a fake
sender: they check which fields leave the process (journald itself is
checked in tests/test_systemd_nspawn.py).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import write_secret
from wgsig.client import AnswerCollector, GroupCredentials, build_request
from wgsig.events import Answered, Change, Reason, Rejected
from wgsig.keys import PublicKey
from wgsig.label import label_from_ns
from wgsig.wire import Record

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"  # Debian's, with python3-systemd
SECRET = bytes(range(1, 33))
CREDENTIALS = GroupCredentials(0, SECRET)
PEER_A = bytes([0xA1]) * 31 + b"\x01"
PEER_B = bytes([0xB2]) * 31 + b"\x01"

# Runs wgsigd's command line with systemd-python made unimportable.
_WITHOUT_SYSTEMD = (
    "import sys; sys.modules['systemd'] = None; sys.modules['systemd.daemon'] = None;"
    " sys.modules['systemd.journal'] = None; from wgsigd.cli import main; sys.exit(main())"
)

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None, reason="needs systemd-socket-activate (package systemd)"
)


@pytest.fixture(params=["systemd-python", "fallback"])
def python_mode(request: pytest.FixtureRequest) -> str:
    if request.param == "systemd-python":
        probe = subprocess.run([PYTHON, "-c", "import systemd.daemon"], capture_output=True, check=False)
        if probe.returncode != 0:
            pytest.skip("python3-systemd is not installed")
    return str(request.param)


def wgsigd_command(mode: str, *args: str) -> list[str]:
    if mode == "fallback":
        return [PYTHON, "-c", _WITHOUT_SYSTEMD, *args]
    return [PYTHON, "-m", "wgsigd", *args]


def free_port() -> int:
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("::", port))  # free for a dual-stack socket too
            except OSError:
                continue
        return port


def write_config(tmp: Path, port: int, extra: str = "") -> Path:
    secret = write_secret(tmp / "group0.key", SECRET)
    config = tmp / "wgsigd.toml"
    config.write_text(
        f'listen = "127.0.0.1"\nport = {port}\nstate_directory = "{tmp / "state"}"\n{extra}\n'
        f'[group.zero]\nid = 0\nsecret_file = "{secret}"\n'
    )
    return config


def exchange(port: int, peer_id: bytes, clflg: int, local_port: int = 0, timeout: float = 15.0) -> list[Record]:
    """One request from 127.0.0.1 (no retry: it must be answered), the answer's records."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", local_port))
        sock.connect(("127.0.0.1", port))
        sock.send(build_request(CREDENTIALS, peer_id, label_from_ns(time.time_ns()), clflg, os.urandom))
        sock.settimeout(timeout)
        collector = AnswerCollector(CREDENTIALS)
        while not collector.complete:
            collector.receive_datagram(sock.recv(4096))
        return collector.records()


def socket_activate(listen: list[str], command: list[str], env: dict[str, str], log: Path,
                    datagram: bool = True) -> subprocess.Popen[bytes]:
    """systemd-socket-activate: it execs ``command`` (keeping its pid) on the first datagram."""
    cmd = ["systemd-socket-activate"] + (["--datagram"] if datagram else [])
    for address in listen:
        cmd += ["-l", address]
    for name, value in env.items():
        cmd += ["-E", f"{name}={value}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd + command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    # Wait until it listens ("Listening on ..."), so the first datagram is not lost.
    deadline = time.monotonic() + 10
    while b"Listening on" not in log.read_bytes() or log.read_bytes().count(b"Listening on") < len(listen):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    return proc


def base_env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A real sd_notify socket (a short path: AF_UNIX paths are limited to 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="wgsig-n-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(directory)


def receive_until(sock: socket.socket, wanted: str, timeout: float = 15.0) -> list[str]:
    """Notify messages up to and including the first containing ``wanted``."""
    messages = []
    sock.settimeout(timeout)
    while True:
        message = sock.recv(4096).decode()
        messages.append(message)
        if wanted in message.split("\n"):
            return messages


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=15)


def test_passed_dual_stack_socket_answers_ipv4_clients(python_mode: str, tmp_path: Path) -> None:
    """A real passed socket: the first datagram waits in it while wgsigd starts, and gets its answer.

    ``-l PORT`` binds [::]:PORT dual-stack, like ``ListenDatagram=PORT``: IPv4 clients
    arrive as ::ffff:127.0.0.1 and must be recorded, answered and logged as 127.0.0.1.
    """
    port = free_port()
    config = write_config(tmp_path, port + 1)  # the configured port is not used when a socket is passed
    log = tmp_path / "wgsigd.log"
    proc = socket_activate([str(port)], wgsigd_command(python_mode, "--config", str(config), "-v"), base_env(), log)
    try:
        local_a = free_port()
        exchange(port, PEER_A, clflg=0, local_port=local_a)  # starts wgsigd; registers A
        local_b = free_port()
        records = exchange(port, PEER_B, clflg=0, local_port=local_b)  # the answer includes B's own record
        assert {r.peer_id: r.endpoint for r in records} == {
            PEER_A: f"127.0.0.1:{local_a}", PEER_B: f"127.0.0.1:{local_b}"
        }
    finally:
        assert stop(proc) == 0, log.read_text()
    text = log.read_text()
    assert f"serving on [::]:{port}" in text, text
    assert f"{PublicKey(PEER_A)} inserted at 127.0.0.1:{local_a}" in text, text
    assert "::ffff:" not in text, text
    assert f"(port {port}); 'port = {port + 1}'" in text, text
    assert (tmp_path / "state" / "records.state").is_file()


def test_notify_protocol_and_reload(python_mode: str, tmp_path: Path,
                                    notify_socket: tuple[socket.socket, str]) -> None:
    """READY after the state is loaded, STATUS, RELOADING+READY on SIGHUP, STOPPING, WATCHDOG."""
    sock, path = notify_socket
    port = free_port()
    config = write_config(tmp_path, port)
    log = tmp_path / "wgsigd.log"
    env = dict(base_env(), NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000")
    proc = socket_activate([f"127.0.0.1:{port}"], wgsigd_command(python_mode, "--config", str(config)), env, log)
    try:
        exchange(port, PEER_A, clflg=0)
        ready = receive_until(sock, "READY=1")
        assert ready[-1].startswith("READY=1\nSTATUS=1 groups, 0 records, "), ready
        # WATCHDOG_PID is not set: the watchdog is meant for this process (its pid is systemd-socket-activate's).
        assert "WATCHDOG=1" in receive_until(sock, "WATCHDOG=1")
        proc.send_signal(signal.SIGHUP)
        reload = receive_until(sock, "READY=1")
        reloading = [m for m in reload if "RELOADING=1" in m.split("\n")]
        assert reloading and "MONOTONIC_USEC=" in reloading[0], reload
        assert reload[-1].startswith("READY=1\nSTATUS=1 groups, 1 records, 1 requests answered"), reload
    finally:
        rc = stop(proc)
    assert rc == 0, log.read_text()
    assert "STOPPING=1" in receive_until(sock, "STOPPING=1")[-1]
    assert "configuration reloaded" in log.read_text()


def test_state_is_loaded_before_ready(tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    """The READY status already counts the records saved by an earlier run (idle exit)."""
    sock, path = notify_socket
    port = free_port()
    config = write_config(tmp_path, port, extra="idle_exit = 0.5")
    first = socket_activate([f"127.0.0.1:{port}"], wgsigd_command("systemd-python", "--config", str(config)),
                            base_env(), tmp_path / "first.log")
    exchange(port, PEER_A, clflg=0)
    exchange(port, PEER_B, clflg=0)
    assert first.wait(timeout=15) == 0  # the idle exit, by itself
    assert "exiting (the socket unit keeps the port)" in (tmp_path / "first.log").read_text()
    second = socket_activate([f"127.0.0.1:{port}"], wgsigd_command("systemd-python", "--config", str(config)),
                             dict(base_env(), NOTIFY_SOCKET=path), tmp_path / "second.log")
    try:
        records = exchange(port, PEER_B, clflg=1)
        assert {r.peer_id for r in records} == {PEER_A, PEER_B}
        assert receive_until(sock, "READY=1")[-1].startswith("READY=1\nSTATUS=1 groups, 2 records"), "no READY"
    finally:
        stop(second)


def refused_sockets(python_mode: str, tmp_path: Path, ports: list[int]) -> tuple[list[str], str]:
    """wgsigd activated on a UDP socket of 127.0.0.1 for each of ``ports`` (it does not serve those)
    and woken by a datagram: it exits 6; its ``wgsigd:`` lines and its whole log."""
    log = tmp_path / "wgsigd.log"
    proc = socket_activate([f"127.0.0.1:{p}" for p in ports],
                           wgsigd_command(python_mode, "--config", str(write_config(tmp_path, ports[0]))),
                           base_env(), log)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"x", ("127.0.0.1", ports[0]))
    assert proc.wait(timeout=15) == 6, log.read_text()
    text = log.read_text()
    return [line for line in text.splitlines() if line.startswith("wgsigd:")], text


def test_two_passed_sockets_are_a_clear_error(python_mode: str, tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    lines, log = refused_sockets(python_mode, tmp_path, ports)
    assert lines == [f"wgsigd: the service manager passed two sockets (127.0.0.1:{ports[0]} and 127.0.0.1:{ports[1]})"
                     " that are not one port's SO_REUSEPORT pair: wgsigd serves one UDP socket, or two of the same"
                     " address and port (wgsigd.socket: two identical ListenDatagram= lines and ReusePort=yes)"
                     ], log


def test_three_passed_sockets_are_a_clear_error(python_mode: str, tmp_path: Path) -> None:
    lines, log = refused_sockets(python_mode, tmp_path, [free_port(), free_port(), free_port()])
    assert lines == ["wgsigd: the service manager passed 3 sockets; wgsigd serves one UDP socket, or two of the same"
                     " address and port (wgsigd.socket: one ListenDatagram= line, or two identical ones with"
                     " ReusePort=yes)"], log


def test_passed_stream_socket_is_a_clear_error(python_mode: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "wgsigd.log"
    proc = socket_activate([f"127.0.0.1:{port}"],
                           wgsigd_command(python_mode, "--config", str(write_config(tmp_path, port))),
                           base_env(), log, datagram=False)
    with socket.create_connection(("127.0.0.1", port)):
        assert proc.wait(timeout=15) == 6
    text = log.read_text()
    assert "wgsigd: passed descriptor 3 is a stream socket" in text, text
    assert "use ListenDatagram=" in text and "Traceback" not in text, text


def test_without_a_passed_socket_wgsigd_binds_its_own(tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    """LISTEN_PID naming another process: the variables are ignored (and removed)."""
    sock, path = notify_socket
    port = free_port()
    env = dict(os.environ, **base_env(), NOTIFY_SOCKET=path, LISTEN_FDS="1", LISTEN_PID="1")
    log = tmp_path / "wgsigd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(wgsigd_command("fallback", "--config", str(write_config(tmp_path, port))),
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        receive_until(sock, "READY=1")
        assert [r.peer_id for r in exchange(port, PEER_A, clflg=0)] == [PEER_A]
    finally:
        assert stop(proc) == 0, log.read_text()
    assert f"serving on 127.0.0.1:{port}" in log.read_text()


@pytest.mark.parametrize("variables", [
    {"LISTEN_FDS": "x"}, {"LISTEN_FDS": "1x"}, {"LISTEN_FDS": "99999999999999999999"},
    {"LISTEN_FDS": "40"},  # descriptors 3..42: most are not open
    {"LISTEN_FDS": "1", "LISTEN_PID": "abc"},
], ids=["letters", "trailing", "huge", "not-open", "pid-not-a-number"])
def test_malformed_activation_variables_are_one_line_and_exit_6(python_mode: str, tmp_path: Path,
                                                                variables: dict[str, str]) -> None:
    """The real wgsigd, exec'd by a shell that sets LISTEN_PID to the pid wgsigd gets (its own)."""
    env = dict(os.environ, **base_env())
    env.pop("NOTIFY_SOCKET", None)
    settings = " ".join(f"{name}={value}" for name, value in variables.items())
    command = wgsigd_command(python_mode, "--config", str(write_config(tmp_path, free_port())))
    result = subprocess.run(["sh", "-c", f'LISTEN_PID=$$ {settings} exec "$@"', "sh", *command],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=30, check=False)
    assert result.returncode == 6 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("wgsigd: ") and "LISTEN_FDS" in line and "LISTEN_PID" in line, line


def test_notify_fallback_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """``@name`` in NOTIFY_SOCKET is an abstract socket (real sockets, fallback code)."""
    from wgsigd import activation

    name = f"wgsig-test-{os.getpid()}-{random.randrange(1 << 30)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert activation._notify_fallback("READY=1\nSTATUS=x")
        assert sock.recv(100) == b"READY=1\nSTATUS=x"


# The journal's fields (fake sender: what JournalHandler would hand to sd_journal_sendv).


class _Capture:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, message: str, /, **fields: Any) -> None:
        self.sent.append((message, fields))


def test_journal_gets_only_upper_case_structured_fields() -> None:
    journal = pytest.importorskip("systemd.journal")
    from wgsigd.eventlog import MESSAGE_ID_REGISTERED, MESSAGE_ID_REJECTED, EventLog
    from wgsigd.logsetup import structured_sender

    capture = _Capture()
    handler = journal.JournalHandler(SYSLOG_IDENTIFIER="wgsigd", sender_function=structured_sender(capture))
    logger = logging.getLogger("wgsigd")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.DEBUG)
    try:
        events = EventLog()
        events(Answered(group=0, peer_id=PEER_A, source=("::ffff:192.0.2.7", 51820), clflg=0,
                        change=Change.INSERTED, evicted=None, datagrams=1))
        events(Rejected(reason=Reason.BAD_MAC, source=("198.51.100.1", 4000), group=0))
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    (registered_msg, registered), (rejected_msg, rejected) = capture.sent
    for fields in (registered, rejected):
        assert all(name == name.upper() and not name.startswith("_") for name in fields), fields
        assert not {"CODE_ARGS", "PROCESS_NAME", "EXCEPTION_INFO"} & set(fields)
        assert fields["SYSLOG_IDENTIFIER"] == "wgsigd" and "PRIORITY" in fields
    assert registered["MESSAGE_ID"] == MESSAGE_ID_REGISTERED
    assert registered["PEER_KEY"] == str(PublicKey(PEER_A))
    assert registered["ENDPOINT"] == "192.0.2.7:51820" and registered["GROUP"] == "0"
    assert rejected["MESSAGE_ID"] == MESSAGE_ID_REJECTED and rejected["REASON"] == "bad_mac"
    assert rejected["PRIORITY"] == "7" and rejected["ENDPOINT"] == "198.51.100.1:4000"
    assert str(PublicKey(PEER_A)) in registered_msg and "198.51.100.1:4000" in rejected_msg


def test_listen_fds_fallback_checks_listen_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pure environment parsing (no socket is adopted)."""
    from wgsigd.activation import ActivationError, _listen_fds_fallback

    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    assert _listen_fds_fallback() == []
    assert "LISTEN_FDS" not in os.environ and "LISTEN_PID" not in os.environ
    monkeypatch.setenv("LISTEN_FDS", "x")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    with pytest.raises(ActivationError, match="malformed activation variables"):
        _listen_fds_fallback()


def test_units_document_existing_man_pages() -> None:
    """Every Documentation=man:PAGE(N) of the shipped units is a page in man/ (what verify checks)."""
    import re

    units = sorted((ROOT / "packaging" / "systemd").glob("wgsig*.*"))
    assert {u.name for u in units} >= {"wgsigd.socket", "wgsigd.service", "wgsigc.service", "wgsigc.timer"}
    for unit in units:
        pages = re.findall(r"man:([\w.]+)\((\d)\)", unit.read_text())
        assert pages, unit
        missing = [f"man/{p}.{n}" for p, n in pages if not (ROOT / "man" / f"{p}.{n}").is_file()]
        assert not missing, f"{unit.name}: {missing}"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
