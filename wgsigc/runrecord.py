"""The record of wgsigc's last run on an interface: what it did, for ``wgsigc status``
and for the next run (since when a peer has been waiting for a handshake).

Stored as JSON at ``$STATE_DIRECTORY/wgsigc-IFNAME.json`` (the systemd unit sets
StateDirectory=wgsig, so /var/lib/wgsig), written atomically.
"""

from __future__ import annotations

import math
import os

from wgsig.endpoint import Endpoint, endpoint_text, parse_endpoint
from wgsig.host import lightjson  # json's reading and writing, without the json package's import
from wgsig.host.atomicfile import create_temporary, remove_temporary
from wgsig.keys import PublicKey
from wgsig.label import is_valid_label
from wgsigc.plan import PeerMemory, Plan

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from typing import Any

    from wgsig.host.atomicfile import StrPath

VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 (wgsig 0.1.0) had only the endpoint and since


def build_record(
    interface: str,
    now: float,
    exit_code: int,
    messages: list[str],
    plan: Plan | None,
    servers: list[dict[str, Any]],
    applied: bool,
    carried_pending: dict[PublicKey, PeerMemory] | None = None,
    carried_own: Endpoint | None = None,
    nat: str | None = None,
) -> dict[str, Any]:
    """The JSON-ready record of one run (pure). ``nat``: what this host's NAT was seen to do."""
    peers = []
    if plan is not None:
        for d in plan.decisions:
            peers.append(
                {
                    "public_key": str(d.public_key),
                    "action": d.action.value,
                    "detail": d.detail,
                    "applied": applied and d.write is not None,
                    "server_endpoint": endpoint_text(d.server_endpoint),
                    "kernel_endpoint_before": endpoint_text(d.kernel_endpoint),
                    "record_time": d.record_time,
                    "latest_handshake": d.latest_handshake,
                    "problem": d.problem,
                    "pending": None if d.pending is None else memory_json(d.pending),
                    "candidates": [
                        {"endpoint": endpoint_text(c.endpoint), "kind": c.kind} for c in d.candidates
                    ],
                    "in_use": d.in_use,
                    "why": d.why,
                }
            )
    elif carried_pending:
        # The run failed before deciding anything: keep what the previous run remembered.
        for key, pending in carried_pending.items():
            peers.append(
                {"public_key": str(key), "action": "not handled (run failed)", "detail": "", "applied": False,
                 "pending": memory_json(pending)}
            )
    return {
        "version": VERSION,
        "interface": interface,
        "time": now,
        "exit_code": exit_code,
        "messages": messages,
        "own_endpoint": endpoint_text(plan.own_endpoint if plan is not None and plan.own_endpoint else carried_own),
        "servers": servers,
        "nat": nat,
        "peers": peers,
    }


def memory_json(memory: PeerMemory) -> dict[str, Any]:
    return {
        "endpoint": endpoint_text(memory.endpoint),
        "since": memory.since,
        "waiting_since": memory.waiting_since,
        "record_endpoint": endpoint_text(memory.record_endpoint),
        "record_label": memory.record_label.hex(),
        "announced": [endpoint_text(e) for e in memory.announced],
        "worked": [{"endpoint": endpoint_text(e), "handshake": t} for e, t in memory.worked],
        "resting": memory.resting,
        "following": memory.following,
        "candidates": [endpoint_text(e) for e in memory.candidates],
        "relay": memory.relay,
        "probe_since": memory.probe_since,
        "probed": memory.probed,
    }


_LARGEST = 2.0**63  # no time or count of ours comes near: a larger number is damage, not data


def finite(value: Any) -> bool:
    """A JSON number wgsigc could have written: not a bool, not NaN or infinite, not huge."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) < _LARGEST if isinstance(value, int) else math.isfinite(value) and abs(value) < _LARGEST


def _number(value: Any) -> float | None:
    return float(value) if finite(value) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _memory(raw: dict[str, Any]) -> PeerMemory:
    """A peer's memory from its JSON; anything missing or malformed is simply not remembered."""
    label = raw.get("record_label")
    try:
        record_label = bytes.fromhex(label) if isinstance(label, str) else b""
    except ValueError:
        record_label = b""
    if record_label and not is_valid_label(record_label):
        record_label = b""
    worked = []
    for entry in _list(raw.get("worked")):
        if isinstance(entry, dict):
            endpoint, when = parse_endpoint(entry.get("endpoint")), _number(entry.get("handshake"))
            if endpoint is not None and when is not None:
                worked.append((endpoint, when))
    announced = tuple(e for e in (parse_endpoint(t) for t in _list(raw.get("announced"))) if e)
    candidates = tuple(e for e in (parse_endpoint(t) for t in _list(raw.get("candidates"))) if e)
    record_endpoint = parse_endpoint(raw.get("record_endpoint"))
    return PeerMemory(
        parse_endpoint(raw.get("endpoint")), _number(raw.get("since")) or 0.0, _number(raw.get("waiting_since")),
        record_endpoint if record_label else None, record_label if record_endpoint else b"", announced,
        tuple(worked), raw.get("resting") is True, raw.get("following") is True, candidates,
        raw.get("relay") is True, _number(raw.get("probe_since")), _number(raw.get("probed")) or 0.0,
    )


def own_endpoint_from(record: dict[str, Any] | None) -> Endpoint | None:
    """This host's public endpoint as the last run saw it (pure)."""
    return parse_endpoint(record.get("own_endpoint")) if record else None


def pending_from(record: dict[str, Any] | None) -> dict[PublicKey, PeerMemory]:
    """What the last run remembered about each peer (pure)."""
    result: dict[PublicKey, PeerMemory] = {}
    if not record:
        return result
    for peer in _list(record.get("peers")):
        if not isinstance(peer, dict) or not isinstance(peer.get("pending"), dict):
            continue
        key = PublicKey.parse(peer.get("public_key"))
        if key is not None:
            memory = _memory(peer["pending"])
            if record.get("version") == 1 and memory.waiting_since is None and memory.endpoint is not None:
                memory = PeerMemory(memory.endpoint, memory.since, memory.since)
            result[key] = memory
    return result


def load(path: StrPath) -> dict[str, Any] | None:
    """The last record, or None when there is none or it is not valid (a fresh start is safe)."""
    return read(path)[0]


def read(path: StrPath) -> tuple[dict[str, Any] | None, str | None]:
    """The last record and None, or None and one line saying why it is ignored (None, None: no record).

    Validated here, once: ``wgsigc status`` and the next kernel run take the types as written, so a
    hand-edited or damaged file (NaN, a string for a time) is no record, never a traceback.
    """
    try:
        with open(path) as file:  # as Path.read_text() reads
            text = file.read()
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as error:  # ValueError: not UTF-8
        why = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
        return None, _ignored(path, why)
    try:
        data = lightjson.loads(text, parse_constant=_no_constant)
    except _NotANumber as error:
        return None, _ignored(path, str(error))
    except ValueError as error:
        return None, _ignored(path, f"not JSON: {error}")
    problem = validate(data)
    return (data, None) if problem is None else (None, _ignored(path, problem))


def _ignored(path: StrPath, why: str) -> str:
    return f"run record {path} is not valid ({why}): ignored, as if there were none; the next run replaces it"


class _NotANumber(ValueError):
    """NaN or Infinity in the file: Python's json reads them, wgsigc never writes them."""


def _no_constant(name: str) -> Any:
    raise _NotANumber(f"it holds {name}")


# Top-level and per-peer fields, the types status and the next run rely on ("number": finite).
_RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "interface": ("str",), "time": ("number",), "exit_code": ("int",), "messages": ("list",),
    "own_endpoint": ("str", "null"), "servers": ("list",), "peers": ("list",),
}
_PEER_FIELDS: dict[str, tuple[str, ...]] = {
    "public_key": ("str",), "action": ("str",), "detail": ("str",), "applied": ("bool",),
    "server_endpoint": ("str", "null"), "kernel_endpoint_before": ("str", "null"),
    "record_time": ("number", "null"), "latest_handshake": ("number", "null"), "problem": ("str", "null"),
    "pending": ("dict", "null"), "candidates": ("list",), "in_use": ("str", "null"), "why": ("str", "null"),
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return ("int" if isinstance(value, int) else "float") if finite(value) else "non-finite number"
    names: dict[type, str] = {str: "str", list: "list", dict: "dict"}
    return names.get(type(value), type(value).__name__)


def _type_ok(value: Any, allowed: tuple[str, ...]) -> bool:
    kind = _kind(value)
    return kind in allowed or (kind in ("int", "float") and "number" in allowed)


def validate(data: Any) -> str | None:
    """Why ``data`` is not a run record this version reads, or None (pure)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("version") not in READABLE_VERSIONS:
        return f"version {data.get('version')!r}, this wgsigc reads {', '.join(map(str, READABLE_VERSIONS))}"
    bad = _non_finite(data)
    if bad is not None:
        return f"{bad} is not a finite number"
    for name, allowed in _RECORD_FIELDS.items():
        if name in data and not _type_ok(data[name], allowed):
            return f"{name} is {_kind(data[name])}, not {' or '.join(allowed)}"
    for index, peer in enumerate(data.get("peers", [])):
        if not isinstance(peer, dict):
            return f"peers[{index}] is {_kind(peer)}, not dict"
        for name, allowed in _PEER_FIELDS.items():
            if name in peer and not _type_ok(peer[name], allowed):
                return f"peers[{index}].{name} is {_kind(peer[name])}, not {' or '.join(allowed)}"
    return None


def _non_finite(value: Any, where: str = "a value") -> str | None:
    """Where the first NaN, infinity or huge integer is (1e999 parses as infinity without a constant)."""
    if isinstance(value, dict):
        return next((b for k, v in value.items() if (b := _non_finite(v, str(k))) is not None), None)
    if isinstance(value, list):
        return next((b for v in value if (b := _non_finite(v, where)) is not None), None)
    if isinstance(value, int | float) and not isinstance(value, bool) and not finite(value):
        return where
    return None


def save(path: StrPath, record: dict[str, Any]) -> None:
    """Write atomically: a reader sees the old record or the new one, never half of one."""
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    fd, tmp = create_temporary(path)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(lightjson.dumps(record, indent=1, sort_keys=True))
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        remove_temporary(tmp)
        raise
