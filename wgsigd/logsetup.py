"""Where wgsigd's logs go: journald under systemd, stderr otherwise.

Under systemd, records go through systemd-python's JournalHandler with their
structured fields (PEER_KEY, ENDPOINT, GROUP, REASON, MESSAGE_ID, ...).  That
handler (python3-systemd 235) forwards every attribute of a log record; only
journal field names (upper case, not starting with "_") and no noise fields
are passed on.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

SYSLOG_IDENTIFIER = "wgsigd"

# journald accepts field names of upper-case letters, digits and "_", not starting with "_" or a digit.
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# Upper-case fields JournalHandler adds that say nothing useful (the arguments are in MESSAGE).
_NOISE = frozenset({"CODE_ARGS", "EXCEPTION_INFO", "PROCESS_NAME"})


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


def journal_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The journal fields among a log record's attributes (lower-case attributes are dropped)."""
    return {k: v for k, v in fields.items() if _FIELD_NAME.fullmatch(k) and k not in _NOISE and v is not None}


def structured_sender(send: Callable[..., Any]) -> Callable[..., None]:
    """Wrap ``systemd.journal.send`` so that only journal fields reach it."""

    def send_fields(message: str, /, **fields: Any) -> None:  # records carry a "message" attribute
        send(message, **journal_fields(fields))

    return send_fields


def journal_handler() -> logging.Handler | None:
    try:
        from systemd import journal  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    handler: logging.Handler = journal.JournalHandler(
        SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER, sender_function=structured_sender(journal.send)
    )
    return handler


_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class PriorityPrefixFormatter(logging.Formatter):
    """``<N>message``: journald reads the priority from stderr lines (no systemd-python)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def setup_logging(level: int) -> None:
    root = logging.getLogger("wgsigd")
    root.setLevel(level)
    root.propagate = False
    handler: logging.Handler | None = None
    journald = under_journald()
    if journald:
        handler = journal_handler()
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PriorityPrefixFormatter("%(message)s") if journald else logging.Formatter("%(message)s"))
    root.handlers[:] = [handler]
