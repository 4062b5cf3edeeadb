"""Replacing a file atomically: a reader sees the old content or the new, never part of either.

The new content goes to a temporary file in the same directory (named ``.NAME.XXXXXXXX``, so a
reader that globs ``*.prom`` never picks it up), which is renamed over ``NAME``.  On any error
(a full disk, a read-only or unwritable directory) the temporary file is removed and the
OSError raised: the caller says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def replace_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; ``mode`` whatever the umask.

    No fsync: for files rewritten every few seconds (metrics) the next write repairs what a crash
    could lose, and the disk is spared a flush each time.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
