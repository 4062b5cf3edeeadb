"""The C client's mode: register or refresh, print a wg(8) skeleton.

    wgsigc SERVER PORT PUBKEY_BASE64 SECRET_FILE LOCAL_PORT

An even LOCAL_PORT registers (CLFLG 0) and prints ``[Interface]``; an odd one
only refreshes (CLFLG 1).  Unlike the C client, wgsigc checks GROUP, collects
every datagram of the answer, retries, and explains a failure.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from wgsig.client import GroupCredentials, fresh_records
from wgsig.endpoint import unusable_reason
from wgsig.host import lightsocket as socket
from wgsig.keys import PublicKey
from wgsig.plainclass import dataclass
from wgsig.wire import NO_ENDPOINT_UPDATE, Record
from wgsigc.exchange import ExchangeError, diagnose, exchange, ignored_lines, resolve
from wgsigc.exitcodes import EXIT_NO_ANSWER, EXIT_OK, EXIT_RESOLVE, EXIT_SOCKET
from wgsigc.skeleton import format_skeleton

PING_SIZE = 8



@dataclass(frozen=True)
class PrintOptions:
    server: str
    port: int
    peer_id: PublicKey
    credentials: GroupCredentials
    local_port: int
    max_age: float | None = None
    attempts: int = 3
    attempt_timeout: float = 1.0
    skip_unusable: bool = False  # not the C client's output: only when asked


def run_print_mode(options: PrintOptions) -> int:
    registering = options.local_port % 2 == 0
    clflg = 0 if registering else NO_ENDPOINT_UPDATE
    try:
        # within the time the exchange itself may take: a silent DNS server must not stall us 10 s
        server = resolve(options.server, options.port, options.attempts * options.attempt_timeout)
    except ExchangeError as error:
        print(f"wgsigc: {error}", file=sys.stderr)
        return EXIT_RESOLVE
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        try:
            sock.bind(("0.0.0.0", options.local_port))
        except OSError as error:
            hint = " (is WireGuard listening on it? use 'wgsigc --config' for kernel mode)" if registering else ""
            print(f"wgsigc: cannot bind local port {options.local_port}: {error.strerror}{hint}", file=sys.stderr)
            return EXIT_SOCKET
        try:
            result = exchange(
                sock, server, options.credentials, options.peer_id, clflg,
                attempts=options.attempts, attempt_timeout=options.attempt_timeout,
            )
        except ExchangeError as error:
            print(f"wgsigc: {error}", file=sys.stderr)
            return EXIT_SOCKET
        for line in ignored_lines(result):
            print(f"wgsigc: {line}", file=sys.stderr)
        if result.records is None:
            print(f"wgsigc: {diagnose(result, server)}", file=sys.stderr)
            return EXIT_NO_ANSWER
        now = time.time()
        records = fresh_records(result.records, now, options.max_age)
        if options.skip_unusable:
            records = _usable(records, options.peer_id)
        listen_port = options.local_port if registering else None
        sys.stdout.write(format_skeleton(records, options.peer_id, int(now), listen_port))
        sys.stdout.flush()
        if registering:
            _punch(sock, [(r.ip, r.port) for r in records])
        return EXIT_OK
    finally:
        sock.close()


def _usable(records: list[Record], own_id: bytes) -> list[Record]:
    """The records a peer can be reached at (our own is kept: it is only a comment); one line per other."""
    kept = []
    for record in records:
        why = unusable_reason((record.ip, record.port))
        if why is not None and record.peer_id != own_id:
            print(f"wgsigc: peer {PublicKey(record.peer_id)}: endpoint {record.endpoint} is {why}: left out",
                  file=sys.stderr)
            continue
        kept.append(record)
    return kept


def _punch(sock: socket.socket, endpoints: list[tuple[str, int]]) -> None:
    """Send a small datagram to every peer, as the C client does, to open NAT mappings."""
    ping = os.urandom(PING_SIZE)
    for endpoint in endpoints:
        with contextlib.suppress(OSError):  # best effort: a peer may be unreachable
            sock.sendto(ping, endpoint)
