"""Unit tests of wgsig.keys.PublicKey: bytes <-> base64 text, the one size check, and that a key
finds what the core keeps under its raw bytes (pure code, no fakes needed)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgsig.keys import PublicKey

RAW = bytes(range(32))
TEXT = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # what 'wg' shows for those 32 bytes


def test_text_of_known_bytes_is_what_wg_shows() -> None:
    assert str(PublicKey(RAW)) == TEXT
    assert f"peer {PublicKey(RAW)}" == f"peer {TEXT}"
    assert PublicKey.from_text(TEXT) == RAW


@given(st.binary(min_size=32, max_size=32))
def test_bytes_text_bytes_round_trip(raw: bytes) -> None:
    key = PublicKey(raw)
    text = str(key)
    assert len(text) == 44 and text == base64.b64encode(raw).decode()
    assert PublicKey.from_text(text) == key == raw
    assert bytes(PublicKey.from_text(text)) == raw


def test_surrounding_blanks_are_ignored_as_in_a_key_file() -> None:
    assert PublicKey.from_text(f"  {TEXT}\n") == RAW


@pytest.mark.parametrize(
    "text",
    [
        "",
        TEXT[:-1],  # padding missing
        TEXT[:-4],  # valid base64, 30 bytes
        base64.b64encode(bytes(31)).decode(),  # valid base64, 31 bytes
        base64.b64encode(bytes(33)).decode(),  # valid base64, 33 bytes
        "!" + TEXT[1:],  # not in the alphabet (b64decode without validation would drop it)
        TEXT[:20] + " " + TEXT[20:],  # a blank inside
        "é" * 44,  # not ASCII
    ],
)
def test_text_that_is_not_a_key(text: str) -> None:
    assert PublicKey.parse(text) is None
    with pytest.raises(ValueError, match="not a base64 WireGuard public key"):
        PublicKey.from_text(text)


@pytest.mark.parametrize("value", [None, 7, RAW, ["x"], {"k": TEXT}])
def test_parse_of_a_field_that_is_not_text(value: object) -> None:
    assert PublicKey.parse(value) is None


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33), RAW * 2])
def test_bytes_of_the_wrong_size(raw: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PublicKey(raw)


@pytest.mark.parametrize("value", [32, TEXT, bytearray(RAW)])
def test_only_bytes_make_a_key(value: object) -> None:
    with pytest.raises(TypeError):
        PublicKey(value)  # type: ignore[arg-type]


def test_equal_and_hashed_as_its_bytes_so_it_keys_dicts_both_ways() -> None:
    key = PublicKey(RAW)
    assert key == PublicKey.from_text(TEXT) and hash(key) == hash(RAW)
    records = {RAW: "record"}  # the core keys records by raw peer IDs
    assert records.get(key) == "record"
    decisions: dict[bytes, str] = {key: "decision"}  # keyed by PublicKey, looked up with raw bytes
    assert decisions.get(RAW) == "decision"
    assert key != PublicKey(bytes(32)) and len({key, PublicKey.from_text(TEXT), RAW}) == 1


def test_repr_names_the_key_by_its_text() -> None:
    key = PublicKey(RAW)
    assert repr(key) == f"PublicKey.from_text({TEXT!r})"
    assert eval(repr(key)) == key  # the repr is the constructor call
