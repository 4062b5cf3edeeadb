"""wgsig.host.lightjson reads and writes JSON as the json module does (issue 16: an idle wgsigc
run loads no json package). Pure; hypothesis generates the values, and the texts to read."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.procs import ROOT
from wgsig.host import lightjson

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


def same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN != NaN, but its text is NaN


@settings(max_examples=400, deadline=None)
@given(VALUES, st.sampled_from([None, 0, 1, 2]), st.booleans())
def test_dumps_writes_what_json_writes(value: object, indent: int | None, sort_keys: bool) -> None:
    assert lightjson.dumps(value, indent=indent, sort_keys=sort_keys) == json.dumps(value, indent=indent,
                                                                                  sort_keys=sort_keys)


@settings(max_examples=400, deadline=None)
@given(VALUES, st.sampled_from([None, 1]))
def test_loads_reads_what_json_reads(value: object, indent: int | None) -> None:
    text = json.dumps(value, indent=indent)
    assert same(lightjson.loads(text), json.loads(text))
    assert same(lightjson.loads(f" \n\t{text}\r\n "), value)


def test_keys_and_tuples_as_json_writes_them() -> None:
    value = {"b": (1, 2.5, float("inf")), "a": {3: None, 1.5: True, True: "é", None: [], False: {}}}
    for indent in (None, 1):
        assert lightjson.dumps(value, indent=indent) == json.dumps(value, indent=indent)
    assert lightjson.dumps({"b": 1, "a": [{"d": 1, "c": 2}]}, indent=1, sort_keys=True) == json.dumps(
        {"b": 1, "a": [{"d": 1, "c": 2}]}, indent=1, sort_keys=True)
    for wrong in ({"a": object()}, [b"bytes"], {(1, 2): 3}):
        with pytest.raises(TypeError):
            lightjson.dumps(wrong)


@pytest.mark.parametrize("text", ["", " ", "{", '{"a": 1,}', '{"a": 1} x', "[1] [2]", "\ufeff{}", "nul", '"\x01"',
                                  '{"a" 1}', "[1, 2", "01", "NaNa", '"\\ud800"x', "{}}"])
def test_what_json_refuses_is_refused_with_jsons_message(text: str) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(text)
    with pytest.raises(ValueError) as got:
        lightjson.loads(text)
    assert (type(got.value), str(got.value)) == (type(expected.value), str(expected.value))


def outcome(read: Callable[[str], object], text: str) -> tuple[str, str]:
    try:
        return "value", json.dumps(read(text), sort_keys=True)
    except ValueError as error:
        return type(error).__name__, str(error)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]",:0123456789.eE+-tfrunlsaNIy \n\\', max_size=30))
def test_any_text_reads_as_json_reads_it(text: str) -> None:
    assert outcome(lightjson.loads, text) == outcome(json.loads, text)


def test_parse_constant_is_passed_on() -> None:
    def refuse(name: str) -> None:
        raise ValueError(f"no {name}")

    with pytest.raises(ValueError, match="no NaN"):
        lightjson.loads('{"a": [1, NaN]}', parse_constant=refuse)
    assert lightjson.loads("[Infinity]")[0] == float("inf")


def test_reading_and_writing_load_no_json_package() -> None:
    code = ("import sys; from wgsig.host import lightjson; t = lightjson.dumps({'a': [1, 2.5, 'x']}, indent=1);"
            " assert lightjson.loads(t) == {'a': [1, 2.5, 'x']}; print(sorted(m for m in sys.modules"
            " if m in ('json', 're', 'enum') or m.startswith('json.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
