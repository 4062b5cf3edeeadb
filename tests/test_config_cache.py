"""The parsed-configuration cache (wgsig/host/configfile.py ``read_toml(path, cache)``, and
wgsigc's ``config_cache_file``): an unchanged file is read without tomllib, an edited one never
from the cache, and a cache that cannot be used or written changes nothing but the time taken.

Real files in tmp_path; the one fake is a full disk (``replace_file`` raising ENOSPC).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT
from wgsig.host import configfile
from wgsig.host.configfile import ConfigError, read_toml
from wgsigc.config import CONFIG_CACHE_NAME, config_cache_file, load_config

CONFIG = ('state_directory = "/var/lib/x"\n[interface.wg0]\nservers = ["192.0.2.1:1223"]\nsecret_file = "/s"\n'
          "timeout = 0.5\n")


def test_an_unchanged_file_is_read_from_the_cache(tmp_path: Path) -> None:
    path, cache = tmp_path / "c.toml", tmp_path / "cache.json"
    path.write_text(CONFIG)
    first = read_toml(str(path), cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    entry = json.loads(cache.read_text())
    assert entry["config"] == CONFIG and entry["toml"] == first
    entry["toml"]["interface"]["wg0"]["timeout"] = 0.25  # what the cache says is what a hit returns
    cache.write_text(json.dumps(entry))
    assert read_toml(str(path), cache)["interface"]["wg0"]["timeout"] == 0.25
    assert read_toml(str(path))["interface"]["wg0"]["timeout"] == 0.5  # no cache: the file


def test_a_hit_loads_no_tomllib_and_a_miss_does(tmp_path: Path) -> None:
    path, cache = tmp_path / "c.toml", tmp_path / "cache.json"
    path.write_text(CONFIG)
    code = ("import sys; from wgsig.host.configfile import read_toml; from pathlib import Path;"
            f" read_toml({str(path)!r}, Path({str(cache)!r})); print('tomllib' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs == ["True\n", "False\n"]


def test_an_edit_of_the_same_size_and_times_is_read_at_once(tmp_path: Path) -> None:
    """The cache is keyed by the file's bytes, not its size or times: an edit within the same
    timestamp tick (or one that restores the times, as cp -p and rsync -t do) is seen."""
    path, cache = tmp_path / "c.toml", tmp_path / "cache.json"
    path.write_text(CONFIG)
    before = path.stat()
    assert read_toml(str(path), cache)["interface"]["wg0"]["timeout"] == 0.5
    path.write_text(CONFIG.replace("0.5", "0.7"))  # same size, same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert read_toml(str(path), cache)["interface"]["wg0"]["timeout"] == 0.7
    assert json.loads(cache.read_text())["toml"]["interface"]["wg0"]["timeout"] == 0.7  # and the cache renewed
    path.write_text(CONFIG)  # back again: the old bytes are parsed (and cached) again
    assert read_toml(str(path), cache)["interface"]["wg0"]["timeout"] == 0.5


@pytest.mark.parametrize("damage", ["garbage", "empty", "not-an-object", "other-format", "other-python", "toml-list",
                                    "directory"])
def test_a_damaged_or_foreign_cache_is_passed_over_and_replaced(tmp_path: Path, damage: str) -> None:
    path, cache = tmp_path / "c.toml", tmp_path / "cache.json"
    path.write_text(CONFIG)
    good = {"format": 1, "python": sys.version, "config": CONFIG, "toml": {"wrong": True}}
    damaged = {
        "garbage": b"\x00\xff{{", "empty": b"", "not-an-object": b"[1, 2]",
        "other-format": json.dumps(dict(good, format=2)).encode(),
        "other-python": json.dumps(dict(good, python="3.12.0")).encode(),
        "toml-list": json.dumps(dict(good, toml=[1])).encode(),
    }
    if damage == "directory":
        cache.mkdir()  # neither readable nor replaceable as a file
    else:
        cache.write_bytes(damaged[damage])
    assert read_toml(str(path), cache) == read_toml(str(path))
    if damage != "directory":
        assert json.loads(cache.read_text())["toml"] == read_toml(str(path))


def test_a_cache_that_cannot_be_written_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    expected = read_toml(str(path))
    assert read_toml(str(path), tmp_path / "no-such-directory" / "cache.json") == expected
    assert not (tmp_path / "no-such-directory").exists()  # not created
    (tmp_path / "a-file").write_text("")
    assert read_toml(str(path), tmp_path / "a-file" / "cache.json") == expected

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("wgsig.host.atomicfile.replace_file", full)
    assert read_toml(str(path), tmp_path / "cache.json") == expected
    assert not (tmp_path / "cache.json").exists()
    assert capsys.readouterr() == ("", "")  # silently: the next run parses again


def test_an_unwritable_state_directory_as_an_unprivileged_user(tmp_path: Path) -> None:
    """A read-only directory (as root, CAP_DAC_OVERRIDE dropped): parsed each time, no traceback."""
    from tests.procs import unprivileged_prefix

    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    state = tmp_path / "state"
    state.mkdir(mode=0o500)
    code = ("from wgsig.host.configfile import read_toml; from pathlib import Path;"
            f" print(read_toml({str(path)!r}, Path({str(state / 'cache.json')!r}))['interface']['wg0']['timeout'])")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([*unprivileged_prefix(), sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "0.5\n", "")
    assert not list(state.iterdir())


def test_errors_are_the_files_not_the_caches(tmp_path: Path) -> None:
    """A file that is not TOML (or not UTF-8) is reported as before, and never cached."""
    path, cache = tmp_path / "c.toml", tmp_path / "cache.json"
    for data in (b"port = = 1\n", b"\xff\xfeport = 1\n"):
        path.write_bytes(data)
        with pytest.raises(ConfigError, match=str(path)):
            read_toml(str(path), cache)
        assert not cache.exists()
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(str(tmp_path / "missing.toml"), cache)


def test_dates_and_times_are_not_cached(tmp_path: Path) -> None:
    path, cache = tmp_path / "c.toml", tmp_path / "cache.json"
    path.write_text("when = 1979-05-27T07:32:00Z\n[t]\nday = 1979-05-27\n")
    assert read_toml(str(path), cache) == read_toml(str(path))
    assert not cache.exists()
    assert not configfile._json_plain({"a": [1, {"b": read_toml(str(path))["t"]["day"]}]})


def test_wgsigcs_cache_is_in_the_default_state_directory_and_holds_no_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "sd"))
    assert config_cache_file() == str(tmp_path / "sd" / CONFIG_CACHE_NAME)
    assert not CONFIG_CACHE_NAME.startswith("wgsigc-")  # status reads wgsigc-NAME.json as interface NAME's record
    monkeypatch.delenv("STATE_DIRECTORY")
    assert config_cache_file() == "/var/lib/wgsig/" + CONFIG_CACHE_NAME
    secret = tmp_path / "secret"
    secret.write_bytes(bytes(range(100, 132)))
    path, cache = tmp_path / "c.toml", tmp_path / "cache.json"
    path.write_text(CONFIG.replace('"/s"', f'"{secret}"'))
    config = load_config(str(path), cache)
    assert load_config(str(path), cache) == config == load_config(str(path))
    text = cache.read_bytes()
    assert bytes(range(100, 132)) not in text and bytes(range(100, 132)).hex().encode() not in text


def test_a_kernel_mode_run_uses_the_cache_and_a_dry_run_writes_none(monkeypatch: pytest.MonkeyPatch) -> None:
    from wgsigc import kernelmode

    seen: list[Path | None] = []

    def load(path: str, cache: Path | None = None) -> None:
        seen.append(cache)
        raise ConfigError("stop here")

    monkeypatch.setattr(kernelmode, "load_config", load)
    assert kernelmode.run_kernel_mode("/c.toml", None, dry_run=False) == kernelmode.EXIT_USAGE
    assert kernelmode.run_kernel_mode("/c.toml", None, dry_run=True) == kernelmode.EXIT_USAGE
    assert seen == [config_cache_file(), None]
