"""The server's I/O shell: one UDP socket, the core, the state store, signals.

The loop drains the socket without blocking and waits in select() when it is
empty; signals wake the select through a wakeup socket.  Saving is periodic
(while records change) and on exit, and never blocks answering.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wgsig.ratelimit import ReplayCache
from wgsig.server import Server
from wgsigd.config import ConfigError, DaemonConfig
from wgsigd.eventlog import EventLog
from wgsigd.store import StateStore

log = logging.getLogger("wgsigd")

RECV_SIZE = 2048


@dataclass
class Hooks:
    """Callbacks to the service manager (systemd notify), no-ops by default."""

    ready: Callable[[str], None] = lambda status: None
    status: Callable[[str], None] = lambda status: None
    stopping: Callable[[], None] = lambda: None
    reloading: Callable[[], None] = lambda: None
    watchdog: Callable[[], None] = lambda: None
    watchdog_interval: float | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        sock: socket.socket,
        hooks: Hooks | None = None,
        reload_config: Callable[[], DaemonConfig] | None = None,
    ) -> None:
        self.config = config
        self.sock = sock
        self.hooks = hooks or Hooks()
        self._reload_config = reload_config
        self.server = Server(config.load_groups(), window=config.window, random_bytes=os.urandom)
        self._apply_limits(config)
        self.store = StateStore(config.state_directory) if config.state_directory else None
        self.events = EventLog()
        self._stop = False
        self._reload = False

    def load_state(self) -> None:
        if self.store is None:
            return
        if not self.store.path.exists():
            log.info("no saved records in %s yet: starting empty", self.store.directory)
            return
        saved = self.store.load()
        tables = self.server.groups
        for group_id, slots in saved.items():
            if group_id in tables:
                tables[group_id].load(slots)
            else:
                log.warning("saved records of group %d ignored: that group is no longer configured", group_id)
        self.server.dirty = False
        log.info("loaded %d records of %d groups from %s", self.server.record_count(), len(tables), self.store.path)

    def snapshot(self) -> dict[int, list[bytes]]:
        return {gid: list(table.slots) for gid, table in self.server.groups.items()}

    def status_line(self) -> str:
        s = self.server
        return (
            f"{len(s.groups)} groups, {s.record_count()} records,"
            f" {s.answered} requests answered, {s.rejected} dropped"
        )

    def run(self) -> int:
        self.load_state()
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            self.sock.setblocking(False)
            self.hooks.ready(self.status_line())
            log.info("wgsigd serving on %s: %s", _sockname(self.sock), self.status_line())
            self._loop(wake_r)
        finally:
            self.hooks.stopping()
            self._save_now()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()
        log.info("wgsigd stopped: %s", self.status_line())
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True

    def _loop(self, wake: socket.socket) -> None:
        sock, server, events = self.sock, self.server, self.events
        recvfrom, sendto = sock.recvfrom, sock.sendto
        interval = self.config.save_interval
        idle_exit = self.config.idle_exit
        next_save = time.monotonic() + interval
        next_status = time.monotonic() + 5.0
        last_datagram = time.monotonic()
        while not self._stop:
            try:
                data, source = recvfrom(RECV_SIZE)
            except BlockingIOError:
                now = time.monotonic()
                if self._reload:
                    self._do_reload()
                if server.dirty and now >= next_save:
                    self._save_async()
                    next_save = now + interval
                if now >= next_status:
                    self.hooks.status(self.status_line())
                    next_status = now + 5.0
                if idle_exit is not None and now - last_datagram >= idle_exit:
                    log.info("no datagram for %g s: exiting (the socket unit keeps the port)", idle_exit)
                    return
                timeout = max(0.0, min(next_save - now if server.dirty else interval, next_status - now))
                if idle_exit is not None:
                    timeout = min(timeout, max(0.0, last_datagram + idle_exit - now))
                if self.hooks.watchdog_interval:
                    self.hooks.watchdog()
                    timeout = min(timeout, self.hooks.watchdog_interval)
                ready = select.select([sock, wake], [], [], timeout)[0]
                if wake in ready:
                    _drain(wake)
                continue
            except ConnectionRefusedError:
                continue  # ICMP error from an earlier answer: nothing to do
            last_datagram = time.monotonic()
            answer, event = server.receive_datagram(data, source, time.time())
            for datagram in answer:
                try:
                    sendto(datagram, source)
                except OSError as error:
                    log.debug("cannot answer %s: %s", source, error.strerror)
            events(event)
            if server.dirty and last_datagram >= next_save:
                self._save_async()
                next_save = last_datagram + interval

    def _do_reload(self) -> None:
        self._reload = False
        if self._reload_config is None:
            return
        self.hooks.reloading()
        try:
            config = self._reload_config()
            self.server.configure(config.load_groups())
        except (ConfigError, ValueError) as error:
            log.error("reload failed, keeping the previous configuration: %s", error)
        else:
            self.server.window = config.window
            self._apply_limits(config)
            log.info("configuration reloaded: %s", self.status_line())
        self.hooks.ready(self.status_line())

    def _apply_limits(self, config: DaemonConfig) -> None:
        # Anti-amplification (wgsig/ratelimit.py); the replay cache survives reloads.
        self.server.answer_limiter = config.answer_limiter()
        self.server.max_answer_bytes = config.max_answer_bytes
        if self.server.replay_cache is None:
            self.server.replay_cache = ReplayCache(config.window)
        self.server.replay_cache.lifetime = 2 * config.window + 1

    def _save_async(self) -> None:
        if self.store is not None:
            self.store.save_async(self.snapshot())
        self.server.dirty = False

    def _save_now(self) -> None:
        if self.store is not None:
            self.store.save(self.snapshot())
            log.info("saved %d records to %s", self.server.record_count(), self.store.path)
        self.server.dirty = False


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except BlockingIOError:
        pass


def _sockname(sock: socket.socket) -> str:
    name = sock.getsockname()
    return f"[{name[0]}]:{name[1]}" if sock.family == socket.AF_INET6 else f"{name[0]}:{name[1]}"
