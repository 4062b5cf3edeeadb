"""Replacing a file atomically: a reader sees the old content or the new, never part of either.

The new content goes to a temporary file in the same directory (named ``.NAME.XXXXXXXX``, so a
reader that globs ``*.prom`` never picks it up), which is renamed over ``NAME``.  On any error
(a full disk, a read-only or unwritable directory) the temporary file is removed and the
OSError raised: the caller says so in one line.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias

    StrPath: TypeAlias = str | os.PathLike[str]  # a path as a string (wgsigc's runs load no pathlib) or a Path


def create_temporary(path: StrPath) -> tuple[int, str]:
    """A new file ``.NAME.XXXXXXXX`` beside ``path`` (mode 0600), open for writing: its descriptor
    and name.  What ``tempfile.mkstemp`` does, without importing tempfile (with shutil, random and
    the compression modules: most of the time wgsigc spent writing its run record at start-up)."""
    for _ in range(100):
        directory, base = os.path.split(os.fspath(path))
        name = os.path.join(directory, f".{base}.{os.urandom(4).hex()}")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary name beside {path}")


def remove_temporary(name: str) -> None:
    """Remove a temporary file after a failed write, if it is still there (no contextlib: its
    import is 2 % of an idle wgsigc run)."""
    try:
        os.unlink(name)
    except OSError:  # already gone, or its directory turned read-only: nothing more to undo
        return


def replace_file(path: StrPath, data: bytes, mode: int = 0o644, durable: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; ``mode`` whatever the umask.

    No fsync unless ``durable``: for files rewritten every few seconds (metrics) the next write
    repairs what a crash could lose, and the disk is spared a flush each time.  ``durable`` (saved
    state) flushes the data before the rename and the directory after it, so a crash leaves the
    old content or the new one.
    """
    fd, tmp = create_temporary(path)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        remove_temporary(tmp)
        raise
    if durable:
        dir_fd = os.open(os.path.dirname(os.fspath(path)) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
