"""Metrics in the Prometheus text exposition format (version 0.0.4): a pure codec.

node-exporter's textfile collector reads ``*.prom`` files of this format (Debian's
prometheus-node-exporter: /var/lib/prometheus/node-exporter).  A file is a list of metric
families; each has a ``# HELP`` line, a ``# TYPE`` line and one line per sample:

    # HELP wgsigd_answers_total Requests answered.
    # TYPE wgsigd_answers_total counter
    wgsigd_answers_total{group="7"} 12

Label values escape backslash, double quote and newline (``\\\\``, ``\\"``, ``\\n``); help
texts escape backslash and newline.  No timestamps: the textfile collector refuses them.
Writing the file (and the clocks the values come from) is the shells' business.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from wgsig.plainclass import dataclass

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = ("counter", "gauge", "untyped")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float


@dataclass(frozen=True)
class Family:
    """One metric family: its name, type, help text and samples (label sets unique)."""

    name: str
    kind: str
    help: str
    samples: tuple[Sample, ...]

    def __post_init__(self) -> None:
        if not _METRIC_NAME.match(self.name):
            raise ValueError(f"{self.name!r} is not a Prometheus metric name")
        if self.kind not in TYPES:
            raise ValueError(f"{self.kind!r} is not a metric type ({', '.join(TYPES)})")
        seen = set()
        for sample in self.samples:
            names = [name for name, _ in sample.labels]
            for name in names:
                if not _LABEL_NAME.match(name) or name.startswith("__"):
                    raise ValueError(f"{self.name}: {name!r} is not a Prometheus label name")
            if len(set(names)) != len(names):
                raise ValueError(f"{self.name}: a label appears twice in {sample.labels}")
            key = tuple(sorted(sample.labels))
            if key in seen:
                raise ValueError(f"{self.name}: two samples with the labels {sample.labels}")
            seen.add(key)


def family(name: str, kind: str, help: str, samples: Iterable[tuple[Mapping[str, str], float]]) -> Family:
    """A family from (labels, value) pairs; labels keep their order."""
    return Family(name, kind, help, tuple(Sample(tuple(labels.items()), value) for labels, value in samples))


def single(name: str, kind: str, help: str, value: float) -> Family:
    """A family of one sample without labels."""
    return Family(name, kind, help, (Sample((), value),))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Integers without a fraction, other floats as Python's shortest repr; NaN and the infinities
    as Prometheus spells them."""
    if isinstance(value, bool):
        raise TypeError("a metric value is a number, not a boolean")
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def encode(families: Iterable[Family]) -> bytes:
    """The text of ``families``, in their order, one family once; UTF-8, each line ending in \\n."""
    lines = []
    names = set()
    for f in families:
        if f.name in names:
            raise ValueError(f"metric family {f.name} appears twice")
        names.add(f.name)
        lines.append(f"# HELP {f.name} {escape_help(f.help)}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for sample in f.samples:
            if sample.labels:
                labels = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in sample.labels)
                lines.append(f"{f.name}{{{labels}}} {format_value(sample.value)}")
            else:
                lines.append(f"{f.name} {format_value(sample.value)}")
    return "".join(line + "\n" for line in lines).encode()
