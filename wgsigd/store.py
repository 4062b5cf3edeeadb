"""Saving and loading the server's tables in its state directory.

A save writes a temporary file, fsyncs it and renames it over the old one, so
a crash leaves either the old or the new state, never half of one.  Writing
happens on a background thread; the caller only takes the snapshot.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from wgsig.statefile import StateFileError, decode_state, encode_state

log = logging.getLogger("wgsigd")

STATE_FILE = "records.state"


class StateStore:
    """The state file of one server, written atomically off the hot path."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self._writer: threading.Thread | None = None
        self._pending: dict[int, bytes] | None = None
        self._lock = threading.Lock()
        self.saves = 0

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

    def save_async(self, tables: dict[int, bytes]) -> None:
        """Queue a snapshot for writing; a newer snapshot replaces an unwritten one.

        ``tables`` must not change afterwards: it is encoded on the writer
        thread, off the answering path.
        """
        with self._lock:
            self._pending = tables
            if self._writer is None:
                self._writer = threading.Thread(target=self._drain, name="wgsigd-save", daemon=True)
                self._writer.start()

    def save(self, tables: dict[int, bytes]) -> None:
        """Write a snapshot now and wait for every queued one (used on exit)."""
        self.save_async(tables)
        self.flush()

    def flush(self) -> None:
        with self._lock:
            writer = self._writer
        if writer is not None:
            writer.join()

    def _drain(self) -> None:
        while True:
            with self._lock:
                tables, self._pending = self._pending, None
                if tables is None:
                    self._writer = None
                    return
            try:
                self._write(encode_state(tables))
            except OSError as error:
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
        self.saves += 1
