"""The value checks both configuration files share (wgsig/host/configfile.py), and systemd's state directory.

Pure tests, but for the environment variable, set with monkeypatch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.procs import run_python_in_readonly_dir
from wgsig.host.configfile import (
    DEFAULT_METRICS_DIRECTORY,
    ConfigError,
    MetricsDirectory,
    in_range,
    is_kind,
    is_number,
    is_strings,
    metrics_directory,
    read_toml,
    state_directory_setting,
    systemd_state_directory,
    unknown_key,
)


def test_a_boolean_is_no_number_and_nan_and_inf_are_out_of_any_range() -> None:
    assert is_kind(True, bool) and not is_kind(True, int) and not is_number(True)
    assert is_number(3, integer=True) and not is_number(3.0, integer=True) and is_number(3.0)
    assert not is_number("3")
    for value in (float("nan"), float("inf"), float("-inf")):
        assert not in_range(value, 0) and not in_range(value, -1e9, 1e9)
    assert in_range(5, 5, 5) and in_range(1e12, 0) and not in_range(4.99, 5) and not in_range(6, 0, 5)


def test_lists_of_strings_and_unknown_keys() -> None:
    assert is_strings([]) and is_strings(["a", "b"])
    assert not is_strings("a") and not is_strings(["a", 1])
    assert unknown_key({"b": 1, "zz": 2, "aa": 3}, {"b"}) == "aa"
    assert unknown_key({"b": 1}, {"b", "c"}) is None


def test_state_directory_is_the_first_of_systemds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert systemd_state_directory("/var/lib/x") == "/var/lib/x"  # strings: wgsigc's runs load no pathlib
    assert systemd_state_directory(None) is None
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/wgsig:/var/lib/other")
    assert systemd_state_directory("/var/lib/x") == "/var/lib/wgsig"
    assert systemd_state_directory(None) == "/var/lib/wgsig"


def test_metrics_directory_default_configured_and_off(tmp_path: Path) -> None:
    default = metrics_directory({})
    assert default == MetricsDirectory(DEFAULT_METRICS_DIRECTORY, configured=False)
    assert DEFAULT_METRICS_DIRECTORY == "/var/lib/prometheus/node-exporter"
    assert MetricsDirectory(Path("/x")) == MetricsDirectory("/x") and MetricsDirectory(Path("/x")).path == "/x"
    assert metrics_directory({"metrics_directory": ""}) is None
    named = metrics_directory({"metrics_directory": str(tmp_path / "absent")})
    assert named == MetricsDirectory(tmp_path / "absent", configured=True)
    assert named.in_use()  # configured: written to (and failures reported) even while it is missing
    assert not MetricsDirectory(tmp_path / "absent").in_use()  # the default: only once it exists
    assert MetricsDirectory(tmp_path).in_use()
    for bad in ("relative/dir", 3, True, ["/x"]):
        with pytest.raises(ValueError, match="absolute directory path"):
            metrics_directory({"metrics_directory": bad})


def test_default_metrics_directory_unwritable_is_quietly_not_used(tmp_path: Path) -> None:
    """In a subprocess without CAP_DAC_OVERRIDE (the tests may run as root): a 0555 directory."""
    code = (
        "import sys; from pathlib import Path; from wgsig.host.configfile import MetricsDirectory as M\n"
        "d = Path(sys.argv[1]); print(M(d).in_use(), M(d, configured=True).in_use())\n"
    )
    done = run_python_in_readonly_dir(tmp_path, code)
    assert done.stdout == "False True\n", done.stderr


NOT_UTF8 = {
    "utf-16 with BOM": 'port = 1224\n[group.a]\nid = 1\n'.encode("utf-16"),
    "utf-16-be with BOM": b"\xfe\xff" + "port = 1224\n".encode("utf-16-be"),
    "binary": bytes(range(256)) * 4,
    "latin-1": 'name = "caf\xe9"\n'.encode("latin-1"),
}


@pytest.mark.parametrize("kind", sorted(NOT_UTF8))
def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path, kind: str) -> None:
    """Real files; tomllib raises UnicodeDecodeError (not TOMLDecodeError) for these."""
    path = tmp_path / "c.toml"
    path.write_bytes(NOT_UTF8[kind])
    with pytest.raises(ConfigError) as raised:
        read_toml(str(path))
    message = str(raised.value)
    assert str(path) in message and "not UTF-8" in message and "save it as UTF-8" in message
    assert "\n" not in message
    if kind.startswith("utf-16"):
        assert "UTF-16" in message


def test_state_directory_setting() -> None:
    assert state_directory_setting({}) is None
    assert state_directory_setting({"state_directory": "/var/lib/x"}) == "/var/lib/x"
    for wrong in ("", "state", "./state", 5, True, ["/a"], {"a": 1}):
        with pytest.raises(ValueError, match="must be an absolute directory path"):
            state_directory_setting({"state_directory": wrong})


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xef\xbb\xbfport = 1224\n")
    assert read_toml(str(path)) == {"port": 1224}
