"""wgsigd's metrics: ``wgsigd.prom`` for node-exporter's textfile collector.

What the file says is decided by ``families`` (pure, from the server's counters); ``MetricsWriter``
renders and writes it off the answering loop (a thread, as the state store does: with 10,000
groups the text is tens of thousands of lines), atomically (``wgsig.host.atomicfile``).  A write
that fails is one error line; the next failures are quiet until a write succeeds again, and the
server keeps answering throughout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from wgsig.events import Reason
from wgsig.host.atomicfile import replace_file
from wgsig.host.configfile import MetricsDirectory
from wgsig.metrics import Family, family, single
from wgsig.server import GroupCounters

log = logging.getLogger("wgsigd")

METRICS_FILE = "wgsigd.prom"


def reason_label(reason: Reason) -> str:
    """The ``reason`` label: as the journal's REASON field says it ("rate_limited", "bad_mac", ...)."""
    return reason.name.lower()


def families(
    groups: list[GroupCounters], ungrouped: Mapping[Reason, int], save_failures: int, start_time: float
) -> list[Family]:
    """The metric families of one wgsigd (pure); rejection series appear with their first count."""
    by_group = [({"group": str(g.group_id)}, g) for g in groups]
    rejected: list[tuple[dict[str, str], float]] = [
        ({"reason": reason_label(r)}, ungrouped[r]) for r in Reason if ungrouped.get(r)
    ]
    for labels, g in by_group:
        rejected += [({**labels, "reason": reason_label(r)}, g.rejections[r]) for r in Reason if g.rejections.get(r)]
    return [
        family("wgsigd_records", "gauge", "Records in the group's table.", [(lb, g.records) for lb, g in by_group]),
        family("wgsigd_answers_total", "counter", "Requests answered.", [(lb, g.answered) for lb, g in by_group]),
        family(
            "wgsigd_answers_capped_total", "counter",
            "Answers cut to max_answer_bytes (requests that store no label, seen before).",
            [(lb, g.capped) for lb, g in by_group],
        ),
        family(
            "wgsigd_rate_limited_total", "counter",
            "Authentic requests not answered: their source had spent its answer byte budget"
            " (also in wgsigd_rejected_total).",
            [(lb, g.rejections.get(Reason.RATE_LIMITED, 0)) for lb, g in by_group],
        ),
        family(
            "wgsigd_rejected_total", "counter",
            "Datagrams dropped without an answer, by reason (and group, once it is known).", rejected,
        ),
        single("wgsigd_save_failures_total", "counter", "Saves of the records that failed.", save_failures),
        single("wgsigd_start_time_seconds", "gauge", "When this wgsigd started, UNIX seconds.", start_time),
    ]


class MetricsWriter:
    """Writes ``wgsigd.prom`` into a metrics directory, on a thread of its own or at once."""

    def __init__(self, directory: MetricsDirectory) -> None:
        self.directory = directory
        self.path = Path(directory.path) / METRICS_FILE
        self.failing = False
        self._writer: threading.Thread | None = None

    def write_async(self, render: Callable[[], bytes]) -> None:
        """Render and write on a thread; skipped while the previous write is still under way."""
        if self._writer is not None and self._writer.is_alive():
            return
        self._writer = threading.Thread(target=self.write, args=(render,), name="wgsigd-metrics", daemon=True)
        self._writer.start()

    def write(self, render: Callable[[], bytes]) -> None:
        """Render and write now (after any write under way); errors are logged, never raised."""
        if self._writer is not None and self._writer is not threading.current_thread():
            self._writer.join()
        if not self.directory.in_use():
            return  # node-exporter's default directory, not there (yet)
        try:
            replace_file(self.path, render())
        except OSError as error:
            if not self.failing:
                log.error(
                    "cannot write metrics to %s: %s (metrics_directory = \"\" in the configuration turns them off)",
                    self.path, error.strerror or error,
                )
            self.failing = True
        else:
            if self.failing:
                log.info("metrics written to %s again", self.path)
            self.failing = False
