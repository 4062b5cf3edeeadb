#!/usr/bin/env python3
"""Spoofed replays against victims, and many peers behind one address, for a real wgsigd.

    python3 bench/replay_dos.py replays [--rates 20 50] [--victims 10] [--seconds 10]
    python3 bench/replay_dos.py nat [--peers 1000] [--group-size 10] [--seconds 30] [--waiting 1.0]

``replays``: wgsigd with its default limits serves a group of 46 records.  An attacker without
the secret replays one captured fetch (CLFLG 3, five datagrams of answer) at ``rate`` a second
from each victim's address (127.0.5.N); each victim registers once a second from a new port.
Prints the share of the victims' registrations answered, and applied (the victim's record holds
the port of its latest registration, checked from another address after each round).

``nat``: ``--peers`` kernel-mode peers behind one address (127.0.7.1, each its own port), in
groups of ``--group-size``.  Each peer's timer run starts at a random time in the first 30 s:
register (CLFLG 0 | XA), 25 ms later check (CLFLG 3 | XA), then refresh (CLFLG 1 | XA); a
``--waiting`` share of the runs then polls (CLFLG 1 | XA) every 0.5 s for 25 s, as a run does
while a peer has no handshake (wgsigc/kernelmode.py).  Prints the share of requests answered
completely within 1 s, and the bytes a second sent to that address.

Loopback only; the server, the bench and whatever else runs share the machine's cores, so the
figures say what this machine achieved.
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing
import os
import random
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wgsig import x1  # noqa: E402
from wgsig.client import AnswerCollector, GroupCredentials, build_request  # noqa: E402
from wgsig.label import label_from_ns  # noqa: E402

SECRET = bytes(range(32))
CLFLG_REGISTER, CLFLG_CHECK, CLFLG_REFRESH = 0 | x1.XA, 3 | x1.XA, 1 | x1.XA


def start_server(tmp: Path, groups: list[int], max_records: int) -> tuple[subprocess.Popen[bytes], int]:
    """wgsigd with its default limits, serving ``groups``; returns it and its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp / "secret").write_bytes(SECRET)
    (tmp / "secret").chmod(0o600)
    tables = "".join(f'[group.g{g}]\nid = {g}\nsecret_file = "{tmp / "secret"}"\nmax_records = {max_records}\n'
                     for g in groups)
    (tmp / "wgsigd.toml").write_text(f'listen = "127.0.0.1"\nport = {port}\nstate_directory = "{tmp / "state"}"\n'
                                     f'{tables}')
    log = (tmp / "wgsigd.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "wgsigd", "--config", str(tmp / "wgsigd.toml")],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if exchange(port, GroupCredentials(groups[0], SECRET), os.urandom(32), 0, "127.0.0.250") is not None:
            return proc, port
    raise SystemExit(f"wgsigd did not start: {(tmp / 'wgsigd.log').read_text()}")


def exchange(port: int, creds: GroupCredentials, peer: bytes, clflg: int, source_ip: str,
             timeout: float = 0.5, source_port: int = 0) -> AnswerCollector | None:
    """One request from ``source_ip``; the complete answer, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source_ip, source_port))
        sock.connect(("127.0.0.1", port))
        sock.send(build_request(creds, peer, label_from_ns(time.time_ns()), clflg, os.urandom))
        collector = AnswerCollector(creds)
        sock.settimeout(timeout)
        try:
            while not collector.complete:
                collector.receive_datagram(sock.recv(4096))
        except (TimeoutError, ConnectionRefusedError):  # not yet listening, or no answer
            time.sleep(0.05)
            return None
        return collector


def replay_from(captured: bytes, port: int, rate: float, victims: int, seconds: float) -> None:
    """The attacker: ``rate`` replays a second from each victim's address, evenly spread."""
    socks = []
    for v in range(victims):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((f"127.0.5.{v + 1}", 0))  # another port of the victim's address
        sock.setblocking(False)
        socks.append(sock)
    started, sent = time.monotonic(), 0
    while (now := time.monotonic() - started) < seconds:
        while sent < now * rate * victims:
            sock = socks[sent % victims]
            sock.sendto(captured, ("127.0.0.1", port))
            sent += 1
            try:
                while sock.recv(4096):  # what the victim's address was sent
                    pass
            except BlockingIOError:
                pass
        time.sleep(0.002)
    sys.exit(min(sent // 100, 255))  # the count, in hundreds, as the exit status


def replays(rate: float, victims: int, seconds: int) -> None:
    creds = GroupCredentials(5, SECRET)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp), [5], 256)
        try:
            for n in range(45):  # 45 others + the checker: five datagrams an answer
                assert exchange(port, creds, bytes([n + 1]) * 32, 0, f"127.0.4.{n + 1}") is not None
            captured = build_request(creds, bytes([1]) * 32, label_from_ns(time.time_ns()), 3, os.urandom)
            attacker = multiprocessing.Process(target=replay_from, args=(captured, port, rate, victims, seconds + 1))
            attacker.start()
            answered = applied = total = 0
            started = time.monotonic()
            time.sleep(0.5)  # the replays are under way
            for second in range(seconds):
                registered: dict[int, int] = {}
                for v in range(victims):
                    source_port = 20000 + second * 100 + v
                    got = exchange(port, creds, bytes([0xA0 + v]) * 32, 0, f"127.0.5.{v + 1}", 0.3, source_port)
                    answered += got is not None
                    registered[v] = source_port
                    total += 1
                check = exchange(port, creds, b"\xcc" * 32, 0, "127.0.6.1", 1.0)
                if check is not None:
                    ports = {r.peer_id[0]: r.port for r in check.records()}
                    applied += sum(ports.get(0xA0 + v) == p for v, p in registered.items())
                pause = started + 0.5 + second + 1 - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            attacker.join()
            sent = attacker.exitcode or 0
            elapsed = seconds + 1
        finally:
            proc.terminate()
            proc.wait()
        limited = sum("answer budget of 127.0.5." in line for line in (Path(tmp) / "wgsigd.log").open())
    print(f"replays {rate:g}/s per victim address ({sent * 100 / elapsed:.0f}/s sent in all), {victims} victims"
          f" registering once a second for {seconds} s: {answered}/{total} registrations answered"
          f" ({100 * answered / total:.1f} %), {applied}/{total} applied ({100 * applied / total:.1f} %);"
          f" {limited} rate-limit lines in the journal")


def nat(peers: int, group_size: int, seconds: float, waiting: float) -> None:
    group_count = -(-peers // group_size)
    groups = [100 + g for g in range(group_count)]
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp), groups, max(256, group_size + 10))
        selector = selectors.DefaultSelector()
        socks, creds, ids = [], [], []
        for p in range(peers):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.7.1", 0))
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, p)
            socks.append(sock)
            creds.append(GroupCredentials(groups[p // group_size], SECRET))
            ids.append((p + 1).to_bytes(4, "big") * 8)
        # (due, peer, clflg) of every request of the run.
        due: list[tuple[float, int, int]] = []
        for p in range(peers):
            start = rng.uniform(0, 30)
            due += [(start, p, CLFLG_REGISTER), (start + 0.025, p, CLFLG_CHECK), (start + 0.05, p, CLFLG_REFRESH)]
            if rng.random() < waiting:
                due += [(start + 0.05 + 0.5 * k, p, CLFLG_REFRESH) for k in range(1, 51)]
        due = [d for d in due if d[0] < seconds]
        heapq.heapify(due)
        pending: dict[int, tuple[float, AnswerCollector]] = {}  # peer -> (sent at, its answer so far)
        answered = requests = received = 0
        late: list[float] = []
        started = time.monotonic()
        try:
            while due or pending:
                now = time.monotonic() - started
                while due and due[0][0] <= now:
                    _, p, clflg = heapq.heappop(due)
                    if p in pending:
                        late.append(now - pending.pop(p)[0])  # its answer did not come in time
                    socks[p].send(build_request(creds[p], ids[p], label_from_ns(time.time_ns()), clflg, os.urandom))
                    pending[p] = (now, AnswerCollector(creds[p]))
                    requests += 1
                for p in [p for p, (at, _) in pending.items() if now - at > 1.0]:
                    del pending[p]
                timeout = max(0.0, min(due[0][0] - now if due else 0.05, 0.05))
                for key, _ in selector.select(timeout):
                    p = key.data
                    try:
                        while True:
                            data = socks[p].recv(65536)
                            received += len(data)
                            entry = pending.get(p)
                            if entry is None:
                                continue
                            entry[1].receive_datagram(data)
                            if entry[1].complete:
                                answered += time.monotonic() - started - entry[0] <= 1.0
                                del pending[p]
                    except BlockingIOError:
                        pass
            elapsed = time.monotonic() - started
        finally:
            for sock in socks:
                sock.close()
            proc.terminate()
            proc.wait()
        limited = sum("answer budget of 127.0.7.1" in line for line in (Path(tmp) / "wgsigd.log").open())
    print(f"{peers} kernel-mode peers behind 127.0.7.1 in groups of {group_size}, {100 * waiting:.0f} % of runs"
          f" polling: {answered}/{requests} requests answered within 1 s ({100 * answered / requests:.2f} %),"
          f" {requests / elapsed:.0f} requests/s, {received / elapsed / 1000:.0f} kB/s to that address;"
          f" {limited} rate-limit lines in the journal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    r = sub.add_parser("replays")
    r.add_argument("--rates", type=float, nargs="+", default=[20, 50])
    r.add_argument("--victims", type=int, default=10)
    r.add_argument("--seconds", type=int, default=10)
    n = sub.add_parser("nat")
    n.add_argument("--peers", type=int, default=1000)
    n.add_argument("--group-size", type=int, default=10)
    n.add_argument("--seconds", type=float, default=30)
    n.add_argument("--waiting", type=float, default=1.0)
    args = parser.parse_args()
    if args.scenario == "replays":
        for rate in args.rates:
            replays(rate, args.victims, args.seconds)
    else:
        nat(args.peers, args.group_size, args.seconds, args.waiting)


if __name__ == "__main__":
    main()
