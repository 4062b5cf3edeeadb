"""Instructions per request of wgsigd's answering pass, counted by callgrind (issue 16).

Timings on this project's shared 2-core machine scatter by 20-30 % from one run to the next;
instruction counts repeat to within a fraction of a percent.  This runs the real daemon's pass
(``Daemon._answer_queued``: recvmmsg, the core, the event log, sendmmsg) in one process over real
loopback sockets, 256 requests at a time from 32 client sockets, every request a new peer of one
group of 10, with ``answer_rate = 0`` (as ``bench/run.py``'s ``plain`` and ``encrypted``: the
shipped per-source budget would cap a one-address load), under ``valgrind --tool=callgrind``
with 2,000 and then 12,000 requests: the difference over 10,000 is the count per request, start-up
and imports cancelled out.  The clients' ``send`` calls are counted too (the same in every tree);
the kernel's work is not (``bench/run.py``'s ``sys us`` column shows it).

    /usr/bin/python3 bench/pass_instructions.py [--compare DIR] [--encrypted]

``--compare DIR`` counts another source tree too (e.g. ``git archive HEAD~1 | tar -x -C DIR``).
Needs valgrind; about a minute per tree and mode.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"
SMALL, LARGE = 2000, 12000
SECRET = bytes(range(32))

# Run inside callgrind: the daemon's pass over the pickled requests, the wall clock fixed at NOW.
PASS = r"""
import pickle, socket, sys, tempfile, time, types
from pathlib import Path
tree, path, count, now, encrypt = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
sys.path.insert(0, tree)
import wgsigd.daemon as daemon_module
from wgsig import hmac256
from wgsigd.config import load_config
if hasattr(hmac256, "prefer_openssl"):
    hmac256.prefer_openssl()  # as wgsigd.cli does
requests = pickle.loads(Path(path).read_bytes())[:count]
daemon_module.time = types.SimpleNamespace(time=lambda: now, monotonic=time.monotonic)
tmp = Path(tempfile.mkdtemp())
(tmp / "g.key").write_bytes(bytes(range(32)))
(tmp / "g.key").chmod(0o600)
(tmp / "c.toml").write_text(
    f'port = 1\nanswer_rate = 0\n[group.g]\nid = 1\nmax_records = 10\nencrypt = {str(encrypt).lower()}\n'
    f'secret_file = "{tmp}/g.key"\n')
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
server.bind(("127.0.0.1", 0))
clients = []
for _ in range(32):
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # answers are dropped unread
    client.connect(server.getsockname())
    clients.append(client)
d = daemon_module.Daemon(load_config(str(tmp / "c.toml")), server)
server.setblocking(False)
handled = 0
for start in range(0, count, 256):
    for i, request in enumerate(requests[start : start + 256]):
        clients[i % 32].send(request)
    handled += d._answer_queued(256)
if handled != count or d.server.answered != count:
    sys.exit(f"handled {handled}, answered {d.server.answered} of {count}")
"""


def write_requests(path: Path, encrypt: bool, now: int) -> None:
    sys.path.insert(0, str(REPO))
    from wgsig.envelope import Envelope, envelope_key
    from wgsig.label import encode_label
    from wgsig.wire import encode_request

    envelope = Envelope(envelope_key(SECRET))
    requests = []
    for i in range(LARGE):
        request = encode_request(os.urandom(32), encode_label(now, i + 1), 0, 1, SECRET)
        requests.append(envelope.seal(request, 1, os.urandom(12)) if encrypt else request)
    path.write_bytes(pickle.dumps(requests))


def instructions(tree: Path, path: Path, count: int, now: int, encrypt: bool) -> int:
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", PYTHON, "-c", PASS,
         str(tree), str(path), str(count), str(now), "1" if encrypt else "0"],
        capture_output=True, text=True, check=False,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{tree}: the pass failed: {result.stderr.strip().splitlines()[-1:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=Path, help="another source tree to count")
    parser.add_argument("--encrypted", action="store_true", help="an encrypted group")
    args = parser.parse_args()
    trees = [REPO] + ([args.compare.resolve()] if args.compare else [])
    now = int(time.time())
    with tempfile.TemporaryDirectory(prefix="wgsig-pass-") as tmp:
        path = Path(tmp) / "requests.pickle"
        write_requests(path, args.encrypted, now)
        for tree in trees:
            for source in (tree / "wgsig", tree / "wgsigd"):
                subprocess.run([PYTHON, "-m", "compileall", "-q", str(source)], check=True)
            small = instructions(tree, path, SMALL, now, args.encrypted)
            large = instructions(tree, path, LARGE, now, args.encrypted)
            per_request = (large - small) / (LARGE - SMALL)
            kind = "encrypted" if args.encrypted else "plain"
            print(f"{tree}: {kind}, {per_request:,.0f} instructions per request", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
