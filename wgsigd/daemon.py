"""The server's I/O shell: one UDP socket (or a known-sources pair), the core, the state store, signals.

The loop drains the socket without blocking and waits in select() when it is
empty; signals wake the select through a wakeup socket.  With a pair (two
passed sockets of one port, ``wgsigd/shedding.py``) the kernel queues the
datagrams of known sources (the IPv4 addresses that most recently sent an
authenticated request, and those of the loaded records) on the first socket
and every other on the second: the loop reads the first until it is empty
(at most CHORE_EVERY at a time) and then at most OTHERS_BATCH of the second,
so a flood from unknown addresses delays a known peer's request by at most
that batch.  The set is rebuilt at most every STEERING_INTERVAL seconds.

Saving is periodic (while records change) and on exit, and never blocks answering; so is writing
the metrics file (every ``metrics_interval`` seconds, and on exit).
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wgsig import relayfile
from wgsig.endpoint import endpoint_text
from wgsig.events import Answered
from wgsig.host.atomicfile import replace_file
from wgsig.metrics import encode
from wgsig.ratelimit import ReplayCache
from wgsig.relayalloc import RelayTable
from wgsig.server import Server
from wgsig.sockfilter import MAX_STEERED_SOURCES
from wgsigd.config import ConfigError, DaemonConfig
from wgsigd.eventlog import EventLog
from wgsigd.metricsfile import MetricsWriter, families
from wgsigd.mmsg import BatchReceiver, BatchSender, batch_receiver, batch_sender
from wgsigd.shedding import attach_request_filter, attach_source_steering, detach_filter
from wgsigd.store import StateStore, remedy

log = logging.getLogger("wgsigd")

RECV_SIZE = 2048
CHORE_EVERY = 256  # datagrams handled between two looks at the clock-driven chores under load
# Datagrams read in one recvmmsg and answered in one sendmmsg: a batch's answers wait for its last
# request, so a batch as large as the pass would hold every answer back until the pass ends, and a
# client with a few requests in flight would wait for them all (bench/README.md, issue 16).
IO_BATCH = 32
# Datagrams of the other sources' socket read between two looks at the known sources' one: at about
# 5 us each, a known peer's request waits at most about 0.3 ms for them; while the known sources'
# socket is busy too (a flood spoofing their addresses), the other gets 64 of every 320 reads.
OTHERS_BATCH = 64
STEERING_INTERVAL = 1.0  # seconds between two rebuilds of the known sources' program, at most
STATUS_INTERVAL = 5.0  # seconds between status updates to the service manager
# Exit status when the records could not be saved on exit: a failure systemd shows (and may restart
# after: the previous state file is loaded again), unlike 6, which a restart cannot fix.
EXIT_NOT_SAVED = 1
SAVE_RETRY_INTERVAL = 5.0  # seconds between two tries while saves fail (each logs a line)


@dataclass
class Hooks:
    """Callbacks to the service manager (systemd notify), no-ops by default."""

    ready: Callable[[str], None] = lambda status: None
    status: Callable[[str], None] = lambda status: None
    stopping: Callable[[], None] = lambda: None
    reloading: Callable[[], None] = lambda: None
    watchdog: Callable[[], None] = lambda: None
    watchdog_interval: float | None = None


class _Chores:
    """When the daemon's clock-driven work is next due (monotonic seconds)."""

    def __init__(
        self, now: float, save_interval: float, watchdog_interval: float | None, metrics_interval: float | None = None
    ) -> None:
        self.save_interval = save_interval
        self.watchdog_interval = watchdog_interval or None
        self.metrics_interval = metrics_interval
        self.next_save = now + save_interval
        self.next_metrics = now if metrics_interval else float("inf")  # the first file at once
        self.next_status = now + STATUS_INTERVAL
        self.next_watchdog = now if self.watchdog_interval else float("inf")


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        sock: socket.socket,
        hooks: Hooks | None = None,
        reload_config: Callable[[], DaemonConfig] | None = None,
        others: socket.socket | None = None,
    ) -> None:
        self.config = config
        self.sock = sock  # the only socket, or the known sources' one of a pair
        self.others = others  # the other sources' socket of a pair
        # Known sources, the least recently seen first (a dict is ordered), while there is a pair.
        self._known: dict[str, bool] | None = {} if others is not None else None
        self._known_changed = False
        self._steering_failed = False
        # The order check: the sources of the program attached at the last interval's end or before
        # (steered for a whole interval), and how many of their authenticated requests were read
        # from each socket.
        self._steered: frozenset[str] = frozenset()
        self._checked: frozenset[str] = frozenset()
        self._on_first = self._on_second = 0
        self.hooks = hooks or Hooks()
        self._reload_config = reload_config
        self._replay_cache = ReplayCache(config.window)  # kept across reloads
        limits = config.limits(self._replay_cache)
        relay, relay_host = None, None
        if config.relay is not None and config.state_directory is not None:
            r = config.relay
            relay = RelayTable(r.ports, secrets.randbelow, r.lifetime, r.max_per_peer, r.max_per_group)
            relay_host = r.address
        self.server = Server(config.load_groups(), window=config.window, random_bytes=os.urandom, limits=limits,
                             relay=relay, relay_host=relay_host)
        self.store = StateStore(config.state_directory) if config.state_directory else None
        # The relay's allocations, for the relay process (wgsigd relay): rewritten when they change.
        self.relay_path = None
        if relay is not None and config.state_directory is not None:
            self.relay_path = config.state_directory / relayfile.FILE_NAME
        self._relay_failing = False
        self.events = EventLog()
        self.metrics = MetricsWriter(config.metrics_directory) if config.metrics_directory else None
        self.start_time = time.time()
        self._stop = False
        self._reload = False
        # Datagrams in and out with recvmmsg(2) and sendmmsg(2) where available (wgsigd/mmsg.py).
        self.batch_syscalls = True
        self._batches: dict[socket.socket, tuple[BatchReceiver | None, BatchSender | None]] = {}

    def load_state(self) -> None:
        if self.store is None:
            return
        saved = self.store.load()  # StateStoreError: wgsigd does not start
        if saved is None:
            log.info("no saved records in %s yet: starting empty", self.store.directory)
            return
        tables = self.server.groups
        for group_id, slots in saved.items():
            if group_id in tables:
                tables[group_id].load(slots)
            else:
                log.warning("saved records of group %d ignored: that group is no longer configured", group_id)
        self.server.dirty = False
        log.info("loaded %d records of %d groups from %s", self.server.record_count(), len(tables), self.store.path)
        if self._known is not None:
            mapped = "::ffff:" if self.sock.family == socket.AF_INET6 else ""  # as a dual-stack socket names them
            for table in tables.values():
                for record in table.records():
                    self._known[mapped + record.ip] = True
            self._known_changed = True

    def snapshot(self) -> dict[int, bytes]:
        """Every group's slots; runs on the state writer thread (GroupTable.packed_slots is one copy)."""
        return {gid: table.packed_slots() for gid, table in self.server.groups.items()}

    def metrics_text(self) -> bytes:
        """The metrics file's content; runs on the metrics writer thread."""
        s = self.server
        failures = self.store.failures if self.store is not None else 0
        return encode(families(s.group_counters(), dict(s.rejections), failures, self.start_time))

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
        saved = False
        try:
            self._write_relay_file()  # the relay process starts from no allocation, not an old file
            for sock in self._sockets():
                sock.setblocking(False)
                attach_request_filter(sock, self.server.request_shapes())
            if self.others is not None:
                self._update_steering()  # before READY: the loaded records' addresses are known at once
            self.hooks.ready(self.status_line())
            pair = " (a pair: known sources first)" if self.others is not None else ""
            log.info("wgsigd serving on %s%s: %s", _sockname(self.sock), pair, self.status_line())
            self._loop(wake_r)
        finally:
            self.hooks.stopping()
            for sock in self._sockets():
                detach_filter(sock)  # a passed socket outlives us: it queues every length for the next start
            saved = self._save_now()
            if self.metrics is not None:
                self.metrics.write(self.metrics_text)
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()
        log.info("wgsigd stopped: %s", self.status_line())
        return 0 if saved else EXIT_NOT_SAVED

    def _sockets(self) -> list[socket.socket]:
        return [self.sock] if self.others is None else [self.sock, self.others]

    def _update_steering(self) -> None:
        """Attach the program steering the known sources to the first socket of the pair.

        The known sources kept are the MAX_STEERED_SOURCES most recently seen IPv4 ones (dual-stack
        sockets name them ::ffff:a.b.c.d); the rest are forgotten once there are twice as many.
        A program the kernel refuses leaves the previous one (or none: the kernel hashes) in place.
        """
        known = self._known
        assert known is not None
        self._known_changed = False
        if len(known) > 2 * MAX_STEERED_SOURCES:
            for ip in list(known)[: len(known) - MAX_STEERED_SOURCES]:
                del known[ip]
        addresses: list[int] = []
        steered: list[str] = []
        for ip in reversed(known):
            try:
                packed = socket.inet_aton(ip[7:] if ip.startswith("::ffff:") else ip)
            except OSError:
                continue  # IPv6: always from the other sources' socket
            addresses.append(int.from_bytes(packed, "big"))
            steered.append(ip)
            if len(addresses) == MAX_STEERED_SOURCES:
                break
        if attach_source_steering(self.sock, addresses):
            self._steered = frozenset(steered)
            if self._steering_failed:
                log.info("known sources first again: %d addresses", len(addresses))
            self._steering_failed = False
        elif not self._steering_failed:
            self._steering_failed = True
            log.warning("cannot attach the program that queues the datagrams of %d known sources first: the"
                        " previous one stays (with none, the kernel spreads datagrams over both sockets)",
                        len(addresses))

    def _check_order(self) -> None:
        """Swap the pair's roles when the known sources arrive on the second socket.

        The program steers known sources to the socket that joined the reuseport group first, which
        is the first passed one unless the group changed under systemd (after a daemon-reload with
        two identical ListenDatagram= lines, systemd may reopen the second socket, and the kernel
        fills the first one's place with the last one when it closes).  Checked each interval: at
        least 3 authenticated requests of sources steered for a whole interval read from the
        second socket and none from the first.
        """
        if self._on_second >= 3 and self._on_first == 0 and self.others is not None and not self._steering_failed:
            self.sock, self.others = self.others, self.sock
            log.info("known sources arrive on the second passed socket (the reuseport group's order changed):"
                     " reading it first")
        self._on_first = self._on_second = 0
        self._checked = self._steered  # in place for a whole interval from now on

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True

    def _loop(self, wake: socket.socket) -> None:
        # What exists now (configuration, loaded records) lives as long as the server: exempt it
        # from the collector's full passes, which otherwise stall answers for tens of milliseconds
        # with 100,000 records.
        gc.freeze()
        # The state writer thread copies and encodes the tables while this loop answers; by
        # default it could keep the GIL for 5 ms at a time, a 5 ms silence.
        sys.setswitchinterval(0.001)
        idle_exit = self.config.idle_exit
        chores = _Chores(
            time.monotonic(), self.config.save_interval, self.hooks.watchdog_interval,
            self.config.metrics_interval if self.metrics is not None else None,
        )
        last_datagram = time.monotonic()
        pair = self.others is not None
        next_steering = time.monotonic() + STEERING_INTERVAL
        while not self._stop:
            others = self.others  # the pair may swap roles (_check_order)
            handled = self._answer_queued(CHORE_EVERY)
            busy = handled == CHORE_EVERY
            if others is not None:
                handled_others = self._answer_queued(OTHERS_BATCH, others)
                handled += handled_others
                busy = busy or handled_others == OTHERS_BATCH
            now = time.monotonic()
            if handled:
                last_datagram = now
            timeout = self._chores(chores, now)  # also under full load: saves, status, watchdog
            if pair and now >= next_steering:
                self._check_order()
                if self._known_changed:
                    self._update_steering()
                next_steering = now + STEERING_INTERVAL
            if busy:
                continue  # more may be queued
            if idle_exit is not None:
                if now - last_datagram >= idle_exit:
                    if self.store is not None and self.store.failing:
                        # Exiting would lose the records that cannot be saved: keep serving them.
                        last_datagram = now
                        continue
                    log.info("no datagram for %g s: exiting (the socket unit keeps the port)", idle_exit)
                    return
                timeout = min(timeout, last_datagram + idle_exit - now)
            if pair and self._known_changed:
                timeout = min(timeout, max(0.0, next_steering - now))
            ready = select.select([*self._sockets(), wake], [], [], max(0.0, timeout))[0]
            if wake in ready:
                _drain(wake)

    def _answer_queued(self, limit: int, sock: socket.socket | None = None) -> int:
        """Answer datagrams queued on ``sock`` (by default the first socket) until it is empty or
        ``limit`` were read; returns how many were."""
        sock = self.sock if sock is None else sock
        batch = self._batches.get(sock)
        if batch is None:
            # recvmmsg(2) and sendmmsg(2) where the C library has them (wgsigd/mmsg.py), else
            # recvfrom and sendto per datagram.
            on = self.batch_syscalls
            batch = self._batches[sock] = (
                batch_receiver(sock, RECV_SIZE) if on else None, batch_sender(sock) if on else None)
        receiver, sender = batch
        try:
            if receiver is None:
                return self._answer_some(limit, sock, sender)
            handled = 0
            while handled < limit:
                wanted = min(limit - handled, IO_BATCH)
                datagrams = receiver.receive(wanted)
                self._answer_datagrams(datagrams, sock, sender)
                if sender is not None:
                    sender.flush()
                handled += len(datagrams)
                if len(datagrams) < wanted:
                    break  # fewer than asked for: the socket is empty
            return handled
        finally:
            if sender is not None:
                sender.flush()  # whatever an exception left queued

    def _answer_some(self, limit: int, sock: socket.socket, sender: BatchSender | None) -> int:
        """recvfrom per datagram (no recvmmsg)."""
        recvfrom = sock.recvfrom
        datagrams: list[tuple[bytes, Any]] = []
        for count in range(limit):
            try:
                datagrams.append(recvfrom(RECV_SIZE))
            except BlockingIOError:
                self._answer_datagrams(datagrams, sock, sender)
                return count
            except ConnectionRefusedError:
                continue  # ICMP error from an earlier answer: nothing to do
            if len(datagrams) == IO_BATCH:
                self._answer_datagrams(datagrams, sock, sender)
                if sender is not None:
                    sender.flush()
                datagrams = []
        self._answer_datagrams(datagrams, sock, sender)
        return limit

    def _answer_datagrams(self, datagrams: list[tuple[bytes, Any]], sock: socket.socket,
                          sender: BatchSender | None) -> None:
        # The per-datagram path: bound methods in locals.  The datagrams were read together: one
        # clock read, and the core builds their answers once they are all applied.
        if not datagrams:
            return
        send = sender.add if sender is not None else self._sendto(sock)
        events = self.events
        known, steered, checked, first = self._known, self._steered, self._checked, sock is self.sock
        answers, batch_events = self.server.receive_datagrams(datagrams, time.time())
        for (_, source), answer, event in zip(datagrams, answers, batch_events, strict=True):
            for datagram in answer:
                send(datagram, source)
            events(event)
            if known is not None and event.__class__ is Answered:
                # the most recently seen last; an IPv4 one not steered yet is at the next rebuild
                ip = source[0]
                known.pop(ip, None)
                known[ip] = True
                if ip not in steered and "." in ip:
                    self._known_changed = True
                if ip in checked:
                    if first:
                        self._on_first += 1
                    else:
                        self._on_second += 1

    @staticmethod
    def _sendto(sock: socket.socket) -> Callable[[bytes, tuple[object, ...]], None]:
        """One sendto per datagram: where sendmmsg(2) is not available."""
        sendto = sock.sendto

        def send(datagram: bytes, source: tuple[object, ...]) -> None:
            try:
                sendto(datagram, source)
            except OSError as error:
                log.debug("cannot answer %s: %s", source, error.strerror)

        return send

    def _chores(self, chores: _Chores, now: float) -> float:
        """Reload, periodic save, metrics, status and watchdog when due; returns seconds until the next one."""
        if self._reload:
            self._do_reload()
        # A failed save is tried again (the tables may not change again before wgsigd stops), less often.
        failing = self.store is not None and self.store.failing
        unsaved = self.server.dirty or failing
        if unsaved and now >= chores.next_save:
            self._save_async()
            interval = chores.save_interval
            chores.next_save = now + (max(interval, SAVE_RETRY_INTERVAL) if failing else interval)
        if chores.metrics_interval is not None and now >= chores.next_metrics:
            assert self.metrics is not None
            self.metrics.write_async(self.metrics_text)
            chores.next_metrics = now + chores.metrics_interval
        relay = self.server.relay
        if relay is not None and (relay.expire(time.time()) or relay.dirty):
            self._write_relay_file()
        if now >= chores.next_status:
            self.hooks.status(self.status_line())
            chores.next_status = now + STATUS_INTERVAL
        if chores.watchdog_interval is not None and now >= chores.next_watchdog:
            self.hooks.watchdog()
            chores.next_watchdog = now + chores.watchdog_interval
        due = [chores.next_status, chores.next_watchdog, chores.next_metrics]
        due.append(chores.next_save if unsaved else now + chores.save_interval)
        return min(due) - now

    def _do_reload(self) -> None:
        self._reload = False
        if self._reload_config is None:
            return
        self.hooks.reloading()
        try:
            config = self._reload_config()
            self.server.configure(config.load_groups(), config.limits(self._replay_cache), config.window)
        except (ConfigError, ValueError) as error:
            log.error("reload failed, keeping the previous configuration: %s", error)
        else:
            for warning in config.warnings():
                log.warning("%s", warning)
            for sock in self._sockets():  # groups may now be encrypted, or not
                attach_request_filter(sock, self.server.request_shapes())
            log.info("configuration reloaded: %s", self.status_line())
        self.hooks.ready(self.status_line())

    def _write_relay_file(self) -> None:
        """Hand the allocations to the relay process (atomically: it reads the old file or the new)."""
        relay = self.server.relay
        if relay is None or self.relay_path is None:
            return
        try:
            replace_file(self.relay_path, relayfile.encode(relay.snapshot()), 0o600)
        except OSError as error:
            relay.dirty = True  # tried again at the next chores
            if not self._relay_failing:
                log.error("cannot write the relay allocations %s: %s", self.relay_path, error.strerror)
            self._relay_failing = True
        else:
            self._relay_failing = False

    def _save_async(self) -> None:
        if self.store is not None:
            self.store.save_async(self.snapshot)
        self.server.dirty = False

    def _save_now(self) -> bool:
        """Save on exit; False (and one line saying so) when the records could not be written."""
        self.server.dirty = False
        if self.store is None:
            return True
        count = self.server.record_count()
        try:
            self.store.save(self.snapshot)
        except OSError as error:
            log.error("%d records not saved: cannot write %s: %s; %s", count, self.store.path, error.strerror,
                      remedy(error))
            return False
        log.info("saved %d records to %s", count, self.store.path)
        return True


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except BlockingIOError:
        pass


def _sockname(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]  # an AF_INET6 name has four fields
    return endpoint_text((str(host), int(port)))
