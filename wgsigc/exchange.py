"""One request/answer exchange with a server over UDP, with bounded retries.

Answers are bound to the request: the socket is connected to the server, so
datagrams from any other address or port never reach the collector.
"""

from __future__ import annotations

import os
import select
import time

from wgsig import ipaddr, x1
from wgsig.client import AnswerCollector, GroupCredentials, Ignored, Stale, build_request
from wgsig.host import lightsocket as socket
from wgsig.label import label_from_ns
from wgsig.plainclass import dataclass, field
from wgsig.wire import Record

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

# The C server compares labels with 16.8 ms granularity: keep our requests apart.
MIN_REQUEST_GAP = 0.025
# Reasons kept for the lines printed: a flood from the server's address must not print (or keep)
# one line per datagram; the rest are counted.
KEPT_REASONS = 5


@dataclass
class ExchangeResult:
    """What one exchange produced: records if complete, diagnostics otherwise."""

    records: list[Record] | None
    attempts: int
    ignored: list[str] = field(default_factory=list)  # the first KEPT_REASONS reasons
    ignored_count: int = 0  # every datagram ignored (ignored holds the first few)
    failed_auth: int = 0  # ... of which not authentic, or not for this group (the rest: older versions)
    refused: bool = False  # ICMP port unreachable came back
    partial: tuple[int, int] | None = None  # (received, expected) datagrams
    svext: int = 0  # the server's X1 capabilities (0: a C or X1-unaware server)
    items: dict[bytes, list[x1.Item]] = field(default_factory=dict)  # X1 items per peer ID
    observed: list[x1.Item] = field(default_factory=list)  # our source as the server saw it


class ExchangeError(Exception):
    """The exchange could not even start (name resolution, socket errors)."""


def _getaddrinfo(host: str, port: int, family: int, deadline: float | None) -> list[Any]:
    """getaddrinfo, given up after ``deadline`` seconds.

    glibc's resolver waits resolv.conf's timeout times its attempts (10 s by default) for a DNS
    server that does not answer, whatever our own timeout says; it cannot be interrupted, so it
    runs in a daemon thread that is left behind when the deadline passes (the process ends soon
    after, or the thread ends when glibc gives up).
    """
    literal = _literal(host, port, family)
    if literal is not None:
        return literal
    try:
        if deadline is None:
            return socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
        import threading  # only for names: most configurations give addresses

        done: list[Any] = []
        failed: list[BaseException] = []

        def work() -> None:
            try:
                done.extend(socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM))
            except BaseException as error:  # handed over to the caller's thread
                failed.append(error)

        worker = threading.Thread(target=work, name=f"resolve {host}", daemon=True)
        worker.start()
        worker.join(deadline)
        if worker.is_alive():
            raise ExchangeError(
                f"cannot resolve server name {host!r}: the DNS resolver did not answer within {deadline:g} s"
            )
        if failed:
            raise failed[0]
        return done
    except socket.gaierror as error:
        raise ExchangeError(f"cannot resolve server name {host!r}: {error.strerror}") from None
    except UnicodeError:  # the IDNA codec rejects empty or over-long labels before any lookup
        raise ExchangeError(f"cannot resolve server name {host!r}: not a valid host name") from None


def _literal(host: str, port: int, family: int) -> list[Any] | None:
    """What getaddrinfo answers for an address literal, without asking it (it would load the
    IDNA codec to encode the text); None for names, scoped IPv6 addresses and a family the address
    is not of, which it answers."""
    if "%" in host:
        return None
    try:
        address = ipaddr.parse(host)
    except ValueError:
        return None
    if address[0] == 4 and family in (socket.AF_INET, socket.AF_UNSPEC):
        return [(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", (ipaddr.to_text(address), port))]
    if address[0] == 6 and family in (socket.AF_INET6, socket.AF_UNSPEC):
        return [(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", (ipaddr.to_text(address), port, 0, 0))]
    return None  # an IPv6 literal asked for as IPv4: getaddrinfo's own error


def resolve(host: str, port: int, deadline: float | None = None) -> tuple[str, int]:
    """An IPv4 address for the server (the protocol carries IPv4 only), within ``deadline`` seconds."""
    address = _getaddrinfo(host, port, socket.AF_INET, deadline)[0][4]
    return str(address[0]), int(address[1])


def resolve_all(host: str, port: int, deadline: float | None = None
                ) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """The server's IPv4 and IPv6 addresses (either may be None, not both), within ``deadline`` seconds."""
    infos = _getaddrinfo(host, port, socket.AF_UNSPEC, deadline)
    v4 = next(((str(i[4][0]), int(i[4][1])) for i in infos if i[0] == socket.AF_INET), None)
    v6 = next(((str(i[4][0]), int(i[4][1])) for i in infos if i[0] == socket.AF_INET6), None)
    if v4 is None and v6 is None:
        raise ExchangeError(f"cannot resolve server name {host!r}: no IPv4 or IPv6 address")
    return v4, v6


def exchange(
    sock: socket.socket,
    server: tuple[str, int],
    credentials: GroupCredentials,
    peer_id: bytes,
    clflg: int,
    *,
    attempts: int = 3,
    attempt_timeout: float = 1.0,
    backoff: float = 1.0,
    random_bytes: Callable[[int], bytes] = os.urandom,
    clock_ns: Callable[[], int] = time.time_ns,
    items: list[x1.Item] | None = None,
    relay_to: Sequence[bytes] = (),
) -> ExchangeResult:
    """Send requests (a fresh label each) until a complete answer arrives.

    ``items``: an X1 request block (only towards a server that announced SV_XR_OK); ``relay_to``:
    peer IDs to ask a relay for in it (only towards one that announced SV_RELAY).
    ``backoff``: each attempt waits this many times longer than the one before (kernel mode: 2,
    so that a server its socket is starting, seconds on a slow host, still answers in time).
    """
    try:
        sock.connect(server)
    except OSError as error:
        raise ExchangeError(f"cannot reach {server[0]}:{server[1]}: {error.strerror}") from None
    collector = AnswerCollector(credentials)
    result = ExchangeResult(None, 0)
    last_sent = 0.0
    for attempt in range(1, attempts + 1):
        gap = last_sent + MIN_REQUEST_GAP - time.monotonic()
        if gap > 0:
            time.sleep(gap)
        request = build_request(credentials, peer_id, label_from_ns(clock_ns()), clflg, random_bytes, items,
                                relay_to)
        result.attempts = attempt
        try:
            sock.send(request)
        except ConnectionRefusedError:
            result.refused = True
            continue
        except OSError as error:
            raise ExchangeError(f"cannot send to {server[0]}:{server[1]}: {error.strerror}") from None
        last_sent = time.monotonic()
        deadline = last_sent + attempt_timeout * backoff ** (attempt - 1)
        while (remaining := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], remaining)[0]:
                break
            try:
                data = sock.recv(65536)
            except ConnectionRefusedError:
                result.refused = True
                break
            except OSError as error:  # another ICMP error, e.g. a firewall's "administratively prohibited"
                raise ExchangeError(
                    f"cannot reach {server[0]}:{server[1]}: {error.strerror}"
                    " (an ICMP error came back for the request: a firewall on the way?)"
                ) from None
            outcome = collector.receive_datagram(data)
            if isinstance(outcome, Ignored):
                result.ignored_count += 1
                result.failed_auth += not isinstance(outcome, Stale)
                if len(result.ignored) < KEPT_REASONS:
                    result.ignored.append(outcome.reason)
            elif outcome.complete:
                result.records = collector.records()
                result.svext = collector.svext
                result.items, result.observed = collector.entries()
                return result
        if collector.expected is not None:
            result.partial = (collector.received, collector.expected)
    return result


FEW_PER_ATTEMPT = 200  # an answer of 2,000 records is 200 datagrams: more per request is not an answer


def ignored_lines(result: ExchangeResult) -> list[str]:
    """The lines for the datagrams an exchange ignored: the first few, then how many more (pure)."""
    lines = [f"ignored a datagram: {reason}" for reason in result.ignored]
    more = result.ignored_count - len(result.ignored)
    if more > 0:
        lines.append(f"ignored {more} more datagrams from the server's address (not shown one by one)")
    return lines


def diagnose(result: ExchangeResult, server: tuple[str, int]) -> str:
    """One line naming the likely causes of an exchange that got no valid answer."""
    where = f"{server[0]}:{server[1]}"
    if result.partial is not None:
        received, expected = result.partial
        return (
            f"incomplete answer from {where}: {received} of {expected} datagrams arrived after"
            f" {result.attempts} attempts; the path may drop large or many UDP datagrams"
        )
    if result.failed_auth:
        first = next((r for r in result.ignored if not r.startswith("an older")), "")
        count = result.failed_auth
        if count > result.attempts * FEW_PER_ATTEMPT:
            # far more than a server sends for a few requests: not (only) a wrong setting here
            return (
                f"{count} datagrams from {where} failed authentication (first: {first}), far more than"
                f" {result.attempts} requests get back: something else sends to this port (a flood, or another"
                " program at the server's address), or the secret file, group ID or encryption setting"
                " differs from the server's"
            )
        return (
            f"{count} datagrams from {where} failed authentication ({first}):"
            " check the secret file, the group ID and the encryption setting against the server's,"
            " or something else sends to this port"
        )
    if result.refused:
        return f"{where} refused the request (ICMP port unreachable): is wgsigd running and listening on that port?"
    return (
        f"no answer from {where} after {result.attempts} attempts; likely causes: server unreachable or"
        " not running, wrong secret or group, encryption setting differs from the server's, or this clock"
        " is more than 30 s off the server's (check 'timedatectl')"  # wgsigd's default window
    )
