"""The record of wgsigc's last run on an interface: what it did, for ``wgsigc status``
and for the next run (since when a peer has been waiting for a handshake).

Stored as JSON at ``$STATE_DIRECTORY/wgsigc-IFNAME.json`` (the systemd unit sets
StateDirectory=wgsig, so /var/lib/wgsig), written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from wgsig.keys import key_text, parse_public_key
from wgsigc.plan import Endpoint, Pending, Plan

VERSION = 1


def endpoint_text(endpoint: Endpoint | None) -> str | None:
    return None if endpoint is None else f"{endpoint[0]}:{endpoint[1]}"


def parse_endpoint(text: Any) -> Endpoint | None:
    if not isinstance(text, str) or ":" not in text:
        return None
    host, _, port = text.rpartition(":")
    try:
        return host, int(port)
    except ValueError:
        return None


def build_record(
    interface: str,
    now: float,
    exit_code: int,
    messages: list[str],
    plan: Plan | None,
    servers: list[dict[str, Any]],
    applied: bool,
    carried_pending: dict[bytes, Pending] | None = None,
) -> dict[str, Any]:
    """The JSON-ready record of one run (pure)."""
    peers = []
    if plan is not None:
        for d in plan.decisions:
            peers.append(
                {
                    "public_key": key_text(d.public_key),
                    "action": d.action.value,
                    "detail": d.detail,
                    "applied": applied and d.write is not None,
                    "server_endpoint": endpoint_text(d.server_endpoint),
                    "kernel_endpoint_before": endpoint_text(d.kernel_endpoint),
                    "record_time": d.record_time,
                    "latest_handshake": d.latest_handshake,
                    "problem": d.problem,
                    "pending": None if d.pending is None else {
                        "endpoint": endpoint_text(d.pending.endpoint), "since": d.pending.since,
                    },
                }
            )
    elif carried_pending:
        # The run failed before deciding anything: keep what the previous run remembered.
        for key, pending in carried_pending.items():
            peers.append(
                {"public_key": key_text(key), "action": "not handled (run failed)", "detail": "", "applied": False,
                 "pending": {"endpoint": endpoint_text(pending.endpoint), "since": pending.since}}
            )
    return {
        "version": VERSION,
        "interface": interface,
        "time": now,
        "exit_code": exit_code,
        "messages": messages,
        "own_endpoint": endpoint_text(plan.own_endpoint) if plan is not None else None,
        "servers": servers,
        "peers": peers,
    }


def pending_from(record: dict[str, Any] | None) -> dict[bytes, Pending]:
    """What the last run remembered about peers waiting for a handshake (pure)."""
    result: dict[bytes, Pending] = {}
    if not record:
        return result
    for peer in record.get("peers") or ():
        if not isinstance(peer, dict) or not isinstance(peer.get("pending"), dict):
            continue
        key = parse_public_key(str(peer.get("public_key", "")))
        endpoint = parse_endpoint(peer["pending"].get("endpoint"))
        since = peer["pending"].get("since")
        if key is not None and endpoint is not None and isinstance(since, int | float):
            result[key] = Pending(endpoint, float(since))
    return result


def load(path: Path) -> dict[str, Any] | None:
    """The last record, or None when there is none or it is unreadable (a fresh start is safe)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == VERSION else None


def save(path: Path, record: dict[str, Any]) -> None:
    """Write atomically: a reader sees the old record or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(record, file, indent=1, sort_keys=True)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
