"""Secret files: each way a file can be wrong gets its own message (real files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.procs import run_wgsigc
from wgsig.host.secretfile import SecretFileError, create_secret, load_secret, resolve_secret_path


def secret_at(path: Path, data: bytes = bytes(32), mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def message(path: Path | str) -> str:
    with pytest.raises(SecretFileError) as error:
        load_secret(str(path))
    return str(error.value)


def test_good_secret_loads(tmp_path: Path) -> None:
    assert load_secret(str(secret_at(tmp_path / "s", bytes(range(32))))) == bytes(range(32))
    assert load_secret(str(secret_at(tmp_path / "r", mode=0o400))) == bytes(32)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "is a directory"),
        (lambda p: secret_at(p / "s", bytes(33)), "holds 33 bytes"),
        (lambda p: secret_at(p / "s", bytes(31)), "holds 31 bytes"),
        (lambda p: secret_at(p / "s", b""), "holds 0 bytes"),
        (lambda p: secret_at(p / "s", mode=0o640), "chmod 600"),
        (lambda p: secret_at(p / "s", mode=0o604), "chmod 600"),
    ],
    ids=["missing", "directory", "too-long", "too-short", "empty", "group-readable", "world-readable"],
)
def test_each_bad_secret_file_has_its_message(tmp_path: Path, make, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert expected in message(make(tmp_path))


def test_symlink_and_fifo_refused(tmp_path: Path) -> None:
    target = secret_at(tmp_path / "s")
    (tmp_path / "link").symlink_to(target)
    assert "symbolic link" in message(tmp_path / "link")
    os.mkfifo(tmp_path / "fifo", 0o600)
    assert "not a regular file" in message(tmp_path / "fifo")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another uid needs root")
def test_foreign_owner_refused(tmp_path: Path) -> None:
    path = secret_at(tmp_path / "s")
    os.chown(path, 12345, 12345)
    assert "owned by uid 12345" in message(path)


def test_genkey_creates_private_secret_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    create_secret(str(path))
    assert path.stat().st_mode & 0o777 == 0o600
    first = load_secret(str(path))
    with pytest.raises(SecretFileError, match="already exists"):
        create_secret(str(path))
    assert load_secret(str(path)) == first


def test_programs_report_bad_secret_in_one_line(tmp_path: Path) -> None:
    bad = secret_at(tmp_path / "s", bytes(40))
    result = run_wgsigc("127.0.0.1", "1223", "A" * 43 + "=", str(bad), "40000")
    assert result.returncode == 6
    assert result.stderr.count("\n") == 1 and "holds 40 bytes" in result.stderr
    assert "Traceback" not in result.stderr


def test_secret_names_resolve_as_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/wgsigd.service")
    assert resolve_secret_path("keys_office.key") == "/run/credentials/wgsigd.service/keys_office.key"
    assert resolve_secret_path("/etc/x.key") == "/etc/x.key"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    # Outside the unit (wgsigd --check, wgsigc --dry-run): the file the credential is made from.
    assert resolve_secret_path("keys_office.key") == "/etc/wgsig/keys/office.key"
    assert resolve_secret_path("secret") == "secret"  # the C-compatible form: a relative path
    (tmp_path / "keys_local").write_bytes(b"")
    assert resolve_secret_path("keys_local") == "keys_local"
