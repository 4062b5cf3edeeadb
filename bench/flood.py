#!/usr/bin/env python3
"""Flood and amplification figures for a real wgsigd on loopback UDP.

    python3 bench/flood.py [--rate 100000] [--seconds 20] [--clients 50] [--records 45]

1. Flood: flooder processes send unauthenticated datagrams at ``--rate`` a
   second (82-byte datagrams for the served group with random HMACs, so each
   costs the server an HMAC; garbage of other sizes; replays of captured
   valid requests), while legitimate clients, each from its own loopback
   address (127.0.1.N), register and refresh.  Prints the share of their
   requests answered completely within 1 s, and the flood rate reached.
2. Amplification: an attacker without the secret replays captured requests
   (and garbage) from the victim's address; prints bytes out / bytes in per
   strategy, and the worst.

Network traffic stays on loopback.  On 2 cores the server, the flooders and
the clients share the CPUs: the figures say what this machine achieved.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wgsig.client import AnswerCollector, GroupCredentials, build_request  # noqa: E402
from wgsig.label import label_from_ns  # noqa: E402
from wgsig.ratelimit import DEFAULT_ANSWER_BURST, DEFAULT_ANSWER_RATE, DEFAULT_MAX_ANSWER_BYTES  # noqa: E402

SECRET = bytes(range(32))
GROUP = 77


def udp_errors() -> int:
    """The kernel's UDP receive-buffer drops so far (all sockets)."""
    lines = Path("/proc/net/snmp").read_text().splitlines()
    udp = [line.split() for line in lines if line.startswith("Udp:")]
    return int(dict(zip(udp[0], udp[1], strict=True))["RcvbufErrors"])


def start_server(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    (tmp / "secret").write_bytes(SECRET)
    (tmp / "secret").chmod(0o600)
    (tmp / "wgsigd.toml").write_text(
        f'listen = "127.0.0.1"\nport = {port}\nstate_directory = "{tmp / "state"}"\n'
        f'[group.bench]\nid = {GROUP}\nsecret_file = "{tmp / "secret"}"\nmax_records = 1000\n'
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = (tmp / "wgsigd.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "wgsigd", "--config", str(tmp / "wgsigd.toml")],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    creds = GroupCredentials(GROUP, SECRET)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if ask(port, creds, os.urandom(32), 3, "127.0.0.9", 0.2) is not None:
            return proc
    raise SystemExit(f"wgsigd did not start: {(tmp / 'wgsigd.log').read_text()}")


def ask(port: int, creds: GroupCredentials, peer: bytes, clflg: int, source_ip: str, timeout: float,
        sock: socket.socket | None = None) -> float | None:
    """Seconds until the complete answer, or None after ``timeout``."""
    own = sock is None
    if sock is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source_ip, 0))
        sock.connect(("127.0.0.1", port))
    try:
        collector = AnswerCollector(creds)
        start = time.monotonic()
        sock.send(build_request(creds, peer, label_from_ns(time.time_ns()), clflg, os.urandom))
        deadline = start + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                return None
            try:
                outcome = collector.receive_datagram(sock.recv(4096))
            except ConnectionRefusedError:
                return None
            if collector.complete:
                return time.monotonic() - start
            del outcome
        return None
    finally:
        if own:
            sock.close()


def flooder(
    port: int, rate: float, seconds: float, replays: list[bytes], index: int, sent: multiprocessing.Value  # type: ignore[type-arg]
) -> None:
    rng = random.Random(index)
    socks = []
    for i in range(16):  # many spoofed-looking sources
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.{2 + index}.{1 + i}", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    group = GROUP.to_bytes(4, "big")
    bad_mac = [rng.randbytes(46) + b"\x00\x00" + group + rng.randbytes(32) for _ in range(512)]
    garbage = [rng.randbytes(rng.choice([0, 1, 50, 81, 83, 97, 98, 200, 540, 1400])) for _ in range(64)]
    batch = [bad_mac[i % 512] if i % 10 < 8 else garbage[i % 64] if i % 10 == 8 else replays[i % len(replays)]
             for i in range(1000)]
    start = time.monotonic()
    count = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) - count
        if due <= 0:
            time.sleep(0.0005)
            continue
        for i in range(min(due, 1000)):
            try:  # noqa: SIM105 - the hot loop
                socks[i & 15].send(batch[i])
            except OSError:
                pass  # ENOBUFS / refused: the flood goes on
        count += min(due, 1000)
    with sent.get_lock():
        sent.value += count


def flood_phase(port: int, args: argparse.Namespace) -> None:
    creds = GroupCredentials(GROUP, SECRET)
    # Captured valid requests, already answered once: their replays are part of the flood.
    replays = []
    for clflg in (0, 1, 3):
        data = build_request(creds, bytes([clflg + 1]) * 32, label_from_ns(time.time_ns()), clflg, os.urandom)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.9", 0))
            s.sendto(data, ("127.0.0.1", port))
        replays.append(data)
    sent = multiprocessing.Value("q", 0)
    share_rate = args.rate / args.flooders
    procs = [multiprocessing.Process(target=flooder, args=(port, share_rate, args.seconds, replays, i, sent))
             for i in range(args.flooders)]
    drops_before = udp_errors()
    for p in procs:
        p.start()
    time.sleep(1.0)  # let the flood build up
    latencies: list[float | None] = []
    clients = [(bytes([0xC0, i]) * 16, f"127.0.1.{i + 1}") for i in range(args.clients)]
    socks = {}
    for peer, ip in clients:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, 0))
        s.connect(("127.0.0.1", port))
        socks[peer] = s
    t_end = time.monotonic() + args.seconds - 2.5
    n = 0
    while time.monotonic() < t_end:
        peer, _ip = clients[n % len(clients)]
        latencies.append(ask(port, creds, peer, 0 if n < len(clients) else 1, "", 1.0, socks[peer]))
        n += 1
        time.sleep(max(0.0, 1.0 / args.client_rate - (latencies[-1] or 1.0)))
    for p in procs:
        p.join()
    drops = udp_errors() - drops_before
    for s in socks.values():
        s.close()
    ok = sorted(x for x in latencies if x is not None)
    share = len(ok) / len(latencies) if latencies else 0.0
    print(f"flood: {sent.value:,} unauthenticated datagrams in {args.seconds:.0f} s"
          f" ({sent.value / args.seconds:,.0f}/s offered: 80% 82-byte random HMAC, 10% garbage, 10% replays)")
    print(f"  kernel UDP receive-buffer drops during the run: {drops:,}"
          f" (server processed about {max(0, sent.value - drops) / args.seconds:,.0f}/s)")
    print(f"  legitimate requests: {len(latencies)} from {len(clients)} clients, answered completely within 1 s:"
          f" {len(ok)} = {share:.1%}")
    if ok:
        print(f"  latency of answered: median {ok[len(ok) // 2] * 1000:.1f} ms,"
              f" p99 {ok[int(len(ok) * 0.99)] * 1000:.1f} ms, max {ok[-1] * 1000:.1f} ms")


def amplification_phase(port: int, records: int) -> None:
    creds = GroupCredentials(GROUP, SECRET)
    # Fill the group so an answer has several datagrams.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.5.1", 0))
        for i in range(records):
            s.sendto(build_request(creds, bytes([0xA0, i % 256, i // 256]) + bytes(29), label_from_ns(time.time_ns()),
                                   0, os.urandom), ("127.0.0.1", port))
            time.sleep(0.002)
    time.sleep(0.5)
    results = []

    def attack(name: str, datagrams: list[bytes], victim: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((victim, 0))
            s.setblocking(False)
            bytes_in = 0
            for d in datagrams:
                s.sendto(d, ("127.0.0.1", port))
                bytes_in += len(d)
                time.sleep(0.0002)
            deadline = time.monotonic() + 1.0
            bytes_out = 0
            while time.monotonic() < deadline:
                if select.select([s], [], [], 0.1)[0]:
                    bytes_out += len(s.recv(4096))
        results.append((name, bytes_in, bytes_out))

    def captured(clflg: int, seen: bool) -> bytes:
        data = build_request(creds, bytes([0xEE, clflg]) * 16, label_from_ns(time.time_ns()), clflg, os.urandom)
        if seen:  # the legitimate peer's copy reached the server first
            assert ask_raw(port, data)
        return data

    attack("replay x2000 of an answered CLFLG 3 (peek)", [captured(3, True)] * 2000, "127.0.6.1")
    attack("replay x2000 of an answered CLFLG 1 (unknown peer)", [captured(1, True)] * 2000, "127.0.6.2")
    attack("replay x2000 of an answered CLFLG 0 (registration)", [captured(0, True)] * 2000, "127.0.6.3")
    attack("2000 random 82-byte datagrams for the group", [os.urandom(46) + bytes(2) + GROUP.to_bytes(4, "big")
                                                          + os.urandom(32) for _ in range(2000)], "127.0.6.4")
    attack("on-path race: a captured CLFLG 3 the server never saw, then x2000",
           [captured(3, False)] * 2001, "127.0.6.5")
    attack("on-path race: a captured CLFLG 0 the server never saw, then x2000",
           [captured(0, False)] * 2001, "127.0.6.6")
    print(f"amplification (group of {records + 1} records, defaults: answer_rate {DEFAULT_ANSWER_RATE:g}/s,"
          f" burst {DEFAULT_ANSWER_BURST}, replay cache on, max_answer_bytes {DEFAULT_MAX_ANSWER_BYTES}):")
    for name, bytes_in, bytes_out in results:
        print(f"  {name}: {bytes_in:,} B in, {bytes_out:,} B out, ratio {bytes_out / bytes_in:.3f}")
    worst = max(results, key=lambda r: r[2] / r[1])
    print(f"  worst sustained ratio without the secret: {worst[2] / worst[1]:.3f} ({worst[0]})")
    whole = 540 * -(-(records + 1) // 10)
    print(f"  worst answer to one datagram: the whole table, {whole:,} B for 82 B = {whole / 82:.1f}, once per request"
          f" the attacker captures before the server sees it; each replay gets at most {DEFAULT_MAX_ANSWER_BYTES} B,"
          " within the per-source rate limit")


def ask_raw(port: int, data: bytes) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.9", 0))
        s.settimeout(1)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return bool(s.recv(4096))
        except TimeoutError:
            return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100_000, help="unauthenticated datagrams per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--flooders", type=int, default=1, help="flooder processes")
    parser.add_argument("--clients", type=int, default=50, help="legitimate clients (own source addresses)")
    parser.add_argument("--client-rate", type=float, default=20, help="legitimate requests per second, in all")
    parser.add_argument("--records", type=int, default=45, help="records in the group for the amplification run")
    parser.add_argument("--skip-flood", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = start_server(Path(tmp), port)
        try:
            if not args.skip_flood:
                flood_phase(port, args)
            amplification_phase(port, args.records)
        finally:
            server.terminate()
            server.wait(10)
            status = [line for line in (Path(tmp) / "wgsigd.log").read_text().splitlines() if "stopped" in line]
            print(f"server: {status[-1] if status else 'no stop line'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
