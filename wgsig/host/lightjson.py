"""JSON as the json module reads and writes it, without importing the json package.

``import json`` compiles six regular expressions (and loads ``re``, which loads ``enum``): in the
order of 11 M instructions, a tenth of an idle wgsigc run, which reads one small JSON file (its
last run record) and writes it again (issue 16). The reading here is the json module's own C
scanner (``_json.make_scanner``, what ``json.loads`` runs) and its string encoder
(``_json.encode_basestring_ascii``); only the layout of the written text is done here, the same
as ``json.dumps(value, indent=..., sort_keys=...)`` writes it (tests/test_lightjson.py compares
both on generated values). Anything this does not read (a mistake in the file, a byte order
mark) is handed to ``json.loads``, which raises its own error with its own message; values
json cannot write raise TypeError, as json does.

Where ``_json`` is missing (another interpreter), json itself is used.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_make_scanner: Callable[[Any], Callable[[str, int], tuple[Any, int]]] | None
try:
    from _json import encode_basestring_ascii as _string
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - an interpreter without the accelerator
    _make_scanner = None

_WHITESPACE = " \t\n\r"  # JSON's
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """What the C scanner reads off a json.JSONDecoder (its defaults, and ``parse_constant``)."""

    def __init__(self, parse_constant: Callable[[str], Any]) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = parse_constant
        self.memo: dict[str, str] = {}


def loads(text: str, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads(text, parse_constant=parse_constant)``."""
    if _make_scanner is not None and not text.startswith("\ufeff"):
        scan = _make_scanner(_Context(parse_constant or _CONSTANTS.__getitem__))
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = scan(text, start)
        except (StopIteration, ValueError):  # json.loads says what is wrong, below
            pass
        else:
            if not text[end:].strip(_WHITESPACE):
                return value
    import json  # a mistake: json's own error and message

    return json.loads(text, parse_constant=parse_constant)


def dumps(value: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    """``json.dumps(value, indent=indent, sort_keys=sort_keys)`` (its other settings the defaults)."""
    if _make_scanner is None:  # pragma: no cover
        import json

        return json.dumps(value, indent=indent, sort_keys=sort_keys)
    out: list[str] = []
    _write(value, out, indent, sort_keys, "\n" if indent is not None else "")
    return "".join(out)


def _write(value: Any, out: list[str], indent: int | None, sort_keys: bool, newline: str) -> None:
    if isinstance(value, str):
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))  # as json: an IntEnum is its number
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        inner = _inner(newline, indent)
        out.append("[")
        for index, item in enumerate(value):
            out.append(inner if index == 0 else ("," + inner if indent is not None else ", "))
            _write(item, out, indent, sort_keys, inner)
        out.append(newline + "]" if indent is not None else "]")
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = _inner(newline, indent)
        out.append("{")
        items = sorted(value.items()) if sort_keys else value.items()
        for index, (key, item) in enumerate(items):
            out.append(inner if index == 0 else ("," + inner if indent is not None else ", "))
            out.append(_key(key))
            out.append(": ")
            _write(item, out, indent, sort_keys, inner)
        out.append(newline + "}" if indent is not None else "}")
    else:
        raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def _inner(newline: str, indent: int | None) -> str:
    return newline + " " * indent if indent is not None else ""


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return float.__repr__(value)


def _key(key: Any) -> str:
    """A key as json writes it: strings as they are, numbers, booleans and None as their text."""
    if isinstance(key, str):
        return _string(key)
    if key is True:
        return '"true"'
    if key is False:
        return '"false"'
    if key is None:
        return '"null"'
    if isinstance(key, int):
        return _string(int.__repr__(key))
    if isinstance(key, float):
        return _string(_float(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {key.__class__.__name__}")
