"""Replacing a file atomically (wgsig/host/atomicfile.py), on the real file system."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.procs import run_python_in_readonly_dir
from wgsig.host import atomicfile
from wgsig.host.atomicfile import replace_file


def test_writes_with_the_mode_asked_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        replace_file(tmp_path / "a.prom", b"x 1\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.prom").read_bytes() == b"x 1\n"
    assert (tmp_path / "a.prom").stat().st_mode & 0o777 == 0o644
    replace_file(tmp_path / "a.prom", b"x 2\n")
    assert (tmp_path / "a.prom").read_bytes() == b"x 2\n"
    assert os.listdir(tmp_path) == ["a.prom"]


def test_unwritable_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    """In a subprocess without CAP_DAC_OVERRIDE (the tests may run as root)."""
    code = (
        "import sys; from pathlib import Path; from wgsig.host.atomicfile import replace_file\n"
        "try:\n    replace_file(Path(sys.argv[1]) / 'a.prom', b'x 1\\n')\n"
        "except PermissionError as e:\n    print('refused', e.strerror)\n"
    )
    done = run_python_in_readonly_dir(tmp_path, code)
    assert done.stdout == "refused Permission denied\n", done.stderr
    assert os.listdir(tmp_path) == []


def test_full_disk_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAKE: the full disk -- os.write raises ENOSPC as the kernel does; the directory is real."""
    replace_file(tmp_path / "a.prom", b"old 1\n")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomicfile.os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        replace_file(tmp_path / "a.prom", b"new 1\n")
    monkeypatch.undo()
    assert (tmp_path / "a.prom").read_bytes() == b"old 1\n"
    assert os.listdir(tmp_path) == ["a.prom"]
