"""wgsigd's TOML configuration: accepted forms, and one precise line per mistake (pure parsing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.procs import env, write_secret
from wgsig.host.configfile import MetricsDirectory
from wgsigd.config import ConfigError, from_command_line, load_config, parse_config

KEY = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="


def config(**top: Any) -> dict[str, Any]:
    group = {"id": 0, "secret_file": "/etc/wgsig/group0.key"}
    data: dict[str, Any] = {"group": {"main": group}}
    data.update(top)
    return data


def test_full_config(tmp_path: Path) -> None:
    path = tmp_path / "wgsigd.toml"
    path.write_text(
        'listen = "::"\nport = 1224\nstate_directory = "/tmp/x"\nwindow = 60\nsave_interval = 0.5\n'
        "idle_exit = 300\n"
        f'[group.a]\nid = 5\nsecret_file = "a.key"\nprevious_secret_files = ["old.key"]\nencrypt = true\n'
        f'allowed_keys = ["{KEY}"]\nmax_records = 50\nmax_age = 3600\n'
    )
    cfg = load_config(str(path))
    assert (cfg.listen, cfg.port, str(cfg.state_directory), cfg.window, cfg.idle_exit) == ("::", 1224, "/tmp/x", 60, 300)
    (group,) = cfg.groups
    assert (group.group_id, group.secret_files, group.encrypt, group.max_records, group.max_age) == (
        5, ("a.key", "old.key"), True, 50, 3600,
    )
    assert group.allowed_keys == frozenset([bytes(range(1, 33))])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "no [group.NAME] table"),
        (config(port=70000), "'port' = 70000 is out of range"),
        (config(port="1223"), "'port' must be an integer"),
        (config(save_interval=float("nan")), "'save_interval' = nan is out of range"),
        (config(idle_exit=float("inf")), "'idle_exit' = inf is out of range"),
        (config(windw=3), "unknown key 'windw'"),
        ({"group": {"g": {"secret_file": "x"}}}, "missing 'id'"),
        ({"group": {"g": {"id": 1}}}, "missing 'secret_file'"),
        ({"group": {"g": {"id": 2**32, "secret_file": "x"}}}, "'id' = 4294967296 is out of range"),
        ({"group": {"g": {"id": 1, "secret_file": "x", "allowed_keys": ["nope"]}}}, "not a base64 WireGuard"),
        ({"group": {"g": {"id": 1, "secret_file": "x", "encrypt": "yes"}}}, "'encrypt' must be true or false"),
        ({"group": {"a": {"id": 1, "secret_file": "x"}, "b": {"id": 1, "secret_file": "y"}}}, "same id"),
        (config(metrics_directory="prom"), "'metrics_directory' must be an absolute directory path"),
        (config(metrics_directory=1), "'metrics_directory' must be an absolute directory path"),
        (config(metrics_interval=0.5), "'metrics_interval' = 0.5 is out of range"),
        (config(state_directory=""), "'state_directory' must be an absolute directory path"),  # not "here"
        (config(state_directory=7), "'state_directory' must be an absolute directory path"),  # not ignored
        (config(state_directory=["/a"]), "'state_directory' must be an absolute directory path"),
        (config(state_directory="state"), "'state_directory' must be an absolute directory path"),
    ],
)
def test_mistakes_are_named(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(data, "wgsigd.toml")
    assert expected in str(error.value) and str(error.value).startswith("wgsigd.toml")


def test_metrics_settings() -> None:
    cfg = parse_config(config(), "wgsigd.toml")
    assert cfg.metrics_directory == MetricsDirectory(Path("/var/lib/prometheus/node-exporter"), configured=False)
    assert cfg.metrics_interval == 15
    cfg = parse_config(config(metrics_directory="/srv/prom", metrics_interval=2), "wgsigd.toml")
    assert (cfg.metrics_directory, cfg.metrics_interval) == (MetricsDirectory(Path("/srv/prom"), True), 2)
    assert parse_config(config(metrics_directory=""), "wgsigd.toml").metrics_directory is None
    # The C server's command-line form has no configuration file: no metrics.
    assert from_command_line("s.key", 1223, False, None).metrics_directory is None


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "none.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad))


def test_check_reports_bad_secret_without_traceback(tmp_path: Path) -> None:
    good = write_secret(tmp_path / "good.key", bytes(32))
    path = tmp_path / "wgsigd.toml"
    path.write_text(f'[group.a]\nid = 1\nsecret_file = "{good}"\n[group.b]\nid = 2\nsecret_file = "{tmp_path}/nope.key"\n')
    result = subprocess.run([sys.executable, "-m", "wgsigd", "--config", str(path), "--check"],
                            capture_output=True, text=True, env=env(), timeout=30, check=False)
    assert result.returncode == 6
    assert "group 'b'" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def run_wgsigd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wgsigd", *args],
                          capture_output=True, text=True, env=env(), timeout=30, check=False)


@pytest.mark.parametrize("encoding", ["utf-16", "binary"])
@pytest.mark.parametrize("check", [True, False], ids=["check", "start"])
def test_a_config_file_that_is_not_utf8_is_one_line_and_exit_6(tmp_path: Path, encoding: str, check: bool) -> None:
    secret = write_secret(tmp_path / "g.key", bytes(32))
    text = f'port = 1\n[group.a]\nid = 1\nsecret_file = "{secret}"\n'
    path = tmp_path / "wgsigd.toml"
    path.write_bytes(text.encode("utf-16") if encoding == "utf-16" else b"\x00\xff\xfe" + os.urandom(64))
    result = run_wgsigd("--config", str(path), *(["--check"] if check else []))
    assert result.returncode == 6 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.splitlines()
    assert str(path) in line and "not UTF-8" in line


@pytest.mark.parametrize("unlimited", ["answer_rate = 0", "replay_bytes_rate = 0"])
def test_check_warns_of_an_unlimited_amplification_budget(tmp_path: Path, unlimited: str) -> None:
    """No replay budget, with a huge max_answer_bytes: valid, but any address can be sent without limit."""
    secret = write_secret(tmp_path / "g.key", bytes(32))
    path = tmp_path / "wgsigd.toml"
    path.write_text(f'{unlimited}\nmax_answer_bytes = 1073741824\n[group.a]\nid = 1\nsecret_file = "{secret}"\n')
    result = run_wgsigd("--config", str(path), "--check")
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "amplification" in line]
    assert len(warnings) == 1 and "Traceback" not in result.stderr, result.stderr
    assert unlimited in warnings[0] and "1073741824" in warnings[0] and "unlimited" in warnings[0]
    # The defaults, and a limit with a large byte cap, warn of nothing.
    path.write_text(f'max_answer_bytes = 1073741824\n[group.a]\nid = 1\nsecret_file = "{secret}"\n')
    assert run_wgsigd("--config", str(path), "--check").stderr == ""
