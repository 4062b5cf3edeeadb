"""The Prometheus text codec (wgsig/metrics.py), byte for byte."""

from __future__ import annotations

import math

import pytest

from wgsig.metrics import Family, Sample, encode, family, format_value, single


def test_families_with_help_type_and_labels_byte_exact() -> None:
    text = encode([
        family("wgsigd_answers_total", "counter", "Requests answered.", [({"group": "0"}, 3), ({"group": "7"}, 0)]),
        single("wgsigd_save_failures_total", "counter", "Saves that failed.", 0),
        family("wgsigc_path", "gauge", "Path in use.", [({"interface": "wg0", "peer": "k", "kind": "lan"}, 1)]),
        family("wgsigd_empty", "gauge", "No samples yet.", []),
    ])
    assert text == (
        b"# HELP wgsigd_answers_total Requests answered.\n"
        b"# TYPE wgsigd_answers_total counter\n"
        b'wgsigd_answers_total{group="0"} 3\n'
        b'wgsigd_answers_total{group="7"} 0\n'
        b"# HELP wgsigd_save_failures_total Saves that failed.\n"
        b"# TYPE wgsigd_save_failures_total counter\n"
        b"wgsigd_save_failures_total 0\n"
        b"# HELP wgsigc_path Path in use.\n"
        b"# TYPE wgsigc_path gauge\n"
        b'wgsigc_path{interface="wg0",peer="k",kind="lan"} 1\n'
        b"# HELP wgsigd_empty No samples yet.\n"
        b"# TYPE wgsigd_empty gauge\n"
    )


def test_label_values_escape_backslash_quote_and_newline() -> None:
    text = encode([family("m", "gauge", "h", [({"l": 'a\\b"c\nd'}, 1)])])
    assert text.splitlines()[2] == b'm{l="a\\\\b\\"c\\nd"} 1'


def test_help_escapes_backslash_and_newline_but_not_quotes() -> None:
    text = encode([single("m", "untyped", 'a\\b\n"c"', 1)])
    assert text.splitlines()[0] == b'# HELP m a\\\\b\\n"c"'


def test_utf8_label_values() -> None:
    text = encode([family("m", "gauge", "h", [({"name": "büro"}, 1)])])
    assert 'm{name="büro"} 1'.encode() in text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"), (42, "42"), (-3, "-3"), (2.0, "2"), (0.5, "0.5"), (1.25e-7, "1.25e-07"), (1e20, "1e+20"),
        (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (1234567.125, "1234567.125"),
    ],
)
def test_values(value: float, text: str) -> None:
    assert format_value(value) == text


def test_a_boolean_is_not_a_value() -> None:
    with pytest.raises(TypeError):
        format_value(True)


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "wgsig.d"])
def test_bad_metric_names_refused(name: str) -> None:
    with pytest.raises(ValueError, match="metric name"):
        single(name, "gauge", "h", 1)


@pytest.mark.parametrize("label", ["", "1a", "a-b", "__reserved"])
def test_bad_label_names_refused(label: str) -> None:
    with pytest.raises(ValueError, match="label name"):
        family("m", "gauge", "h", [({label: "v"}, 1)])


def test_bad_type_refused() -> None:
    with pytest.raises(ValueError, match="metric type"):
        single("m", "histogram", "h", 1)


def test_duplicate_label_sets_refused_in_any_order() -> None:
    with pytest.raises(ValueError, match="two samples"):
        Family("m", "gauge", "h", (Sample((("a", "1"), ("b", "2")), 1), Sample((("b", "2"), ("a", "1")), 2)))


def test_a_family_appears_once() -> None:
    with pytest.raises(ValueError, match="twice"):
        encode([single("m", "gauge", "h", 1), single("m", "gauge", "h", 2)])


def test_every_line_ends_in_newline_and_empty_input_is_empty() -> None:
    assert encode([]) == b""
    assert encode([single("m", "gauge", "h", 1)]).endswith(b"\n")
