"""Unit tests of wgsigc's TOML configuration (real files in tmp_path, no fakes), including the
shipped example packaging/examples/wgsigc.toml, and ``wgsigc --check`` as a real process."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import env, run_wgsigc, write_secret
from wgsig import ipaddr
from wgsig.host.configfile import MetricsDirectory
from wgsigc.config import ConfigError, ServerAddress, load_config, parse_config, parse_server, state_file_for

ROOT = Path(__file__).resolve().parent.parent
KEY = base64.b64encode(bytes(range(32))).decode()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "wgsigc.toml"
    path.write_text(text)
    return str(path)


def test_full_interface_table(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
state_directory = "{tmp_path}/state"
[interface.wg0]
servers = ["sig1.example.net:1223", "192.0.2.1"]
group = 7
secret_file = "group7.key"
encrypt = true
max_age = 300
keepalive = 15
handshake_threshold = 100
handshake_timeout = 20
attempts = 2
timeout = 0.5
[[interface.wg0.peer]]
public_key = "{KEY}"
allowed_ips = ["10.0.0.8/32", "fd00::8/128"]
""")
    (wg0,) = load_config(path).interfaces
    assert [str(s) for s in wg0.servers] == ["sig1.example.net:1223", "192.0.2.1:1223"]
    assert (wg0.group, wg0.encrypt, wg0.max_age, wg0.keepalive) == (7, True, 300, 15)
    assert (wg0.handshake_threshold, wg0.handshake_timeout, wg0.attempts, wg0.timeout) == (100, 20, 2, 0.5)
    assert wg0.extra_peers == {bytes(range(32)): ("10.0.0.8/32", "fd00::8/128")}
    assert state_file_for(wg0) == str(tmp_path / "state" / "wgsigc-wg0.json")  # strings: a run loads no pathlib


def test_defaults_and_state_directory_from_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[interface.wg1]\nservers = "192.0.2.1:1223"\nsecret_file = "/etc/wgsig/g.key"\n')
    (wg1,) = load_config(path).interfaces
    assert (wg1.group, wg1.encrypt, wg1.keepalive, wg1.handshake_threshold) == (0, False, 25, 180)
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/wgsig")
    assert state_file_for(wg1) == "/var/lib/wgsig/wgsigc-wg1.json"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"no \[interface.NAME\] table"),
        ('[interface.wg0]\nsecret_file = "x"\n', "servers must be a list"),
        ('[interface.wg0]\nservers = ["a:99999"]\nsecret_file = "x"\n', "out of range"),
        ('[interface.wg0]\nservers = ["a:1"]\n', "secret_file is missing"),
        ('[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\nkeepalive = 0\n', "keepalive must be an integer"),
        ('[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\nbogus = 1\n', "unknown key 'bogus'"),
        ('[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\n[[interface.wg0.peer]]\npublic_key = "nope"\n'
         'allowed_ips = []\n', "not a base64 WireGuard public key"),
        ('[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\n[[interface.wg0.peer]]\n'
         f'public_key = "{KEY}"\nallowed_ips = ["10.0.0.1/8"]\n', "allowed_ips"),
        ("[interface.wg0\n", "not valid TOML"),
        ('[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\ntimeout = nan\n', "timeout must be a number"),
        ('[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\ntimeout = inf\n', "timeout must be a number"),
        ('metrics_directory = "prom"\n[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\n',
         "metrics_directory must be an absolute directory path"),
        ('state_directory = ""\n[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\n',
         "state_directory must be an absolute directory path"),  # not the current directory
        ('state_directory = "state"\n[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\n',
         "state_directory must be an absolute directory path"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_metrics_directory(tmp_path: Path) -> None:
    table = '[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\n'
    default = load_config(write(tmp_path, table)).metrics_directory
    assert default == MetricsDirectory(Path("/var/lib/prometheus/node-exporter"), configured=False)
    named = load_config(write(tmp_path, f'metrics_directory = "{tmp_path}"\n' + table)).metrics_directory
    assert named == MetricsDirectory(tmp_path, configured=True)
    assert load_config(write(tmp_path, 'metrics_directory = ""\n' + table)).metrics_directory is None


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "none.toml"))


def test_server_parsing() -> None:
    assert str(parse_server("example.net")) == "example.net:1223"
    assert parse_server("[2001:db8::1]:1224") == ServerAddress("2001:db8::1", 1224)
    assert parse_server("2001:db8::1") == ServerAddress("2001:db8::1", 1223)
    for bad in ("[::1", "[::1]x", "host:port", "ex ample:1", "a:b:c:1", "[::1]:0"):
        with pytest.raises(ValueError):
            parse_server(bad)


def test_x1_keys() -> None:
    base = {"servers": ["s:1"], "secret_file": "k"}
    config = parse_config({"interface": {"wg0": base}}, "f").interfaces[0]
    assert config.candidates and config.ipv6 and config.converge_seconds == 25
    assert config.exclude_candidates == () and config.advertise == ()
    config = parse_config({"interface": {"wg0": {**base, "candidates": False, "ipv6": False, "converge_seconds": 0,
                                                  "exclude_candidates": ["172.16.0.0/12", "fd00::/8"],
                                                  "advertise": ["198.51.100.7:51820", "[2001:db8::7]:5"]}}},
                          "f").interfaces[0]
    assert not config.candidates and not config.ipv6 and config.converge_seconds == 0
    assert [ipaddr.prefix_to_text(n) for n in config.exclude_candidates] == ["172.16.0.0/12", "fd00::/8"]
    assert config.advertise == (("198.51.100.7", 51820), ("2001:db8::7", 5))
    for key, value, message in (
        ("candidates", "yes", "candidates must be a bool"),
        ("exclude_candidates", ["10.0.0.0/33"], "exclude_candidates: "),
        ("exclude_candidates", "10.0.0.0/8", "must be a list of strings"),
        ("advertise", ["example.net:1"], "not an IP address and port"),
        ("advertise", ["198.51.100.7"], "not an IP address and port"),
        ("converge_seconds", 51, "at most 50"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config({"interface": {"wg0": {**base, key: value}}}, "f")


def test_port_mapping_key_off_by_default_one_of_five_modes() -> None:
    base = {"servers": ["s:1"], "secret_file": "k"}
    assert parse_config({"interface": {"wg0": base}}, "f").interfaces[0].port_mapping == "off"
    for mode in ("auto", "pcp", "natpmp", "upnp", "off"):
        config = parse_config({"interface": {"wg0": {**base, "port_mapping": mode}}}, "f").interfaces[0]
        assert config.port_mapping == mode
    for value, message in (("yes", "port_mapping must be one of 'off', 'auto'"), (True, "port_mapping must be a str")):
        with pytest.raises(ConfigError, match=message):
            parse_config({"interface": {"wg0": {**base, "port_mapping": value}}}, "f")


def test_shipped_example_parses() -> None:
    config = load_config(str(ROOT / "packaging" / "examples" / "wgsigc.toml"))
    assert [i.name for i in config.interfaces] == ["wg0"]


@pytest.mark.parametrize("content", [
    '[interface.wg0]\nservers = ["a:1"]\nsecret_file = "x"\n'.encode("utf-16"), b"\x00\xff\xfe\x80" * 20,
], ids=["utf-16", "binary"])
@pytest.mark.parametrize("command", [["--config"], ["--dry-run", "--config"], ["status", "--config"]])
def test_a_config_file_that_is_not_utf8_is_one_line_and_exit_6(tmp_path: Path, content: bytes,
                                                                command: list[str]) -> None:
    """The real wgsigc, kernel mode and status: no traceback."""
    path = tmp_path / "wgsigc.toml"
    path.write_bytes(content)
    result = run_wgsigc(*command, str(path))
    assert result.returncode == 6 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.splitlines()
    assert str(path) in line and "not UTF-8" in line


def _check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wgsigc", "--config", str(path), "--check", *extra],
                          capture_output=True, text=True, env=env(), timeout=30, check=False)


def test_check_reads_config_and_secrets_without_netlink(tmp_path: Path) -> None:
    """wgsigc --check (a real process): no interface needed, each interface's secret is read."""
    good = write_secret(tmp_path / "good.key", bytes(32))
    path = tmp_path / "wgsigc.toml"
    path.write_text(f'[interface.wgx0]\nservers = ["192.0.2.1"]\nsecret_file = "{good}"\n'
                    f'[interface.wgx1]\nservers = ["192.0.2.1"]\nsecret_file = "{tmp_path}/nope.key"\n')
    ok = _check(path, "--interface", "wgx0")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"{path}: OK, 1 interfaces\n", "")
    bad = _check(path)
    assert bad.returncode == 6 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "[interface.wgx1]" in bad.stderr and "does not exist" in bad.stderr
    missing = _check(path, "--interface", "wg9")
    assert missing.returncode == 6 and "wg9 is not configured" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[interface.wg0\n")
    assert _check(broken).returncode == 6 and "Traceback" not in _check(broken).stderr


@pytest.mark.parametrize(("name", "valid"), [
    ("wg0", True), ("a", True), ("x" * 15, True), ("wg.0=+-_", True), ("WG9", True),
    ("", False), ("x" * 16, False), ("wg 0", False), ("wg/0", False), ("wg:0", False), ("wé", False),
    ("wg0\n", False),  # the regular expression this replaced ($, not \Z) took a trailing newline
])
def test_interface_names(name: str, valid: bool) -> None:
    table = {"servers": ["192.0.2.1"], "secret_file": "/s"}
    if valid:
        assert parse_config({"interface": {name: table}}, "c.toml").interfaces[0].name == name
    else:
        with pytest.raises(ConfigError, match="is not an interface name"):
            parse_config({"interface": {name: table}}, "c.toml")
