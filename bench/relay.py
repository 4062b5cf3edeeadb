#!/usr/bin/env python3
"""Relay throughput on loopback: the real relay process (``wgsigd relay``) beside a direct path.

    python3 bench/relay.py [--seconds 5] [--rates 20000,40000,60000,80000,0] [--size 1424]

A sender at 127.0.0.2 (peer A) sends WireGuard-shaped data datagrams (type 4, ``--size`` bytes:
1,424 = 32 + 16 * 87, the WireGuard size nearest 1,420, which is no valid one) to A's relay port;
the relay forwards them out of B's port to a sink at 127.0.0.3 (peer B), which latched first.
The allocation is handed to the relay as wgsigd does, through ``relay-allocations`` in the state
directory (its rate limits set out of the way). Per offered rate (0 = as fast as the sender can),
the same sender and sink run once directly (sender -> sink) and once through the relay; printed:
datagrams/s and Mbit/s delivered, the share lost, and the relay's CPU time (user + system) per
forwarded datagram, what that makes one core's capacity (1 / CPU time per datagram), and the share
of its core it used. The relay is pinned to CPU 0, sender and
sink to CPU 1 (``taskset``), so "one core" is the relay's. Figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import free_udp_range  # noqa: E402
from wgsig import relayfile  # noqa: E402
from wgsig.relayfile import FILE_NAME  # noqa: E402

A_IP, B_IP = "127.0.0.2", "127.0.0.3"


def pin(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
        if os.geteuid() == 0:
            os.nice(-20)  # ahead of whatever else the shared machine runs (as bench/run.py does)
    except OSError:
        pass


def sink(port: int, relay: tuple[str, int] | None, stop: Any, result: Any) -> None:
    pin(1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((B_IP, port))
    if relay is not None:
        sock.sendto(bytes((4, 0, 0, 0)) + bytes(28), relay)  # latch B at the relay
    sock.settimeout(0.1)
    result.put("ready")
    buffer = bytearray(2048)
    count = 0
    while not stop.is_set():
        try:
            sock.recv_into(buffer)
        except TimeoutError:
            continue
        count += 1
    result.put(count)


def send(target: tuple[str, int], size: int, rate: float, seconds: float) -> int:
    pin(1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((A_IP, 0))
    data = bytes((4, 0, 0, 0)) + os.urandom(size - 4)
    sendto, clock = sock.sendto, time.monotonic
    start = clock()
    end = start + seconds
    sent = 0
    burst = 32
    while True:
        now = clock()
        if now >= end:
            break
        if rate and sent > (now - start) * rate:
            time.sleep(0.0005)  # not a busy wait: the sink shares this CPU
            continue
        for _ in range(burst):
            try:
                sendto(data, target)
            except OSError:
                continue
            sent += 1
    sock.close()
    return sent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one(target: tuple[str, int], sink_port: int, relay: tuple[str, int] | None, size: int, rate: float,
        seconds: float, relay_pid: int | None) -> dict[str, float]:
    queue: Any = multiprocessing.Queue()
    stop = multiprocessing.Event()
    receiver = multiprocessing.Process(target=sink, args=(sink_port, relay, stop, queue))
    receiver.start()
    assert queue.get(timeout=10) == "ready"
    if relay is not None:
        # A's first datagram latches A (nothing is forwarded before B latched: B did, just now).
        time.sleep(0.2)
    cpu0 = cpu_seconds(relay_pid) if relay_pid else 0.0
    wall0 = time.monotonic()
    sent = send(target, size, rate, seconds)
    time.sleep(0.5)  # what is still queued at the relay and the sink
    stop.set()
    count = queue.get(timeout=20)
    wall = time.monotonic() - wall0
    cpu = (cpu_seconds(relay_pid) - cpu0) if relay_pid else 0.0
    receiver.join()
    delivered = count / seconds
    return {
        "sent": sent, "received": count, "dgrams_s": delivered, "mbit_s": delivered * size * 8 / 1e6,
        "lost": 1 - count / sent if sent else 0.0, "cpu_us": cpu / count * 1e6 if count and relay_pid else 0.0,
        "cpu_share": cpu / wall if relay_pid else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="20000,40000,60000,80000,0", help="offered datagrams/s; 0 = flat out")
    parser.add_argument("--size", type=int, default=1424)
    parser.add_argument("--python", default=sys.executable, help="interpreter of the relay process")
    args = parser.parse_args()
    if (args.size - 32) % 16:
        parser.error("--size must be 32 + 16k (a WireGuard data message)")
    low = free_udp_range(3)
    port_a, port_b, direct_port = low, low + 1, low + 2
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        config = Path(tmp) / "wgsigd.toml"
        config.write_text(
            f'state_directory = "{state}"\n[group.g]\nid = 0\nsecret_file = "/nonexistent"\n'
            f'[relay]\naddress = "127.0.0.1"\nlisten = "127.0.0.1"\nports = "{port_a}-{port_b}"\n'
            "rate = 1e11\nburst = 100000000000\nglobal_rate = 1e12\nglobal_burst = 1000000000000\n"
        )
        lease = relayfile.HEADER + f"\n0 {port_a} {A_IP} {port_b} {B_IP} {time.time() + 3600:.3f}\n"
        (state / FILE_NAME).write_text(lease)
        log = Path(tmp) / "relay.log"
        with log.open("w") as out:
            relay = subprocess.Popen(
                [*(["nice", "-n", "-20"] if os.geteuid() == 0 else []), "taskset", "-c", "0", args.python, "-m",
                 "wgsigd", "relay", "--config", str(config)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )
        try:
            for _ in range(100):
                if "relaying 1 allocations" in log.read_text():
                    break
                time.sleep(0.05)
            else:
                print(log.read_text(), file=sys.stderr)
                return 1
            print(f"{args.size}-byte datagrams, {args.seconds:g} s per run; relay pinned to CPU 0, sender and sink"
                  " to CPU 1")
            print("| offered/s | path | delivered/s | Mbit/s | lost | relay CPU us/dgram | capacity/s"
                  " | relay CPU share |")
            print("|---:|---|---:|---:|---:|---:|---:|---:|")
            for rate in [float(r) for r in args.rates.split(",")]:
                offered = f"{rate:,.0f}" if rate else "flat out"
                d = one((B_IP, direct_port), direct_port, None, args.size, rate, args.seconds, None)
                print(f"| {offered} | direct | {d['dgrams_s']:,.0f} | {d['mbit_s']:,.0f} | {d['lost']:.1%}"
                      " | — | — | — |", flush=True)
                r = one(("127.0.0.1", port_a), 0, ("127.0.0.1", port_b), args.size, rate, args.seconds, relay.pid)
                print(f"| {offered} | relay | {r['dgrams_s']:,.0f} | {r['mbit_s']:,.0f} | {r['lost']:.1%} |"
                      f" {r['cpu_us']:.1f} | {1e6 / r['cpu_us'] if r['cpu_us'] else 0:,.0f} | {r['cpu_share']:.0%} |",
                      flush=True)
        finally:
            relay.terminate()
            relay.wait(timeout=10)
        print(log.read_text().strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
