"""Saving and loading the server's tables in its state directory.

A save writes a temporary file, fsyncs it and renames it over the old one, so
a crash leaves either the old or the new state, never half of one.  Writing
happens on a background thread, which also takes the snapshot: copying 100,000
records is milliseconds of work the answering loop does not have to stop for.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from wgsig.statefile import StateFileError, decode_state, encode_state

log = logging.getLogger("wgsigd")

STATE_FILE = "records.state"

# Takes a snapshot: each group's slots end to end.
Snapshot = Callable[[], Mapping[int, bytes]]


class StateStore:
    """The state file of one server, written atomically off the hot path."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self._writer: threading.Thread | None = None
        self._pending: Snapshot | None = None
        self._lock = threading.Lock()
        self.failures = 0  # saves that failed (for the metrics)

    def load(self) -> dict[int, list[bytes]]:
        """The saved tables; a corrupt file is kept aside and the server starts empty."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            return decode_state(data)
        except StateFileError as error:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(self.path, aside)
            log.warning(
                "state file %s is unusable (%s): kept it as %s and starting with no records",
                self.path, error, aside.name,
            )
            return {}

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
        """Save now and wait for every queued save (used on exit)."""
        self.save_async(snapshot)
        self.flush()

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
                log.error("cannot save records to %s: %s", self.path, error.strerror)

    def _write(self, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{STATE_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
