"""The relay process: ``wgsigd relay --config FILE`` (README, "Relay").

A process of its own (and a unit of its own, wgsig-relay.service), so that a flood of relayed
traffic cannot slow down signalling.  wgsigd decides the allocations and writes them to
``relay-allocations`` in its state directory (``wgsig/relayfile.py``); this process reads that
file again whenever it changes (checked every ``CHECK_INTERVAL`` seconds), binds the two UDP
ports of each allocation on the ``[relay]`` section's ``listen`` address, and forwards by
``wgsig/relayforward.py``'s rules.  Sockets, epoll and the clock live here only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from wgsig import relayfile
from wgsig.relayforward import DROP_REASONS, Forwarder
from wgsigd.config import ConfigError, RelayConfig

log = logging.getLogger("wgsigd")

CHECK_INTERVAL = 1.0  # seconds between two looks at the allocation file
REPORT_INTERVAL = 300.0  # seconds between two lines of counters (only when they changed)
BATCH = 64  # datagrams read from one socket before looking at the others
BUFFER_SIZE = 65536
SOCKET_BUFFER = 4 << 20


class RelayProcess:
    def __init__(self, config: RelayConfig, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.path = path
        self.clock = clock
        now = clock()
        self.forwarder = Forwarder(config.rate, config.burst, config.global_rate, config.global_burst, config.idle,
                                   now)
        self.family = socket.AF_INET6 if ":" in config.listen else socket.AF_INET
        self.sockets: dict[int, socket.socket] = {}  # port -> socket
        self._by_fd: dict[int, tuple[socket.socket, int]] = {}
        self._epoll = select.epoll()
        self._seen: tuple[int, int, int] | None = None  # the file's (inode, mtime, size) last read
        self._complaint: str | None = None
        self._stop = False

    # --- the allocation file -----------------------------------------------------------------

    def check_file(self, now: float) -> None:
        """Read the allocation file again if it changed; a bad file keeps the previous leases."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._complain(f"no allocation file {self.path} (yet): is wgsigd running with a [relay] section?",
                           logging.INFO)
            self._install([], now)
            self._seen = None
            return
        except OSError as error:
            self._complain(f"cannot read the allocation file {self.path}: {error.strerror}")
            return
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return
        try:
            leases = relayfile.decode(self.path.read_bytes())
        except OSError as error:
            self._complain(f"cannot read the allocation file {self.path}: {error.strerror}; keeping the previous"
                           " allocations")
            return
        except relayfile.RelayFileError as error:
            self._complain(f"the allocation file {self.path} is not usable: {error}; keeping the previous"
                           " allocations")
            return
        self._seen = seen
        self._complaint = None
        self._install(leases, now)

    def _complain(self, line: str, level: int = logging.ERROR) -> None:
        if line != self._complaint:
            log.log(level, "%s", line)
            self._complaint = line

    def _install(self, leases: list[relayfile.Lease], now: float) -> None:
        opened, closed = self.forwarder.install(leases, now)
        for port in closed:
            self._close(port)
        failed = [port for port in sorted(opened) if not self._open(port)]
        if failed:
            # Its partner port alone is no use: drop those leases (wgsigd allocates others later).
            kept = [le for le in leases if le.port_a not in failed and le.port_b not in failed]
            _opened, closed = self.forwarder.install(kept, now)
            for port in closed:
                self._close(port)
        if opened or closed:
            log.info("relaying %d allocations (%d ports)", len(self.sockets) // 2, len(self.sockets))

    def _open(self, port: int) -> bool:
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.bind((self.config.listen, port))
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            hint = ": another program has it, choose another [relay] ports range" \
                if error.errno == errno.EADDRINUSE else ""
            log.error("cannot bind relay port %s:%d: %s%s; that allocation is not relayed", self.config.listen,
                      port, error.strerror, hint)
            return False
        self.sockets[port] = sock
        self._by_fd[sock.fileno()] = (sock, port)
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        return True

    def _close(self, port: int) -> None:
        sock = self.sockets.pop(port, None)
        if sock is None:
            return
        self._by_fd.pop(sock.fileno(), None)
        with contextlib.suppress(OSError):
            self._epoll.unregister(sock.fileno())
        sock.close()

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        log.info("wgsigd relay: ports %d-%d on %s, allocations from %s", *self.config.ports, self.config.listen,
                 self.path)
        try:
            self.loop()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            for port in list(self.sockets):
                self._close(port)
            self._epoll.close()
        log.info("wgsigd relay stopped: %s", self.counters())
        return 0

    def counters(self) -> str:
        f = self.forwarder
        drops = ", ".join(f"{reason} {f.dropped[reason]}" for reason in DROP_REASONS if f.dropped[reason])
        return f"{f.forwarded} datagrams ({f.forwarded_bytes} bytes) forwarded; dropped: {drops or 'none'}"

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop = True

    def loop(self, until: Callable[[], bool] | None = None) -> None:
        buffer = bytearray(BUFFER_SIZE)
        view = memoryview(buffer)
        forward = self.forwarder.forward
        sockets, by_fd, poll, clock = self.sockets, self._by_fd, self._epoll.poll, self.clock
        next_check = 0.0
        next_report, reported = clock() + REPORT_INTERVAL, ""
        while not self._stop and (until is None or not until()):
            now = clock()
            if now >= next_report:
                line = self.counters()
                if line != reported:
                    log.info("relay: %s", line)
                    reported = line
                next_report = now + REPORT_INTERVAL
            if now >= next_check:
                self.check_file(now)
                expired = self.forwarder.expire(now)
                for port in expired:
                    self._close(port)
                if expired:
                    log.info("%d allocations expired: relaying %d", len(expired) // 2, len(self.sockets) // 2)
                next_check = now + CHECK_INTERVAL
            try:
                events = poll(max(0.0, min(CHECK_INTERVAL, next_check - now)))
            except InterruptedError:
                continue
            now = clock()
            for fd, _mask in events:
                entry = by_fd.get(fd)
                if entry is None:
                    continue
                sock, port = entry
                recv = sock.recvfrom_into
                for _ in range(BATCH):
                    try:
                        size, source = recv(buffer)
                    except BlockingIOError:
                        break
                    except OSError:
                        continue  # an ICMP error from an earlier send
                    decision = forward(port, buffer, size, source, now)
                    if decision is None:
                        continue
                    out = sockets.get(decision[0])
                    if out is not None:
                        try:
                            out.sendto(view[:size], decision[1])
                        except OSError as error:
                            log.debug("cannot relay to %s: %s", decision[1], error.strerror)


def main(argv: list[str]) -> int:
    """``wgsigd relay --config FILE [-v]``."""
    from wgsigd.cli import EXIT_CONFIG
    from wgsigd.config import load_config
    from wgsigd.logsetup import setup_logging

    verbose = "-v" in argv or "--verbose" in argv
    rest = [a for a in argv if a not in ("-v", "--verbose")]
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    if len(rest) != 2 or rest[0] != "--config":
        print("usage: wgsigd relay --config FILE [-v]   (the [relay] section of wgsigd.toml)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = load_config(rest[1])
        if config.relay is None:
            raise ConfigError(f"{config.source}: no [relay] section: the relay is off")
        if config.state_directory is None:
            raise ConfigError(f"{config.source}: the relay needs wgsigd's state directory")
        path = config.state_directory / relayfile.FILE_NAME
        return RelayProcess(config.relay, path).run()
    except ConfigError as error:
        log.error("wgsigd relay: %s", error)
        return EXIT_CONFIG
