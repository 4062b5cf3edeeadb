"""wgsigc's metrics: ``wgsigc-IFNAME.prom`` for node-exporter's textfile collector, after each run.

``families`` (pure) turns one interface's run into metric families: the run's exit code, end and
duration, and per peer the kind of path the kernel points at, the handshake's and the record's age
at the end of the run.  ``write`` puts the file in place atomically; a failure is one line on
stderr and changes neither the run's exit code nor anything else it did.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from wgsig.host.atomicfile import replace_file
from wgsig.host.configfile import MetricsDirectory
from wgsig.metrics import Family, encode, family
from wgsigc.plan import PeerDecision, Plan

NO_PATH = "none"  # the kernel has no endpoint for the peer
OTHER_PATH = "other"  # an endpoint no candidate names: set by hand, or learned by WireGuard from the peer


def path_kind(decision: PeerDecision) -> str:
    """The kind of candidate the kernel points at after the decision ("lan", "ipv6", "public",
    "mapped", "hairpin", ... as ``wgsigc.candidates`` names them), else "none" or "other"."""
    endpoint = decision.write.endpoint if decision.write is not None else decision.kernel_endpoint
    if endpoint is None:
        return NO_PATH
    kind = next((c.kind for c in decision.candidates if c.endpoint == endpoint), None)
    if kind is not None:
        return kind
    return "public" if endpoint == decision.server_endpoint else OTHER_PATH


def file_for(directory: MetricsDirectory, interface: str) -> Path:
    return Path(directory.path) / f"wgsigc-{interface}.prom"


def families(interface: str, exit_code: int, end: float, duration: float, plan: Plan | None) -> list[Family]:
    """One run's metric families (pure); ages are as of ``end``, peers only when the run decided."""
    ifc = {"interface": interface}
    decisions = plan.decisions if plan is not None else ()
    peers = [({**ifc, "peer": str(d.public_key)}, d) for d in decisions]
    return [
        family("wgsigc_last_run_exit_code", "gauge", "Exit code of the last run (0 all went well; wgsigc(8)).",
               [(ifc, exit_code)]),
        family("wgsigc_last_run_timestamp_seconds", "gauge", "When the last run ended, UNIX seconds.", [(ifc, end)]),
        family("wgsigc_last_run_duration_seconds", "gauge", "How long the last run took, seconds.",
               [(ifc, round(duration, 3))]),
        family(
            "wgsigc_peer_path", "gauge",
            "The kind of endpoint the kernel points at for the peer (1), as the last run left it.",
            [({**labels, "kind": path_kind(d)}, 1) for labels, d in peers],
        ),
        family(
            "wgsigc_peer_handshake_age_seconds", "gauge",
            "Seconds since the peer's latest handshake, at the end of the last run (absent: never).",
            [(labels, max(0, int(end) - d.latest_handshake)) for labels, d in peers if d.latest_handshake],
        ),
        family(
            "wgsigc_peer_record_age_seconds", "gauge",
            "Age of the peer's newest record on the servers, at the end of the last run (absent: none).",
            [(labels, max(0, int(end) - d.record_time)) for labels, d in peers if d.record_time is not None],
        ),
    ]


def write(directory: MetricsDirectory, interface: str, exit_code: int, end: float, duration: float,
          plan: Plan | None, err: TextIO) -> None:
    """Write the run's metrics file if the directory is in use; one line on ``err`` if that fails."""
    if not directory.in_use():
        return
    path = file_for(directory, interface)
    try:
        replace_file(path, encode(families(interface, exit_code, end, duration, plan)))
    except OSError as error:
        print(f"wgsigc: {interface}: cannot write metrics to {path}: {error.strerror or error}", file=err)
