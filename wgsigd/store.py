"""Saving and loading the server's tables in its state directory.

A save writes a temporary file, fsyncs it and renames it over the old one, so
a crash leaves either the old or the new state, never half of one; a save that
fails (a full disk, an unwritable directory) removes its temporary file and
leaves the old state as it was.  Writing happens on a background thread, which
also takes the snapshot: copying 100,000 records is milliseconds of work the
answering loop does not have to stop for.  A state file wgsigd cannot use and
must not replace (a directory, a FIFO, an unreadable file) is a StateStoreError:
one line, and wgsigd does not start.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from wgsig.host.atomicfile import replace_file
from wgsig.statefile import StateFileError, decode_state, encode_state

log = logging.getLogger("wgsigd")

STATE_FILE = "records.state"

# Takes a snapshot: each group's slots end to end.
Snapshot = Callable[[], Mapping[int, bytes]]

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


class StateStoreError(Exception):
    """A state file wgsigd can neither read nor replace without losing something; the message
    says what is wrong and what to do."""


class StateStore:
    """The state file of one server, written atomically off the hot path."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self._writer: threading.Thread | None = None
        self._pending: Snapshot | None = None
        self._lock = threading.Lock()
        self.failures = 0  # saves that failed (for the metrics)
        self.failing = False  # the last save failed

    def load(self) -> dict[int, list[bytes]] | None:
        """The saved tables (None: no state file yet); a corrupt file is kept aside and the server starts empty."""
        self._remove_leftovers()
        data = self._read()
        if data is None:
            return None
        try:
            return decode_state(data)
        except StateFileError as error:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            try:
                os.replace(self.path, aside)
            except OSError as move_error:
                raise StateStoreError(
                    f"state file {self.path} is unusable ({error}) and cannot be kept aside as {aside.name}"
                    f" ({move_error.strerror}): move it away yourself, then start wgsigd again"
                ) from None
            log.warning(
                "state file %s is unusable (%s): kept it as %s and starting with no records",
                self.path, error, aside.name,
            )
            return {}

    def _read(self) -> bytes | None:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; only a regular file is read.
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise StateStoreError(
                f"state file {self.path} is not readable by uid {os.geteuid()}: give it (and {self.directory})"
                " back to wgsigd's user, or move it away to start with no records"
            ) from None
        except OSError as error:
            raise StateStoreError(f"cannot open state file {self.path}: {error.strerror}") from None
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != stat.S_IFREG:
            os.close(fd)
            what = _KINDS.get(kind, "not a regular file")
            raise StateStoreError(
                f"state file {self.path} is {what}, not a file wgsigd wrote: move it away"
                " (wgsigd then starts with no records), or set another state directory"
            )
        with os.fdopen(fd, "rb") as file:
            try:
                return file.read()
            except OSError as error:
                raise StateStoreError(f"cannot read state file {self.path}: {error.strerror}") from None

    def _remove_leftovers(self) -> None:
        """Temporary files of saves a crash interrupted: they would only keep a disk full."""
        with contextlib.suppress(OSError):
            for leftover in self.directory.glob(f".{STATE_FILE}.*"):
                leftover.unlink()

    def save_async(self, snapshot: Snapshot) -> None:
        """Queue a save; the writer thread calls ``snapshot`` and writes what it returns.

        A save queued while another waits replaces it.  ``snapshot`` runs on
        the writer thread: it must copy each group's records in one step (one
        C call under the GIL), so that every group is saved consistent.
        """
        with self._lock:
            self._pending = snapshot
            if self._writer is None:
                self._writer = threading.Thread(target=self._drain, name="wgsigd-save", daemon=True)
                self._writer.start()

    def save(self, snapshot: Snapshot) -> None:
        """Wait for queued saves, then save on this thread (used on exit); OSError when it failed."""
        self.flush()
        try:
            self._write(encode_state(snapshot()))
        except OSError:
            self.failures += 1
            raise
        self.failing = False

    def flush(self) -> None:
        with self._lock:
            writer = self._writer
        if writer is not None:
            writer.join()

    def _drain(self) -> None:
        while True:
            with self._lock:
                snapshot, self._pending = self._pending, None
                if snapshot is None:
                    self._writer = None
                    return
            try:
                self._write(encode_state(snapshot()))
            except OSError as error:
                self.failures += 1
                self.failing = True
                log.error("cannot save records to %s: %s; %s", self.path, error.strerror, remedy(error))
            else:
                self.failing = False

    def _write(self, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, data, 0o600, durable=True)


def remedy(error: OSError) -> str:
    """What the administrator can do about a failed save."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space on its filesystem (the file keeps the records saved before)"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the state directory writable for wgsigd's user (the file keeps the records saved before)"
    return "the file keeps the records saved before"
