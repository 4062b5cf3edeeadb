"""The state file: atomic saves, loading, and corrupt files kept aside (real files)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from wgsig.statefile import StateFileError, decode_state, encode_state
from wgsigd.store import STATE_FILE, StateStore

TABLES = {0: [bytes([1]) * 50, bytes(50), bytes([2]) * 50], 7: [bytes([3]) * 50]}
PACKED = {group: b"".join(slots) for group, slots in TABLES.items()}  # what a snapshot holds


def test_save_then_load(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.save(lambda: PACKED)
    assert StateStore(tmp_path / "state").load() == TABLES
    assert (tmp_path / "state" / STATE_FILE).stat().st_mode & 0o077 == 0


def test_async_saves_end_with_the_newest_snapshot(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    for i in range(50):
        store.save_async(lambda i=i: {0: bytes([i + 1]) * 50})
    store.flush()
    assert store.load() == {0: [bytes([50]) * 50]}


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_file_is_kept_aside_and_start_is_empty(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    store = StateStore(tmp_path)
    store.save(lambda: PACKED)
    path = tmp_path / STATE_FILE
    data = path.read_bytes()
    broken = {"truncate": data[:-7], "flip": data[:20] + bytes([data[20] ^ 1]) + data[21:],
              "garbage": b"hello world" * 9, "empty": b""}[damage]
    path.write_bytes(broken)
    with caplog.at_level(logging.WARNING, logger="wgsigd"):
        assert store.load() == {}
    kept = list(tmp_path.glob(f"{STATE_FILE}.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == broken
    assert "kept it as" in caplog.text and not path.exists()


def with_checksum(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


def test_decode_rejects_trailing_and_missing_bytes() -> None:
    good = encode_state(PACKED)
    assert decode_state(good) == TABLES
    with pytest.raises(StateFileError):
        decode_state(good[:-1])
    body = good[:-32]
    # Checksums that match: the layout checks behind them must still catch these.
    with pytest.raises(StateFileError, match="trailing bytes"):
        decode_state(with_checksum(body + bytes(50)))
    with pytest.raises(StateFileError, match="truncated records"):
        decode_state(with_checksum(body[:-50]))


def test_encode_refuses_a_partial_slot() -> None:
    with pytest.raises(ValueError, match="not a whole number of slots"):
        encode_state({3: bytes(75)})


def test_leftover_temporary_files_of_an_interrupted_save_are_removed_at_load(tmp_path: Path) -> None:
    """A crash (or a full disk, before this was fixed) left a partial temporary file: it would keep the disk full."""
    store = StateStore(tmp_path)
    store.save(lambda: PACKED)
    (tmp_path / f".{STATE_FILE}.tmp").write_bytes(b"partial")  # the name older wgsigd used
    (tmp_path / f".{STATE_FILE}.k2j4h1x9").write_bytes(b"partial")
    (tmp_path / "unrelated").write_bytes(b"kept")
    assert StateStore(tmp_path).load() == TABLES
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE, "unrelated"]


def test_no_state_file_yet_is_none(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "missing").load() is None
