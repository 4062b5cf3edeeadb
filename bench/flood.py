#!/usr/bin/env python3
"""Flood and amplification figures for a real wgsigd on loopback UDP.

    python3 bench/flood.py [--modes python,c] [--seconds 20] [--repeat 2] [--skip-amplification]

1. Flood (issue 12, point 7): 50 legitimate peers, each on its own loopback
   address (127.0.1.N), register once a second while one flooder, pinned to
   the other core than wgsigd, sends unauthenticated datagrams from 16
   sources: every length from 0 to 1,400 bytes, real requests with one bit
   flipped, and exact replays of real requests already answered (``--mix``:
   a third each by default).  The flooder is Python (``--python-rate``, 150,000/s by default) or
   C (``bench/flooder.c``, compiled here with gcc; as fast as it can, or
   ``--c-rate``).  Prints, per run: the rate offered, the share of the peers'
   requests answered completely within 1 s, the p50/p99 latency (an
   unanswered request counts as later than 1 s), the answers the flood got
   (must be 0), and what the kernel dropped at the server's socket.
   ``--sockets 2`` serves from a known-sources pair passed as wgsigd.socket
   passes it (bench/pair_activate.py); ``--spoof-peers`` floods from 16 of
   the peers' own addresses (what spoofing known sources does).
2. Amplification: an attacker without the secret replays captured requests
   (and garbage) from the victim's address; prints bytes out / bytes in per
   strategy, and the worst.

Network traffic stays on loopback.  On 2 cores the server, the flooder and
the peers share the CPUs (and on loopback the kernel's receive work, the
socket filter included, runs on the sender's CPU): the figures say what this
machine achieved, and are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wgsig.client import AnswerCollector, GroupCredentials, build_request  # noqa: E402
from wgsig.label import label_from_ns  # noqa: E402
from wgsig.ratelimit import DEFAULT_ANSWER_BURST, DEFAULT_ANSWER_RATE, DEFAULT_MAX_ANSWER_BYTES  # noqa: E402

SECRET = bytes(range(32))
GROUP = 77
SERVER_CPU, FLOODER_CPU = "0", "1"  # the peers run wherever the scheduler puts them


def udp_errors() -> int:
    """The kernel's UDP receive-buffer drops so far (all sockets)."""
    lines = Path("/proc/net/snmp").read_text().splitlines()
    udp = [line.split() for line in lines if line.startswith("Udp:")]
    return int(dict(zip(udp[0], udp[1], strict=True))["RcvbufErrors"])


def start_server(tmp: Path, port: int, sockets: int = 0) -> subprocess.Popen[bytes]:
    """A fresh wgsigd (empty state directory) serving one plain group, pinned to SERVER_CPU: on its
    own socket (``sockets`` 0), or on one or two (a known-sources pair) passed by
    bench/pair_activate.py as systemd passes them."""
    shutil.rmtree(tmp / "state", ignore_errors=True)
    (tmp / "secret").write_bytes(SECRET)
    (tmp / "secret").chmod(0o600)
    (tmp / "wgsigd.toml").write_text(
        f'listen = "127.0.0.1"\nport = {port}\nstate_directory = "{tmp / "state"}"\n'
        f'[group.bench]\nid = {GROUP}\nsecret_file = "{tmp / "secret"}"\nmax_records = 1000\n'
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = (tmp / "wgsigd.log").open("w")
    pinned = ["taskset", "-c", SERVER_CPU] if shutil.which("taskset") else []
    passed = [] if not sockets else [sys.executable, str(ROOT / "bench" / "pair_activate.py"), "127.0.0.1", str(port),
                                      *(["--one"] if sockets == 1 else []), "--"]
    proc = subprocess.Popen([*pinned, *passed, sys.executable, "-m", "wgsigd", "--config", str(tmp / "wgsigd.toml")],
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


# --- the flood ----------------------------------------------------------------

FLOOD_MAX_LENGTH = 1400
FLOOD_SOCKETS = 16  # flooder sources 127.0.2.1-16


def flood_datagrams(real: list[bytes], rng: random.Random, mix: tuple[int, int, int] = (1, 1, 1)) -> list[bytes]:
    """One cycle of the flood, shuffled: ``mix[0]`` times every length from 0 to 1,400 bytes (random
    bytes carrying the served group's number where it fits, so that the 82-byte ones cost an
    HMAC), ``mix[1]`` x 1,401 real requests with one bit flipped, ``mix[2]`` x 1,401 exact replays
    of real requests the server has already answered."""
    group = GROUP.to_bytes(4, "big")
    count = FLOOD_MAX_LENGTH + 1
    out = []
    for _ in range(mix[0]):
        for size in range(count):
            data = bytearray(rng.randbytes(size))
            if size >= 50:
                data[46:50] = group
            out.append(bytes(data))
    for i in range(mix[1] * count):
        data = bytearray(real[i % len(real)])
        bit = rng.randrange(len(data) * 8)
        data[bit // 8] ^= 1 << (bit % 8)
        out.append(bytes(data))
    out.extend(real[i % len(real)] for i in range(mix[2] * count))
    rng.shuffle(out)
    return out


def python_flooder(port: int, rate: float, seconds: float, datagrams: list[bytes],
                   counts: Any, prefix: str = "127.0.2.") -> None:
    """Sends ``datagrams`` round and round at ``rate`` a second from 16 sources; counts answers."""
    socks = []
    for i in range(FLOOD_SOCKETS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"{prefix}{1 + i}", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    batch = datagrams
    n = len(batch)
    start = time.monotonic()
    count = received = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = min(int(elapsed * rate) - count, 1024)
        if due <= 0:
            time.sleep(0.0002)
            continue
        for i in range(count, count + due):
            try:  # noqa: SIM105 - the hot loop
                socks[i & 15].send(batch[i % n])
            except OSError:
                pass  # ENOBUFS / refused: the flood goes on
        count += due
        received += _drain_count(socks)
    received += _drain_count(socks)
    counts[0], counts[1] = count, received


def _drain_count(socks: list[socket.socket]) -> int:
    received = 0
    for s in socks:
        while True:
            try:
                s.recv(4096)
            except (BlockingIOError, ConnectionRefusedError):
                break
            received += 1
    return received


def build_c_flooder(workdir: Path) -> Path:
    binary = workdir / "flooder"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(ROOT / "bench" / "flooder.c")], check=True)
    return binary


def write_datagram_file(path: Path, datagrams: list[bytes]) -> None:
    path.write_bytes(b"".join(len(d).to_bytes(2, "big") + d for d in datagrams))


class Peer:
    """One legitimate peer: its own source address, one registration a second."""

    def __init__(self, index: int, port: int) -> None:
        self.peer_id = bytes([0xC0, index]) * 16
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((f"127.0.1.{index + 1}", 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.sent_at: float | None = None
        self.collector: AnswerCollector | None = None

    def request(self, creds: GroupCredentials) -> bytes:
        return build_request(creds, self.peer_id, label_from_ns(time.time_ns()), 0, os.urandom)


def run_peers(peers: list[Peer], creds: GroupCredentials, seconds: float, timeout: float = 1.0) -> list[float | None]:
    """Every peer registers once a second (spread over the second) for ``seconds``; the latency of
    each complete answer, None for a request not answered completely within ``timeout``."""
    latencies: list[float | None] = []
    by_fd = {p.sock.fileno(): p for p in peers}
    start = time.monotonic()
    due = [start + i / len(peers) for i in range(len(peers))]
    end = start + seconds
    while True:
        now = time.monotonic()
        for i, peer in enumerate(peers):
            if peer.sent_at is not None and now - peer.sent_at >= timeout:
                latencies.append(None)  # not complete within the timeout
                peer.sent_at = peer.collector = None
            if peer.sent_at is None and now >= due[i] and due[i] < end:
                _drain_count([peer.sock])  # a late datagram of the last answer is not part of this one
                peer.collector = AnswerCollector(creds)
                peer.sent_at = time.monotonic()
                peer.sock.send(peer.request(creds))
                due[i] += 1.0
        if now >= end and all(p.sent_at is None for p in peers):
            return latencies
        wake = min([d for d in due if d < end] + [p.sent_at + timeout for p in peers if p.sent_at is not None]
                   + [now + 0.05])
        for fd in select.select(list(by_fd), [], [], max(0.0, wake - time.monotonic()))[0]:
            peer = by_fd[fd]
            while True:
                try:
                    data = peer.sock.recv(4096)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                if peer.collector is None or peer.sent_at is None:
                    continue
                peer.collector.receive_datagram(data)
                if peer.collector.complete:
                    latencies.append(time.monotonic() - peer.sent_at)
                    peer.sent_at = peer.collector = None


def socket_drops(port: int) -> int:
    """The kernel's drop counter of the UDP socket bound to ``port`` (filtered and overflowed), or
    the sum of the sockets' bound to it."""
    return sum(each_socket_drops(port).values())


def each_socket_drops(port: int) -> dict[int, int]:
    """The drop counter of each UDP socket bound to ``port``, by inode."""
    drops = {}
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                drops[int(fields[9])] = int(fields[-1])
    return drops


def flood_phase(tmp: Path, port: int, mode: str, rate: float, seconds: float, peers_count: int,
                mix: tuple[int, int, int], sockets: int = 0, spoof: bool = False) -> dict[str, Any]:
    """One run: a fresh server, ``peers_count`` peers, and a flood from Python or C (``spoof``: from
    the first 16 peers' addresses, 127.0.1.1-16, instead of 127.0.2.1-16)."""
    prefix = "127.0.1." if spoof else "127.0.2."
    server = start_server(tmp, port, sockets)
    creds = GroupCredentials(GROUP, SECRET)
    try:
        peers = [Peer(i, port) for i in range(peers_count)]
        # A first round: every peer known; these real, answered requests are what the flood replays.
        real = []
        for peer in peers:
            data = peer.request(creds)
            peer.sock.send(data)
            real.append(data)
        time.sleep(1.0)  # let the round be answered
        for peer in peers:
            _drain_count([peer.sock])
        datagrams = flood_datagrams(real, random.Random(7), mix)
        drops_before, overflows_before = socket_drops(port), udp_errors()
        each_before = each_socket_drops(port)
        pinned = ["taskset", "-c", FLOODER_CPU] if shutil.which("taskset") else []
        if mode == "c":
            write_datagram_file(tmp / "flood.bin", datagrams)
            flooder = subprocess.Popen(
                [*pinned, str(tmp / "flooder"), str(port), str(seconds), str(rate), str(tmp / "flood.bin"),
                 str(FLOOD_SOCKETS), prefix], stdout=subprocess.PIPE, text=True)
        else:
            counts = multiprocessing.Array("q", 2)
            flooder_proc = multiprocessing.Process(target=python_flooder,
                                                   args=(port, rate, seconds, datagrams, counts, prefix))
            flooder_proc.start()
            if pinned:
                subprocess.run(["taskset", "-p", "-c", FLOODER_CPU, str(flooder_proc.pid)],
                               check=False, capture_output=True)
        time.sleep(1.0)  # let the flood build up
        latencies = run_peers(peers, creds, seconds - 2.5)
        if mode == "c":
            out, _ = flooder.communicate()
            fields = out.split()
            sent, answered_flood, flood_seconds = int(fields[1]), int(fields[3]), float(fields[5])
        else:
            flooder_proc.join()
            sent, answered_flood, flood_seconds = counts[0], counts[1], seconds
        drops, overflows = socket_drops(port) - drops_before, udp_errors() - overflows_before
        each = [n - each_before.get(inode, 0) for inode, n in sorted(each_socket_drops(port).items())]
        for peer in peers:
            peer.sock.close()
    finally:
        server.terminate()
        server.wait(10)
    stop = [line for line in (tmp / "wgsigd.log").read_text().splitlines() if "stopped" in line]
    answered = sorted(x for x in latencies if x is not None)
    ordered = answered + [float("inf")] * (len(latencies) - len(answered))
    return {
        "mode": mode, "offered": sent / flood_seconds, "sent": sent, "requests": len(latencies),
        "answered": len(answered), "p50": ordered[len(ordered) // 2] if ordered else float("inf"),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("inf"),
        "max": answered[-1] if answered else float("inf"), "flood_answers": answered_flood,
        "drops": drops, "overflows": overflows, "server": stop[-1] if stop else "no stop line", "mix": mix,
        "sockets": sockets, "load": os.getloadavg()[0], "each": each, "spoof": spoof,
    }


SOCKET_MODES = {0: "its own socket", 1: "one passed socket", 2: "a passed known-sources pair"}


def print_flood(result: dict[str, Any]) -> None:
    r = result
    share = r["answered"] / r["requests"] if r["requests"] else 0.0

    def ms(x: float) -> str:
        return "> 1000 ms (unanswered)" if x == float("inf") else f"{x * 1000:.1f} ms"

    print(f"flood from {'C' if r['mode'] == 'c' else 'Python'}: {r['offered']:,.0f} datagrams/s offered"
          f" ({r['sent']:,} in all; every length 0-{FLOOD_MAX_LENGTH} : bit-flipped : exact replays"
          f" = {':'.join(map(str, r['mix']))}); server on {SOCKET_MODES[r['sockets']]}; load average {r['load']:.2f}"
          + ("; the flood spoofs 16 peers' addresses" if r["spoof"] else ""))
    print(f"  peers' requests answered completely within 1 s: {r['answered']} of {r['requests']} = {share:.1%};"
          f" latency p50 {ms(r['p50'])}, p99 {ms(r['p99'])}, max answered {ms(r['max'])}")
    print(f"  answers to the flood: {r['flood_answers']}")
    print(f"  dropped by the kernel at the server's socket: {r['drops']:,} (filter and full buffer),"
          f" of them receive-buffer overflows (all of this machine's UDP sockets): {r['overflows']:,}"
          + (f"; per socket (by inode): {', '.join(f'{n:,}' for n in r['each'])}" if len(r["each"]) > 1 else ""))
    print(f"  {r['server']}")


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
    parser.add_argument("--modes", default="python,c", help="flooders to run, in order: python, c (default both)")
    parser.add_argument("--python-rate", type=float, default=150_000, help="Python flooder's datagrams per second")
    parser.add_argument("--c-rate", type=float, default=0, help="C flooder's datagrams/s (0: at most)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds per flood run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per flooder")
    parser.add_argument("--peers", type=int, default=50, help="legitimate peers (own source addresses)")
    parser.add_argument("--mix", default="1:1:1", help="weights of every-length garbage, bit-flipped requests and"
                        " exact replays in the flood (default 1:1:1, a third each; 10:1:1: mostly lengths)")
    parser.add_argument("--records", type=int, default=45, help="records in the group for the amplification run")
    parser.add_argument("--sockets", type=int, choices=(0, 1, 2), default=0,
                        help="flood runs: 0, wgsigd's own socket (default); 1, one passed socket; 2, a passed"
                        " known-sources pair (two SO_REUSEPORT sockets, bench/pair_activate.py)")
    parser.add_argument("--spoof-peers", action="store_true",
                        help="flood from the first 16 peers' addresses (known sources) instead of 16 others")
    parser.add_argument("--skip-flood", action="store_true")
    parser.add_argument("--skip-amplification", action="store_true")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(m not in ("python", "c") for m in modes):
        parser.error("--modes takes python and c")
    try:
        weights = tuple(int(w) for w in args.mix.split(":"))
    except ValueError:
        weights = ()
    if len(weights) != 3 or min(weights) < 0 or sum(weights) * (FLOOD_MAX_LENGTH + 1) > 65536:
        parser.error("--mix takes three weights A:B:C, at most 46 in all")
    mix = (weights[0], weights[1], weights[2])
    with tempfile.TemporaryDirectory() as tmp:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if not args.skip_flood:
            if "c" in modes:
                build_c_flooder(Path(tmp))
            for mode in modes:
                for _ in range(args.repeat):
                    rate = args.c_rate if mode == "c" else args.python_rate
                    print_flood(flood_phase(Path(tmp), port, mode, rate, args.seconds, args.peers, mix, args.sockets,
                                            args.spoof_peers))
                    sys.stdout.flush()
        if not args.skip_amplification:
            server = start_server(Path(tmp), port)
            try:
                amplification_phase(port, args.records)
            finally:
                server.terminate()
                server.wait(10)
                status = [line for line in (Path(tmp) / "wgsigd.log").read_text().splitlines() if "stopped" in line]
                print(f"server: {status[-1] if status else 'no stop line'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
