#!/usr/bin/env python3
"""wgsigd benchmarks: figures, not tests.

    /usr/bin/python3 bench/run.py                      # every scenario, 5 runs each, medians
    /usr/bin/python3 bench/run.py plain encrypted --repeat 3 --duration 3
    /usr/bin/python3 bench/run.py --python ~/.pyenv/versions/3.11.7/bin/python3
    /usr/bin/python3 bench/run.py plain encrypted --c-server /tmp/wgsig-c/plain/wgsigd \
        --c-server-encrypted /tmp/wgsig-c/enc/wgsigd    # the C server too, same run (README: building it)

Each run starts a fresh wgsigd (``-m wgsigd --config``, state directory in a
temporary directory, saving every second as configured by default) pinned to
CPU 0, and the C load generator (bench/loadgen.c, compiled here with gcc and
libcrypto) pinned to CPU 1.  Every request is a new peer, so every request
changes its group's table.  Traffic stays on 127.0.0.1.

Figures per scenario (median of the runs): answered requests/s, server CPU
time per request (user + system, from /proc), the capacity that CPU cost
implies (1 / CPU per request: what a machine with a quiet second core gets),
resident memory at the end, and the longest gap between two answers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wgsig.label import encode_label  # noqa: E402
from wgsig.statefile import encode_state  # noqa: E402
from wgsig.wire import encode_endpoint  # noqa: E402

SERVER_CPU = "0"
LOADGEN_CPU = "1"
# Top priority (as root) keeps other work on the machine from taking the benchmark's cores; real-time
# FIFO would be stronger, but its throttling (5 % of each second) shows up as 50 ms gaps.
PRIORITY = ["nice", "-n", "-20"] if os.geteuid() == 0 else []
TICKS = os.sysconf("SC_CLK_TCK")
STATE_FILE = "records.state"  # wgsigd.store.STATE_FILE


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    groups: int = 1
    max_records: int = 10
    prefill: int = 0  # records per group already in the state file at start
    encrypt: bool = False
    sockets: int = 32
    window: int = 4  # requests in flight per socket
    quiet: bool = False  # registrations not logged (log level WARNING)


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("plain", "1 group of 10 peers, unencrypted"),
        Scenario("encrypted", "1 group of 10 peers, encrypted", encrypt=True),
        Scenario("groups-10k", "10,000 groups of 10 peers (100,000 records), unencrypted", groups=10_000, prefill=10),
        Scenario("group-1000", "1 group of 1,000 peers: 100 datagrams per answer", max_records=1000, prefill=1000,
                 window=1),
        Scenario("plain-quiet", "as plain, registrations not logged", quiet=True),
        Scenario("groups-10k-quiet", "as groups-10k, registrations not logged", groups=10_000, prefill=10,
                 quiet=True),
        Scenario("encrypted-quiet", "as encrypted, registrations not logged", encrypt=True, quiet=True),
    ]
}
DEFAULT_SCENARIOS = [
    "plain", "encrypted", "groups-10k", "group-1000", "plain-quiet", "encrypted-quiet", "groups-10k-quiet",
]

# Starts wgsigd's own command line with INFO records disabled before anything is logged.
QUIET_LAUNCHER = "import logging, sys; logging.disable(logging.INFO); from wgsigd.cli import main; sys.exit(main())"


def unit_environment() -> dict[str, str]:
    """The Environment= settings of the shipped wgsigd.service: the benchmark runs wgsigd as systemd does."""
    env = {}
    for line in (REPO / "packaging" / "systemd" / "wgsigd.service").read_text().splitlines():
        if line.startswith("Environment="):
            for assignment in line.removeprefix("Environment=").split():
                key, _, value = assignment.partition("=")
                env[key] = value
    return env


def build_loadgen(workdir: Path) -> Path:
    binary = workdir / "loadgen"
    source = REPO / "bench" / "loadgen.c"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source), "-lcrypto"], check=True)
    return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def udp_port_bound(port: int) -> bool:
    needle = f":{port:04X} "
    with open("/proc/net/udp") as f:
        return any(needle in line.split("00000000:0000")[0] for line in f)


def prefill_state(path: Path, scenario: Scenario) -> None:
    """A state file whose records wgsigd loads at start: groups already full."""
    if not scenario.prefill:
        return
    old = int(time.time()) - 600
    tables = {}
    for g in range(scenario.groups):
        slots = []
        for i in range(scenario.prefill):
            peer = b"\xfe" + (g * scenario.prefill + i).to_bytes(8, "big") * 3 + bytes(7)
            endpoint = encode_endpoint(bytes([127, 0, 0, 1]), 20000 + i % 40000)
            slots.append(peer + endpoint + encode_label(old, i))
        tables[g + 1] = b"".join(slots)
    path.mkdir(parents=True, exist_ok=True)
    (path / STATE_FILE).write_bytes(encode_state(tables))


def prepare_server(workdir: Path, scenario: Scenario) -> tuple[bytes, Path, int, Path]:
    """A fresh secret, a free port, the config and the prefilled state of one run: (secret, its file, port, config)."""
    secret = os.urandom(32)
    secret_file = workdir / "secret"
    secret_file.write_bytes(secret)
    secret_file.chmod(0o600)
    port = free_port()
    config = write_config(workdir, scenario, port, secret_file)
    prefill_state(workdir / "state", scenario)
    return secret, secret_file, port, config


def write_config(workdir: Path, scenario: Scenario, port: int, secret_file: Path) -> Path:
    lines = [
        'listen = "127.0.0.1"',
        f"port = {port}",
        f'state_directory = "{workdir / "state"}"',
        "answer_rate = 0  # the per-source limit would cap a one-address load generator",
    ]
    for g in range(1, scenario.groups + 1):
        lines += [f"[group.g{g}]", f"id = {g}", f'secret_file = "{secret_file}"']
        lines.append(f"max_records = {scenario.max_records}")
        if scenario.encrypt:
            lines.append("encrypt = true")
    config = workdir / "wgsigd.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS  # utime, stime


def memory_mb(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def pinned(cpu: str) -> list[str]:
    return [*PRIORITY, "taskset", "-c", cpu]


def one_run(python: str, loadgen: Path, scenario: Scenario, duration: float, warmup: float,
            server_env: dict[str, str], c_server: Path | None = None) -> dict[str, float]:
    """One run against a fresh wgsigd, or against the C server binary ``c_server`` (same pinning,
    priority, load generator and secret; it takes ``SECRET_FILE PORT`` and serves one group)."""
    with tempfile.TemporaryDirectory(prefix="wgsig-bench-") as tmp:
        workdir = Path(tmp)
        secret, secret_file, port, config = prepare_server(workdir, scenario)
        if c_server is not None:
            argv = [str(c_server), str(secret_file), str(port)]
            env = dict(os.environ)
        else:
            command = [python, "-c", QUIET_LAUNCHER] if scenario.quiet else [python, "-m", "wgsigd"]
            argv = [*command, "--config", str(config)]
            env = {**os.environ, **server_env, "PYTHONPATH": str(REPO)}
        server = subprocess.Popen(
            [*pinned(SERVER_CPU), *argv], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not udp_port_bound(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} did not start (exit code {server.poll()})")
                time.sleep(0.02)
            rate_cap = 60_000 if scenario.max_records >= 1000 else 250_000
            generator = subprocess.Popen(
                [*pinned(LOADGEN_CPU), str(loadgen), "--port", str(port), "--secret-hex", secret.hex(),
                 "--groups", str(scenario.groups), "--group-base", "1", "--duration", str(duration),
                 "--warmup", str(warmup), "--sockets", str(scenario.sockets), "--window", str(scenario.window),
                 "--max-rate", str(rate_cap)] + (["--encrypt"] if scenario.encrypt else []),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            assert generator.stderr is not None and generator.stdout is not None
            line = generator.stderr.readline()
            user_start, system_start = cpu_seconds(server.pid)
            load_start = os.getloadavg()[0]
            if line.strip() != "MEASURE":
                raise RuntimeError(f"load generator: {line.strip()} {generator.stderr.read()}")
            output = generator.stdout.read()
            generator.wait()
            user_end, system_end = cpu_seconds(server.pid)
            system = system_end - system_start
            cpu = user_end - user_start + system
            rss, hwm = memory_mb(server.pid)
            result = json.loads(output)
            saved = (workdir / "state" / STATE_FILE).exists()
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    answers = result["answers"]
    if not result["verified"]:
        raise RuntimeError("the first answer did not authenticate")
    return {
        "answers_per_s": result["answers_per_s"],
        "datagrams_per_s": result["datagrams_per_s"],
        "cpu_us_per_request": cpu / answers * 1e6 if answers else float("nan"),
        "system_us_per_request": system / answers * 1e6 if answers else float("nan"),
        "cpu_share": cpu / result["seconds"],
        "longest_gap_ms": result["longest_gap_ms"],
        "rss_mb": rss,
        "peak_rss_mb": hwm,
        "lost": result["lost"],
        "load": load_start,
        "saved": float(saved),
    }


MIN_CPU_SHARE = 0.85  # below this, something else ran on the server's core: the run does not count
ATTEMPTS = 4


def undisturbed_run(python: str, loadgen: Path, scenario: Scenario, duration: float, warmup: float,
                    server_env: dict[str, str], c_server: Path | None = None) -> dict[str, float]:
    """A run in which the server had its core to itself, or the last of ATTEMPTS tries (flagged)."""
    for attempt in range(ATTEMPTS):
        result = one_run(python, loadgen, scenario, duration, warmup, server_env, c_server)
        if result["cpu_share"] >= MIN_CPU_SHARE:
            break
        print(f"  ({scenario.name}: server got {result['cpu_share']:.0%} of its core, load"
              f" {os.getloadavg()[0]:.1f}: {'again' if attempt + 1 < ATTEMPTS else 'kept, flagged'})", flush=True)
        time.sleep(2)
    return result


def c_skip_reason(scenario: Scenario, plain: Path | None, encrypted: Path | None) -> str:
    """Why ``scenario`` has no C server run, or "" when it has one."""
    if scenario.groups != 1 or scenario.max_records != 10 or scenario.prefill:
        # The C server keeps one table of 10 records for every GROUP and loads no state.
        return "the C server serves one group of 10 records"
    if (encrypted if scenario.encrypt else plain) is None:
        return f"no --c-server{'-encrypted' if scenario.encrypt else ''} given"
    return ""


def c_server_for(scenario: Scenario, plain: Path | None, encrypted: Path | None) -> Path | None:
    if c_skip_reason(scenario, plain, encrypted):
        return None
    return encrypted if scenario.encrypt else plain


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(scenario: Scenario, runs: list[dict[str, float]]) -> dict[str, float]:
    figures = {key: median(runs, key) for key in runs[0]}
    figures["capacity_per_s"] = 1e6 / figures["cpu_us_per_request"]
    datagrams_per_answer = figures["datagrams_per_s"] / figures["answers_per_s"] if figures["answers_per_s"] else 1
    figures["cpu_us_per_datagram"] = figures["cpu_us_per_request"] / datagrams_per_answer
    figures["max_longest_gap_ms"] = max(r["longest_gap_ms"] for r in runs)
    return figures


def print_row(name: str, f: dict[str, float]) -> None:
    if f["cpu_share"] < MIN_CPU_SHARE:
        name += " (!)"  # disturbed: the machine was busy
    print(
        f"{name:16} {f['answers_per_s']:>10,.0f} {f['capacity_per_s']:>10,.0f} {f['cpu_us_per_request']:>9.2f}"
        f" {f['cpu_us_per_datagram']:>9.2f} {f['system_us_per_request']:>8.2f} {f['cpu_share']:>6.0%}"
        f" {f['rss_mb']:>7.1f} {f['peak_rss_mb']:>7.1f}"
        f" {f['longest_gap_ms']:>8.1f} {f['max_longest_gap_ms']:>8.1f} {f['lost']:>6.0f} {f['load']:>5.1f}",
        flush=True,
    )


HEADER = (
    f"{'scenario':16} {'answers/s':>10} {'capacity':>10} {'cpu us/req':>9} {'us/dgram':>9} {'sys us':>8} {'cpu':>6}"
    f" {'RSS MB':>7} {'peak MB':>7} {'gap ms':>8} {'max gap':>8} {'lost':>6} {'load':>5}"
)


def wgsigc_run(python: str, runs: int, server_env: dict[str, str]) -> None:
    """wgsigc print mode against a server holding 50 peers: whole run and import time."""
    with tempfile.TemporaryDirectory(prefix="wgsig-bench-") as tmp:
        workdir = Path(tmp)
        scenario = Scenario("wgsigc", "", groups=1, max_records=64, prefill=49)
        _, secret_file, port, config = prepare_server(workdir, scenario)
        server = subprocess.Popen(
            [*pinned(SERVER_CPU), python, "-m", "wgsigd", "--config", str(config)],
            cwd=REPO, env={**os.environ, **server_env, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        try:
            while not udp_port_bound(port):
                time.sleep(0.02)
            pubkey = "ZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWVmZGVhZGJlZWY="
            times = []
            peers = 0
            for _ in range(runs):
                local = (free_port() // 2) * 2  # even: registers, as a first run does
                argv = [python, "-m", "wgsigc", "--group", "1", "127.0.0.1", str(port), pubkey, str(secret_file),
                        str(local)]
                start = time.perf_counter()
                done = subprocess.run([*pinned(LOADGEN_CPU), *argv], cwd=workdir, env=env,
                                      capture_output=True, text=True)
                times.append(time.perf_counter() - start)
                if done.returncode != 0:
                    raise RuntimeError(f"wgsigc failed ({done.returncode}): {done.stderr.strip()}")
                peers = done.stdout.count("[Peer]")
            bare = []
            for _ in range(runs):
                start = time.perf_counter()
                subprocess.run([*pinned(LOADGEN_CPU), python, "-c", "pass"], check=True)
                bare.append(time.perf_counter() - start)
            imports: dict[str, dict[str, int] | None] = {}
            for module in ["pass", "wgsigc.cli", "wgsigc.printmode", "wgsigc.kernelmode", "pyroute2"]:
                code = "pass" if module == "pass" else f"import {module}"
                done = subprocess.run([python, "-X", "importtime", "-c", code], cwd=REPO, env=env,
                                      capture_output=True, text=True)
                imports[module] = import_times(done.stderr) if done.returncode == 0 else None
        finally:
            server.terminate()
            server.wait(30)
    print(f"\nwgsigc print mode, server group of 50 peers ({peers} [Peer] sections printed), {runs} runs:")
    print(f"  whole run (interpreter start-up included): median {statistics.median(times) * 1000:.0f} ms")
    print(f"  bare interpreter start-up ({python} -c pass): median {statistics.median(bare) * 1000:.0f} ms")
    baseline = imports.pop("pass") or {}
    for module, result in imports.items():
        if result is None:
            print(f"  import {module}: not importable here")
            continue
        top = {name: us for name, us in result.items() if name not in baseline and not name.startswith(">")}
        inner = sorted(((name[2:], us) for name, us in result.items() if name.startswith(">")), key=lambda x: -x[1])
        heavy = ", ".join(f"{name} {us / 1000:.1f}" for name, us in inner[:4])
        total = sum(top.values()) / 1000
        print(f"  import {module}: {total:.1f} ms (-X importtime, beyond start-up); heaviest inside (ms): {heavy}")


def import_times(text: str) -> dict[str, int]:
    """Cumulative microseconds of the top-level imports in ``-X importtime`` output, and of the
    imports they make directly (names prefixed with "> ")."""
    times = {}
    for line in text.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, cumulative, name = line.split("|")
        indent = len(name) - len(name.lstrip())
        if indent == 1:
            times[name.strip()] = int(cumulative)
        elif indent == 3:  # imported by a top-level import
            times["> " + name.strip()] = int(cumulative)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenarios", nargs="*", help=f"from {', '.join(SCENARIOS)} and wgsigc (default: all)")
    p.add_argument("--python", default="/usr/bin/python3", help="interpreter for wgsigd (default Debian's)")
    p.add_argument("--repeat", type=int, default=5, help="runs per scenario (median reported)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    p.add_argument("--no-unit-environment", action="store_true",
                   help="run wgsigd without the Environment= settings of packaging/systemd/wgsigd.service")
    p.add_argument("--c-server", type=Path, metavar="PATH",
                   help="the C server's wgsigd built without ENC_PAYLOAD: each plain one-group scenario is also"
                        " run against it, runs interleaved, and the ratio printed (see bench/README.md)")
    p.add_argument("--c-server-encrypted", type=Path, metavar="PATH",
                   help="the same for the encrypted scenarios, with the C server built with ENC_PAYLOAD"
                        " (its Makefile's default)")
    args = p.parse_args()
    for binary in (args.c_server, args.c_server_encrypted):
        if binary is not None and not os.access(binary, os.X_OK):
            p.error(f"{binary}: not an executable file")
    server_env = {} if args.no_unit_environment else unit_environment()
    names = args.scenarios or [*DEFAULT_SCENARIOS, "wgsigc"]
    unknown = [n for n in names if n not in SCENARIOS and n != "wgsigc"]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}")
    if shutil.which("gcc") is None or shutil.which("taskset") is None:
        p.error("needs gcc (and libssl-dev) and taskset")
    version = subprocess.run([args.python, "-c", "import sys, cryptography; print(sys.version.split()[0],"
                              " 'cryptography', cryptography.__version__)"], capture_output=True, text=True)
    load = os.getloadavg()[0]
    print(f"wgsigd under {args.python} ({version.stdout.strip()}), {os.cpu_count()} CPUs, load {load:.2f}")
    print(f"{args.repeat} runs per scenario, {args.duration:g} s measured after {args.warmup:g} s; medians;"
          f" server on CPU {SERVER_CPU}, load generator on CPU {LOADGEN_CPU}"
          f"{', nice -20' if PRIORITY else ''}")
    print(f"wgsigd environment: {' '.join(f'{k}={v}' for k, v in server_env.items()) or 'none added'}"
          f"{'' if args.no_unit_environment else ' (from wgsigd.service)'}\n")
    with tempfile.TemporaryDirectory(prefix="wgsig-loadgen-") as tmp:
        loadgen = build_loadgen(Path(tmp))
        header_printed = False
        for name in names:
            if name == "wgsigc":
                wgsigc_run(args.python, max(args.repeat, 5), server_env)
                continue
            scenario = SCENARIOS[name]
            c_server = c_server_for(scenario, args.c_server, args.c_server_encrypted)
            runs, c_runs = [], []
            for _ in range(args.repeat):  # interleaved, so that both see the machine's same moments
                runs.append(undisturbed_run(args.python, loadgen, scenario, args.duration, args.warmup, server_env))
                if c_server is not None:
                    c_runs.append(undisturbed_run(args.python, loadgen, scenario, args.duration, args.warmup,
                                                  server_env, c_server))
            if not header_printed:
                print(HEADER)
                header_printed = True
            figures = report(scenario, runs)
            print_row(name, figures)
            if c_runs:
                c_figures = report(scenario, c_runs)
                print_row("  C server", c_figures)
                ratios = [r["answers_per_s"] / c["answers_per_s"] for r, c in zip(runs, c_runs, strict=True)]
                print(f"  wgsigd / C: {figures['answers_per_s'] / c_figures['answers_per_s']:.2f}x answers/s"
                      f" (medians; run by run {', '.join(f'{x:.2f}' for x in ratios)}),"
                      f" {c_figures['cpu_us_per_request'] / figures['cpu_us_per_request']:.2f}x by CPU per request",
                      flush=True)
            elif args.c_server or args.c_server_encrypted:
                reason = c_skip_reason(scenario, args.c_server, args.c_server_encrypted)
                print(f"  (no C server run for {name}: {reason})")
    print("\nanswers/s: measured; capacity: 1 / (server CPU per request), what an otherwise idle machine gives;")
    print("cpu: share of its core the server got; gap: longest time without an answer (median, and worst run).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
