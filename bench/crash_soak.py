#!/usr/bin/env python3
"""Crash soak: kill -9 a real wgsigd at random moments under heavy registration.

    python3 bench/crash_soak.py [--kills 30] [--save-interval 1.0 0.25] [--groups 20] [--peers 50]

For each save interval: a wgsigd with a state directory serves GROUPS groups;
loopback clients register and re-register PEERS peers per group (CLFLG 0,
fresh labels) as fast as the server answers.  At a random moment the server
gets SIGKILL; the state file left behind is decoded and compared with what the
clients were answered: an update is lost when the saved record of its peer is
missing or has an older label.  The server is restarted on the same state and
must load it (its log says how many records) before the next round.

Prints, per save interval: updates answered, updates lost, lost updates older
than the save interval (these would be bugs), the age of the oldest lost
update at the kill, records the restarted server loaded versus the file, and
corrupt or unreadable state files (must be 0).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import select
import signal
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
from wgsig.statefile import StateFileError, decode_state  # noqa: E402
from wgsig.wire import decode_record  # noqa: E402

SECRET = bytes(range(32))
SOCKETS = 8


class Soak:
    def __init__(self, tmp: Path, groups: int, peers: int, save_interval: float) -> None:
        self.tmp = tmp
        self.groups = list(range(1, groups + 1))
        self.peers = peers
        self.state = tmp / "state"
        (tmp / "secret").write_bytes(SECRET)
        (tmp / "secret").chmod(0o600)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        tables = "".join(f'[group.g{g}]\nid = {g}\nsecret_file = "{tmp / "secret"}"\nmax_records = {peers}\n'
                         for g in self.groups)
        (tmp / "wgsigd.toml").write_text(
            f'listen = "127.0.0.1"\nport = {self.port}\nstate_directory = "{self.state}"\n'
            f"save_interval = {save_interval}\nanswer_rate = 0\n{tables}"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_index = 0

    def start(self) -> int:
        """Start wgsigd; the number of records it says it loaded."""
        self.log_index += 1
        log = self.tmp / f"wgsigd.{self.log_index}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wgsigd", "--config", str(self.tmp / "wgsigd.toml")],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            match = re.search(r"loaded (\d+) records", log.read_text())
            if match and "serving on" in log.read_text():
                return int(match.group(1))
            if "starting empty" in log.read_text() and "serving on" in log.read_text():
                return 0
            if self.proc.poll() is not None:
                raise SystemExit(f"wgsigd exited: {log.read_text()}")
            time.sleep(0.02)
        raise SystemExit(f"wgsigd did not start: {log.read_text()}")

    def log_text(self) -> str:
        return (self.tmp / f"wgsigd.{self.log_index}.log").read_text()

    def register_until(self, seconds: float, rng: random.Random) -> tuple[dict[tuple[int, bytes], bytes], dict[tuple[int, bytes], float], int]:  # noqa: E501
        """Register for ``seconds`` then kill -9; (answered labels, answer times, kill time)."""
        socks = []
        for _ in range(SOCKETS):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(("127.0.0.1", self.port))
            s.setblocking(False)
            socks.append(s)
        answered: dict[tuple[int, bytes], bytes] = {}
        answered_at: dict[tuple[int, bytes], float] = {}
        pending: dict[socket.socket, tuple[int, bytes, bytes, AnswerCollector, float]] = {}

        def send(s: socket.socket) -> None:
            group = rng.choice(self.groups)
            peer = bytes([0x50, group]) + rng.randrange(self.peers).to_bytes(2, "big") + bytes(28)
            creds = GroupCredentials(group, SECRET)
            label = label_from_ns(time.time_ns())
            s.send(build_request(creds, peer, label, 0, os.urandom))
            pending[s] = (group, peer, label, AnswerCollector(creds), time.monotonic())

        for s in socks:
            send(s)
        kill_at = time.monotonic() + seconds
        while time.monotonic() < kill_at:
            ready = select.select(socks, [], [], 0.05)[0]
            for s in ready:
                try:
                    data = s.recv(4096)
                except (BlockingIOError, ConnectionRefusedError):
                    continue
                group, peer, label, collector, _sent = pending[s]
                collector.receive_datagram(data)
                if collector.complete:
                    if label > answered.get((group, peer), b""):
                        answered[(group, peer)] = label
                        answered_at[(group, peer)] = time.monotonic()
                    send(s)
            now = time.monotonic()
            for s, (_g, _p, _l, _c, sent) in list(pending.items()):
                if now - sent > 0.5:  # lost on the way: a new request with a fresh label
                    send(s)
        assert self.proc is not None
        killed = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for s in socks:
            s.close()
        return answered, answered_at, killed  # type: ignore[return-value]


def saved_labels(path: Path) -> dict[tuple[int, bytes], bytes]:
    tables = decode_state(path.read_bytes())
    out = {}
    for group, slots in tables.items():
        for slot in slots:
            record = decode_record(slot)
            if record is not None:
                out[(group, record.peer_id)] = record.label
    return out


def soak(kills: int, save_interval: float, groups: int, peers: int, rng: random.Random) -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        run = Soak(tmp, groups, peers, save_interval)
        run.start()
        totals = dict.fromkeys(("answered", "missing", "lost", "lost_old", "load_mismatch", "corrupt", "regressed"), 0)
        oldest_lost = 0.0
        previous: dict[tuple[int, bytes], bytes] = {}
        for _ in range(kills):
            answered, answered_at, killed = run.register_until(rng.uniform(0.3, 3.0), rng)
            try:
                saved = saved_labels(run.state / "records.state") if (run.state / "records.state").exists() else {}
            except StateFileError:
                totals["corrupt"] += 1
                saved = {}
            totals["answered"] += len(answered)
            for key, label in answered.items():
                if key not in saved:
                    totals["missing"] += 1
                if saved.get(key, b"") < label:
                    totals["lost"] += 1
                    age = killed - answered_at[key]
                    oldest_lost = max(oldest_lost, age)
                    if age > save_interval + 0.25:
                        totals["lost_old"] += 1
            # What a previous run saved never goes backwards.
            totals["regressed"] += sum(1 for key, label in previous.items() if saved.get(key, b"") < label)
            previous = saved
            loaded = run.start()
            if loaded != len(saved):
                totals["load_mismatch"] += 1
            if "unusable" in run.log_text():
                totals["corrupt"] += 1
        assert run.proc is not None
        run.proc.terminate()
        run.proc.wait(10)
    print(f"save_interval {save_interval:g} s: {kills} kills -9, {totals['answered']:,} answered registrations"
          f" checked ({groups} groups x {peers} peers)")
    print(f"  updates lost at a kill: {totals['lost']:,} ({totals['lost'] / max(1, totals['answered']):.2%});"
          f" oldest lost update answered {oldest_lost:.2f} s before the kill")
    print(f"  of these, peers absent from the state altogether: {totals['missing']:,} (the rest kept an older label)")
    print(f"  lost updates older than save_interval + 0.25 s: {totals['lost_old']}")
    print(f"  saved records that went backwards after a restart: {totals['regressed']};"
          f" restarts whose loaded count differs from the file: {totals['load_mismatch']};"
          f" corrupt state files: {totals['corrupt']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--save-interval", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"crash soak, seed {args.seed}")
    for interval in args.save_interval:
        soak(args.kills, interval, args.groups, args.peers, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
