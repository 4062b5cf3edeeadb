#!/usr/bin/env python3
"""Long fuzz run of the server's datagram path; prints figures.

    python3 bench/fuzz_runner.py [--inputs 1000000] [--jobs 2] [--seed N]

Starts from valid requests (plain groups with two secrets, an encrypted
group; every CLFLG; labels in and out of the window) and mutates them: bit
flips, byte writes, truncation, extension, insertion, deletion, splicing two
requests, and random datagrams.  For each input: no exception may escape, and
an input whose authenticated bytes differ from every valid request (all 82
bytes of a plain request, the first 98 of an encrypted one) must get no answer
and change no table.  Exits 1 if any invariant broke.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wgsig.client import GroupCredentials, build_request
from wgsig.envelope import HEADER_SIZE
from wgsig.label import encode_label
from wgsig.ratelimit import AnswerLimiter, Limits, ReplayCache
from wgsig.server import GroupConfig, Server
from wgsig.wire import REQUEST_SIZE

SECRET = bytes(range(32))
OLD_SECRET = bytes(range(64, 96))
NOW = 1_700_000_000
PLAIN, ENCRYPTED = 0x01020304, 7
SOURCES = [("192.0.2.1", 5555), ("::ffff:198.51.100.2", 1), ("2001:db8::1", 3), ("10.9.8.7", 65535)]


def make_server() -> Server:
    groups = [
        GroupConfig(PLAIN, (SECRET, OLD_SECRET), max_records=40),
        GroupConfig(ENCRYPTED, (SECRET,), encrypt=True, max_records=40),
        GroupConfig(0, (OLD_SECRET,), max_records=10),
    ]
    server = Server(groups, random_bytes=os.urandom, limits=Limits(AnswerLimiter(1e9, 10**9), 1200, ReplayCache(30)))
    for i in range(1, 30):
        creds = GroupCredentials(PLAIN, SECRET)
        server.receive_datagram(build_request(creds, bytes([i]) * 32, encode_label(NOW, i), 0, os.urandom),
                                (f"10.0.0.{i}", 1000 + i), NOW)
    return server


def seeds(rng: random.Random) -> list[tuple[bytes, int]]:
    """Valid requests: (datagram, group)."""
    out = []
    for group, secret in [(PLAIN, SECRET), (PLAIN, OLD_SECRET), (ENCRYPTED, SECRET), (0, OLD_SECRET)]:
        creds = GroupCredentials(group, secret, encrypt=group == ENCRYPTED)
        for clflg in range(4):
            for offset in (0, 30, -30, 31, 5000):
                for peer in (bytes([3]) * 32, bytes([200]) * 32, bytes(32)):
                    label = encode_label(NOW + offset, rng.randrange(10**9))
                    out.append((build_request(creds, peer, label, clflg, rng.randbytes), group))
    return out


def authentic(data: bytes, group: int) -> bytes:
    return data[: HEADER_SIZE + REQUEST_SIZE] if group == ENCRYPTED else data


def mutate(rng: random.Random, pool: list[tuple[bytes, int]]) -> tuple[bytes, bytes, int]:
    original, group = pool[rng.randrange(len(pool))]
    kind = rng.random()
    if kind < 0.02:
        return original, rng.randbytes(rng.choice([0, 1, 81, 82, 83, 97, 98, 99, rng.randrange(2048)])), group
    data = bytearray(original)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(7)
        if op == 0 and data:
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:
            del data[rng.randrange(len(data) + 1) :]
        elif op == 3:
            data += rng.randbytes(rng.randrange(1, 600))
        elif op == 4:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randrange(1, 9))
        elif op == 5 and data:
            at = rng.randrange(len(data))
            del data[at : at + rng.randrange(1, 9)]
        elif op == 6:
            other = pool[rng.randrange(len(pool))][0]
            cut = rng.randrange(min(len(data), len(other)) + 1)
            data = bytearray(bytes(data[:cut]) + other[cut:])
    return original, bytes(data), group


def run(job: int, inputs: int, seed: int, broken: bool = False) -> dict[str, float]:
    rng = random.Random(seed * 1000 + job)
    server = make_server()
    if broken:  # --self-test: a server that answers everything; the runner must report FAIL
        receive = server.receive_datagram
        server.receive_datagram = lambda d, s, n: (receive(d, s, n)[0] or [b"!"], None)  # type: ignore[assignment]
    pool = seeds(rng)
    valid = {authentic(d, g) for d, g in pool}
    counts = {"inputs": 0, "exceptions": 0, "invalid_answered": 0, "invalid_changed": 0, "authentic": 0,
              "answered": 0}
    start = time.perf_counter()
    for i in range(inputs):
        _original, data, group = mutate(rng, pool)
        source = SOURCES[i & 3]
        tables = server.record_count()
        server.dirty = False
        try:
            answer, _event = server.receive_datagram(data, source, NOW + (i & 7))
        except Exception:  # the runner exists to catch anything
            counts["exceptions"] += 1
            if counts["exceptions"] <= 3:
                print(f"exception on {data.hex()} from {source}:\n{traceback.format_exc()}", file=sys.stderr)
            continue
        counts["answered"] += bool(answer)
        reason = getattr(_event, "reason", None)
        key = f"reason {reason.name}" if reason is not None else "answered/other"
        counts[key] = counts.get(key, 0) + 1
        if authentic(data, group) in valid or any(authentic(data, g) in valid for g in (PLAIN, ENCRYPTED)):
            counts["authentic"] += 1
            continue
        if answer:
            counts["invalid_answered"] += 1
        if server.dirty or server.record_count() != tables:
            counts["invalid_changed"] += 1
    counts["inputs"] = inputs
    counts["seconds"] = time.perf_counter() - start
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--self-test", action="store_true", help="fuzz a deliberately broken server: must FAIL")
    args = parser.parse_args()
    per_job = -(-args.inputs // args.jobs)
    wall = time.perf_counter()
    with multiprocessing.Pool(args.jobs) as pool:
        results = pool.starmap(run, [(job, per_job, args.seed, args.self_test) for job in range(args.jobs)])
    wall = time.perf_counter() - wall
    total = {key: sum(r.get(key, 0) for r in results) for key in sorted({k for r in results for k in r})}
    print(f"fuzz seed {args.seed}: {int(total['inputs'])} inputs in {wall:.1f} s on {args.jobs} processes"
          f" ({total['inputs'] / wall:,.0f} inputs/s; {total['inputs'] / total['seconds'] * args.jobs:,.0f}/s summed"
          f" over processes)")
    print(f"  exceptions escaped:                    {int(total['exceptions'])}")
    print(f"  unauthenticated inputs answered:       {int(total['invalid_answered'])}")
    print(f"  unauthenticated inputs changing tables: {int(total['invalid_changed'])}")
    print(f"  still-authentic inputs (pad-only changes or unmutated): {int(total['authentic'])};"
          f" inputs answered in all: {int(total['answered'])}")
    reasons = ", ".join(f"{k.removeprefix('reason ')} {int(v)}" for k, v in total.items() if k.startswith("reason"))
    print(f"  rejections by reason: {reasons}")
    bad = total["exceptions"] + total["invalid_answered"] + total["invalid_changed"]
    print("RESULT:", "PASS" if not bad else "FAIL")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
