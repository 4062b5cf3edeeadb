"""Running the real wgsigd and wgsigc programs from the checkout, on loopback."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from wgsig.client import AnswerCollector, GroupCredentials, Ignored, build_request
from wgsig.label import label_from_ns
from wgsig.wire import Record

ROOT = Path(__file__).resolve().parent.parent


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")


def free_udp_port(parity: int | None = None) -> int:
    """A free port below the kernel's ephemeral range, where busy load generators do not reach."""
    while True:
        port = random.randrange(20000, 32000)
        if parity is not None and port % 2 != parity:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port


def free_udp_range(count: int) -> int:
    """The first of ``count`` consecutive ports of 127.0.0.1 free for UDP (a relay's port range)."""
    while True:
        low = random.randrange(33000, 59000)
        probes = []
        try:
            for port in range(low, low + count):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return low
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()


def unprivileged_prefix() -> list[str]:
    """A command prefix under which file permissions apply: as root, drop CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (root-owned 0600 files stay readable, a 0555 directory is not writable)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def run_python_in_readonly_dir(directory: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run *code* (``sys.argv[1]`` is *directory*) in a fresh interpreter, *directory* mode 0555 and
    file permissions applying even as root (``unprivileged_prefix``); the mode is restored after."""
    directory.chmod(0o555)
    try:
        return subprocess.run([*unprivileged_prefix(), sys.executable, "-c", code, str(directory)],
                              capture_output=True, text=True, env=env(), check=True, timeout=30)
    finally:
        directory.chmod(0o755)


def write_secret(path: Path, secret: bytes) -> Path:
    path.write_bytes(secret)
    path.chmod(0o600)
    return path


def query(
    port: int, credentials: GroupCredentials, peer_id: bytes, clflg: int = 1, timeout: float = 2.0
) -> list[Record] | None:
    """One request from an ephemeral socket; the whole answer's records, or None.

    The default CLFLG 1 refreshes a registered peer: its answer is never capped.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.send(build_request(credentials, peer_id, label_from_ns(time.time_ns()), clflg, os.urandom))
        collector = collect_answer(sock, credentials, timeout)
        return None if collector is None else collector.records()


def collect_answer(sock: socket.socket, credentials: GroupCredentials, timeout: float) -> AnswerCollector | None:
    """The whole answer to the request just sent on the connected ``sock``; None when it is not
    complete within ``timeout`` or the port refused it."""
    sock.settimeout(timeout)
    collector = AnswerCollector(credentials)
    try:
        while not collector.complete:
            collector.receive_datagram(sock.recv(4096))
    except (TimeoutError, ConnectionRefusedError):
        return None
    return collector


def received(sock: socket.socket, timeout: float) -> list[bytes]:
    """Every datagram that reaches ``sock`` until none comes for ``timeout`` seconds (0: the ones
    queued now)."""
    sock.settimeout(timeout)
    out = []
    try:
        while True:
            out.append(sock.recv(4096))
    except (TimeoutError, BlockingIOError):
        return out


class Wgsigd:
    """A wgsigd process; ``ready`` once it answers a request."""

    def __init__(
        self, args: list[str], port: int, credentials: GroupCredentials, log: Path, prefix: list[str] | None = None
    ) -> None:
        self.port = port
        self.credentials = credentials
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "wgsigd", *args],
            stdout=self._log_file, stderr=subprocess.STDOUT, env=env(),
        )
        try:
            self.wait_ready()
        except BaseException:
            self.proc.kill()  # never leave a server behind a failed test
            self.proc.wait()
            self._log_file.close()
            raise

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wgsigd exited {self.proc.returncode}: {self.log.read_text()}")
            if self.answers_probe():
                return
        raise RuntimeError(f"wgsigd did not answer: {self.log.read_text()}")

    def answers_probe(self) -> bool:
        """True when a CLFLG 3 probe gets any authentic datagram back."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("127.0.0.1", self.port))
            label = label_from_ns(time.time_ns())
            sock.send(build_request(self.credentials, b"\x7f" * 32, label, 3, os.urandom))
            sock.settimeout(0.2)
            try:
                return not isinstance(AnswerCollector(self.credentials).receive_datagram(sock.recv(4096)), Ignored)
            except (TimeoutError, ConnectionRefusedError):
                return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=10)
        self._log_file.close()
        return rc


def run_wgsigc(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wgsigc", *args], capture_output=True, text=True, env=env(), timeout=timeout,
        check=False,
    )
