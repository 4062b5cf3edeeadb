"""An idle kernel-mode run (every peer healthy, nothing to write) imports only what it uses
(issue 16): no pyroute2, no cryptography for a plain group, no print mode, no metrics code where
no metrics are written, no port mapping, no argparse, no dataclasses; and it sends the server
nothing beyond its registration (the polling for a quick tunnel stays off).

Each run is a fresh interpreter started as systemd starts wgsigc (``wgsigc --config FILE``),
whose ``sys.modules`` the probe prints at the end. FAKE: the kernel -- the WireGuard device read
(``netlink.device_messages``) and the link lookup are replaced before ``wgsigc.cli`` runs; the
host's addresses are read for real (rtnetlink). Real: the configuration file, a wgsigd
subprocess on loopback that the peers registered with, UDP registration, the plan, the run record.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import write_secret
from tests.test_wgsigc_register import ROOT, SECRET, free_port, server  # noqa: F401  (the wgsigd fixture)
from tests.test_wgsigc_vanish import OWN, PEERS, registered  # noqa: F401  (fixture)

# What an idle run of an unencrypted group without metrics or port mapping must not load.
NOT_IMPORTED = (
    "pyroute2",  # reads use the stdlib reader; pyroute2 only for writes
    "cryptography",  # encrypted groups only
    "wgsigc.printmode", "wgsigc.skeleton",  # the C client's mode
    "wgsigc.metricsfile", "wgsig.metrics",  # only where a metrics directory is in use
    "wgsigc.portmapping", "wgsig.portmap",  # port_mapping = "off"
    "wgsigc.status",
    "argparse",  # the unit's command line is read without it
    "dataclasses", "inspect",  # a dataclass costs a compile per method at every start
    "logging", "systemd",
    "importlib.util",  # wgsigc.pyroute2load: writes only
    "threading", "encodings.idna",  # name resolution: the servers here are addresses
    "tempfile", "shutil",  # the run record is written without them (wgsig.host.atomicfile)
    "hmac", "hashlib", "_hashlib",  # OpenSSL's libcrypto: the tags use the built-in SHA-256 (wgsig.hmac256)
    "tomllib",  # the configuration was parsed by an earlier run (the cache in the state directory)
    "typing",  # annotations only (TYPE_CHECKING = False), X1's tuples from collections
    "socket", "selectors",  # the C module's sockets and plain integer constants (wgsig.host.lightsocket)
    "contextlib",  # a temporary file is removed with try/except (wgsig.host.atomicfile.remove_temporary)
    "pathlib", "urllib", "fnmatch",  # paths as strings in wgsigc's configuration and run record
    "json", "re", "base64",  # the run record through json's C codec (wgsig.host.lightjson); keys through binascii
    "enum",  # wgsigc.plan.Action and wgsig.x1.ItemType are plain classes
    "ipaddress", "functools",  # addresses through wgsig.ipaddr
    "collections",  # annotations' abstract classes only for type checkers; X1's tuples written out
)

PROBE = """
import sys, time
from wgsigc import netlink
HANDSHAKE = int(sys.argv[3])

def device_messages(name):  # FAKE: the kernel's dump of wg0 (the stdlib reader's form)
    peers = [{"public_key": key, "allowed_ips": ips, "endpoint": {"addr": "127.0.0.2", "port": 40000 + i},
              "keepalive": 25, "latest_handshake": {"tv_sec": HANDSHAKE and int(time.time()), "tv_nsec": 0}}
             for i, (key, ips) in enumerate(PEERS.items())]
    return [{"public_key": OWN, "listen_port": int(sys.argv[2]), "fwmark": 0, "peers": peers}]

netlink.device_messages = device_messages
netlink.link_exists = lambda name: name == "wg0"
from wgsigc.cli import main
code = main(["--config", sys.argv[1]])
print("EXIT", code)
print("MODULES", " ".join(sorted(sys.modules)))
"""


def probe_run(tmp_path: Path, port: int, handshake: bool,
              top: str = 'metrics_directory = ""\n', listen_port: int | None = None) -> tuple[int, set[str], str]:
    secret = write_secret(tmp_path / "secret", SECRET)
    config = tmp_path / "wgsigc.toml"
    config.write_text(
        f'{top}state_directory = "{tmp_path}/state"\n[interface.wg0]\nservers = ["127.0.0.1:{port}"]\n'
        f'secret_file = "{secret}"\ntimeout = 0.5\n'
    )
    code = PROBE.replace("PEERS.items()", repr(list(PEERS.items()))).replace("OWN,", f"{OWN!r},")
    (tmp_path / "sd").mkdir(mode=0o700, exist_ok=True)  # wgsigc.service's StateDirectory=: the parse cache's
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", STATE_DIRECTORY=str(tmp_path / "sd"))
    done = subprocess.run([sys.executable, "-c", code, str(config), str(listen_port or free_port()),
                           str(int(handshake))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("EXIT ", "MODULES ")))
    assert "MODULES" in lines, done.stdout + done.stderr
    return int(lines["EXIT"]), set(lines["MODULES"].split()), done.stdout + done.stderr


def loaded(modules: set[str], name: str) -> list[str]:
    return sorted(m for m in modules if m == name or m.startswith(name + "."))


def test_an_idle_run_imports_nothing_it_does_not_use(tmp_path: Path, registered: int) -> None:  # noqa: F811
    listen_port = free_port()  # the same in both runs (a new port would be written)
    code, first, output = probe_run(tmp_path, registered, handshake=True, listen_port=listen_port)
    assert code == 0 and "tomllib" in first, output  # the first run parses the file and fills the cache
    code, modules, output = probe_run(tmp_path, registered, handshake=True, listen_port=listen_port)
    assert code == 0, output
    assert "healthy" in output and "0 peers updated, 2 healthy" in output, output
    assert "wgsig.wgnetlink" in modules and "wgsigc.kernelmode" in modules  # the probe sees the run's imports
    unwanted = {name: loaded(modules, name) for name in NOT_IMPORTED if loaded(modules, name)}
    assert not unwanted, f"an idle run imported {unwanted}"


def test_a_run_that_writes_loads_pyroute2(tmp_path: Path, registered: int) -> None:  # noqa: F811
    """The counterpart (and the proof that the probe sees imports): peers without a handshake get
    their endpoints written, through pyroute2 (here the real one, which finds no WireGuard module)."""
    pytest.importorskip("pyroute2")
    _code, modules, output = probe_run(tmp_path, registered, handshake=False)
    assert "pyroute2.netlink.generic.wireguard" in modules, output
    assert "pyroute2.ndb.main" not in modules, "pyroute2's package __init__ ran"


def test_metrics_code_loads_only_where_metrics_are_written(tmp_path: Path, registered: int) -> None:  # noqa: F811
    absent = tmp_path / "no-such-directory"
    _code, modules, output = probe_run(tmp_path, registered, handshake=True, top="")  # the default directory
    if not Path("/var/lib/prometheus/node-exporter").is_dir():
        assert not loaded(modules, "wgsig.metrics"), output
    directory = tmp_path / "metrics"
    directory.mkdir()
    _code, modules, output = probe_run(tmp_path, registered, handshake=True, top=f'metrics_directory = "{directory}"\n')
    assert "wgsigc.metricsfile" in modules and (directory / "wgsigc-wg0.prom").exists(), output
    assert not absent.exists()


ARGVS = [
    [], ["--config", "/etc/x.toml"], ["--config=/etc/x.toml"], ["--dry-run"], ["--check", "--config", "a"],
    ["--config", "a", "--interface", "wg1", "--dry-run"], ["--interface=wg0", "--config=b", "--config=c"],
    ["--config"], ["--config", "--dry-run"], ["--config="], ["--config=-x"], ["--conf", "a"], ["-h"], ["--help"],
    ["--config", "a", "extra"], ["s", "1", "k", "f", "2"], ["--interface", "-1"], ["--", "--config"],
    ["--dry-run", "--dry-run"], ["--interface", "wg0", "--encrypt"],
]


@pytest.mark.parametrize("argv", ARGVS)
def test_the_units_command_line_reads_as_argparse_reads_it(argv: list[str]) -> None:
    """wgsigc.cli reads kernel mode's plain command lines without argparse: whatever it reads
    itself, argparse reads alike; anything else is left to argparse (None)."""
    from wgsigc.cli import kernel_mode_args, parser

    fast = kernel_mode_args(argv)
    if fast is None:
        return
    args = parser().parse_args(argv)
    assert not args.positional
    assert fast == (args.config, args.interface, args.dry_run, args.check)


def test_plain_forms_skip_argparse() -> None:
    from wgsigc.cli import kernel_mode_args

    assert kernel_mode_args(["--config", "/etc/wgsig/wgsigc.toml"]) == ("/etc/wgsig/wgsigc.toml", None, False, False)
    assert kernel_mode_args(["--interface=wg1", "--dry-run"]) == (None, "wg1", True, False)
    for other in (["-h"], ["--conf", "a"], ["a", "b", "c", "d", "e"], ["--config"], ["--config", "-v"]):
        assert kernel_mode_args(other) is None


@pytest.mark.parametrize(("host", "family"), [
    ("192.0.2.1", socket.AF_INET), ("192.0.2.1", socket.AF_UNSPEC), ("2001:db8::1", socket.AF_UNSPEC),
    ("2001:DB8:0::1", socket.AF_INET6), ("127.0.0.1", socket.AF_INET6), ("::1", socket.AF_INET),
    ("localhost", socket.AF_UNSPEC), ("fe80::1%lo", socket.AF_INET6), ("1.2.3", socket.AF_INET),
])
def test_address_literals_resolve_as_getaddrinfo_resolves_them(host: str, family: int) -> None:
    """Server addresses are answered without getaddrinfo (which loads the IDNA codec): the same
    result, or getaddrinfo's own answer where the shortcut does not apply."""
    from wgsigc import exchange

    try:
        expected = [(i[0], i[4][:2]) for i in socket.getaddrinfo(host, 1223, family, socket.SOCK_DGRAM)]
    except socket.gaierror:
        expected = None
    try:
        got = [(i[0], i[4][:2]) for i in exchange._getaddrinfo(host, 1223, family, 2.0)]
    except exchange.ExchangeError:
        got = None
    assert got == expected
