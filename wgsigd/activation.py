"""The service manager's side: the socket systemd passes, and sd_notify.

systemd-python (``systemd.daemon``) does the work; when it is missing, a small
fallback speaks the same two protocols (``LISTEN_FDS``/``LISTEN_PID`` and the
``NOTIFY_SOCKET`` datagram), so wgsigd installed without it still starts under
``Type=notify``.  The passed socket is systemd's: wgsigd never binds, listens
on or shuts it down, so datagrams that arrive while wgsigd is not running wait
in it and start the service again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

from wgsigd.config import ConfigError, DaemonConfig
from wgsigd.daemon import Hooks
from wgsigd.shedding import is_reuseport_pair

log = logging.getLogger("wgsigd")

LISTEN_FDS_START = 3  # sd_listen_fds(3): passed descriptors start here


class ActivationError(ConfigError):
    """The service manager passed something wgsigd cannot serve on."""


def passed_fds() -> list[int]:
    """The descriptors passed by socket activation (none when started otherwise).

    The environment variables are removed, as sd_listen_fds(unset=1) does, so
    they do not leak into anything started later.  Malformed ones (not numbers,
    descriptors that are not open) are an ActivationError.
    """
    pid, count = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    try:
        from systemd.daemon import listen_fds  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return _listen_fds_fallback()
    try:
        return list(listen_fds(unset_environment=True))
    except OSError as error:  # sd_listen_fds(3)'s -EINVAL, -ERANGE, -EBADF
        raise ActivationError(_malformed(pid, count, error.strerror)) from None


def _listen_fds_fallback() -> list[int]:
    pid, count = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if pid is None or count is None:
        return []
    try:
        if int(pid) != os.getpid():
            return []  # meant for another process (e.g. our parent)
        n = int(count)
    except ValueError:
        raise ActivationError(_malformed(pid, count, "not a number")) from None
    fds = range(LISTEN_FDS_START, LISTEN_FDS_START + max(n, 0))
    for fd in fds:
        try:
            os.set_inheritable(fd, False)  # as sd_listen_fds(3) sets FD_CLOEXEC
        except (OSError, OverflowError):  # as sd_listen_fds(3): each must be open
            raise ActivationError(_malformed(pid, count, f"descriptor {fd} is not open")) from None
    return list(fds)


def _malformed(pid: str | None, count: str | None, why: str | None) -> str:
    return (
        f"malformed activation variables LISTEN_PID={pid!r}, LISTEN_FDS={count!r} ({why}):"
        " start wgsigd from wgsigd.socket, or with neither variable set"
    )


def adopt_sockets(fds: list[int]) -> list[socket.socket]:
    """The UDP socket among ``fds``, or the two of one port (known sources first); anything else is a
    clear error."""
    if len(fds) not in (1, 2):
        raise ActivationError(
            f"the service manager passed {len(fds)} sockets; wgsigd serves one UDP socket, or two of the same"
            " address and port (wgsigd.socket: one ListenDatagram= line, or two identical ones with ReusePort=yes)"
        )
    socks = [adopt_socket(fd) for fd in fds]
    if len(socks) == 2 and not is_reuseport_pair(socks[0], socks[1]):
        names = " and ".join(_name(s) for s in socks)
        for sock in socks:
            sock.detach()  # not ours to close
        raise ActivationError(
            f"the service manager passed two sockets ({names}) that are not one port's SO_REUSEPORT pair:"
            " wgsigd serves one UDP socket, or two of the same address and port"
            " (wgsigd.socket: two identical ListenDatagram= lines and ReusePort=yes)"
        )
    return socks


def _name(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def adopt_socket(fd: int) -> socket.socket:
    """The UDP socket ``fd``; anything else is a clear error."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as error:
        raise ActivationError(f"passed descriptor {fd} is not a socket ({error.strerror})") from None
    if sock.type != socket.SOCK_DGRAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        kind = "stream" if sock.type == socket.SOCK_STREAM else f"type {int(sock.type)}"
        sock.detach()  # not ours to close
        raise ActivationError(
            f"passed descriptor {fd} is a {kind} socket of family {int(sock.family)}; wgsigd needs a UDP socket"
            " (use ListenDatagram=, not ListenStream= or ListenSequentialPacket=)"
        )
    return sock


def acquire_sockets(config: DaemonConfig, bind: Callable[[DaemonConfig], socket.socket]) -> list[socket.socket]:
    """The passed socket or pair of sockets when socket-activated, else one bound by ``bind``."""
    fds = passed_fds()
    if not fds:
        return [bind(config)]
    socks = adopt_sockets(fds)
    port = socks[0].getsockname()[1]
    if port != config.port:
        log.info("serving on the socket passed by the service manager (port %d); 'port = %d' in %s is not used",
                 port, config.port, config.source)
    return socks


# sd_notify ---------------------------------------------------------------


def notify_sender() -> Callable[[str], bool] | None:
    """A function sending one sd_notify message, or None when not run by a service manager."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return None
    try:
        from systemd.daemon import notify  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return _notify_fallback

    def send(message: str) -> bool:
        return bool(notify(message))

    return send


def _notify_fallback(message: str) -> bool:
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # "@" names an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd asked for (WatchdogSec=), in seconds."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    try:
        if not usec or (pid and int(pid) != os.getpid()):
            return None
        return int(usec) / 2e6
    except ValueError:
        return None


def service_hooks() -> Hooks:
    """Hooks reporting wgsigd's state to systemd (no-ops when not run by it)."""
    send = notify_sender()
    if send is None:
        return Hooks()
    interval = watchdog_interval()
    last_ping = [0.0]

    def watchdog() -> None:
        # The loop's chores call this every half of WatchdogSec=; never ping more often than every quarter.
        now = time.monotonic()
        if interval is not None and now - last_ping[0] >= interval / 2:
            last_ping[0] = now
            send("WATCHDOG=1")

    def reloading() -> None:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match this to the reload request.
        send(f"RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def ready(status: str) -> None:
        send(f"READY=1\nSTATUS={status}")

    def status(status: str) -> None:
        send(f"STATUS={status}")

    def stopping() -> None:
        send("STOPPING=1\nSTATUS=saving records and stopping")

    return Hooks(ready, status, stopping, reloading, watchdog, interval)
