"""Where wgsigd's logs go: journald under systemd, stderr otherwise."""

from __future__ import annotations

import logging
import os
import sys


def under_journald() -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM)."""
    stream = os.environ.get("JOURNAL_STREAM")
    if not stream:
        return False
    try:
        device, inode = (int(x) for x in stream.split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def setup_logging(level: int) -> None:
    root = logging.getLogger("wgsigd")
    root.setLevel(level)
    root.propagate = False
    handler: logging.Handler | None = None
    if under_journald():
        try:
            from systemd.journal import JournalHandler  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            handler = None
        else:
            handler = JournalHandler(SYSLOG_IDENTIFIER="wgsigd")
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
    root.handlers[:] = [handler]
