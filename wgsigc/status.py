"""``wgsigc status [--config FILE] [--interface NAME] [--json]``: what wgsig did, for people.

Per peer: its key, the endpoint the servers reported, the endpoint in the
kernel now, the record's age, the latest handshake, and what the last run did.
The last run's record comes from the state file; the kernel's side is read
live when wgsigc may (CAP_NET_ADMIN), else the view says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from wgsig.endpoint import endpoint_text
from wgsigc import runrecord
from wgsigc.config import ConfigError, InterfaceConfig, load_config, state_file_for
from wgsigc.exitcodes import EXIT_OK, EXIT_USAGE, WgsigcError
from wgsigc.plan import InterfaceState


def status_view(name: str, record: dict[str, Any] | None, live: InterfaceState | None, live_error: str | None,
                now: float, port_mapping: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status of one interface as plain data (pure): the JSON output, and what the text shows."""
    peers: dict[str, dict[str, Any]] = {}
    memories: dict[str, dict[str, Any]] = {}

    def entry(key: str) -> dict[str, Any]:
        return peers.setdefault(key, {
            "public_key": key, "server_endpoint": None, "kernel_endpoint": None, "record_age": None,
            "latest_handshake": None, "handshake_age": None, "last_action": None, "last_detail": None,
            "problem": None, "candidates": [], "in_use": None, "why": None, "worked": [], "relay": None,
        })

    for peer in _list((record or {}).get("peers")):
        if not isinstance(peer, dict) or not isinstance(peer.get("public_key"), str):
            continue
        e = entry(peer["public_key"])
        e["server_endpoint"] = peer.get("server_endpoint")
        e["kernel_endpoint"] = peer.get("kernel_endpoint_before")
        if runrecord.finite(peer.get("record_time")):
            e["record_age"] = int(now - peer["record_time"])
        if runrecord.finite(peer.get("latest_handshake")) and peer["latest_handshake"]:
            e["latest_handshake"] = peer["latest_handshake"]
        e["last_action"] = peer.get("action")
        e["last_detail"] = peer.get("detail")
        e["problem"] = peer.get("problem")
        e["candidates"] = [c for c in _list(peer.get("candidates")) if isinstance(c, dict)]
        e["in_use"] = peer.get("in_use") if isinstance(peer.get("in_use"), str) else None
        e["why"] = peer.get("why") if isinstance(peer.get("why"), str) else None
        memory: dict[str, Any] = peer["pending"] if isinstance(peer.get("pending"), dict) else {}
        e["worked"] = [w for w in _list(memory.get("worked")) if isinstance(w, dict)]
        memories[peer["public_key"]] = memory
    if live is not None:
        for key, state in live.peers.items():
            e = entry(str(key))
            e["kernel_endpoint"] = endpoint_text(state.endpoint)
            e["latest_handshake"] = state.latest_handshake or None
            _live_in_use(e, state.endpoint, state.latest_handshake, now)
    for name, e in peers.items():
        e["relay"] = _relay(e, memories.get(name, {}))  # after the live view: what the kernel points at now
        if e["latest_handshake"]:
            e["handshake_age"] = int(now - e["latest_handshake"])
    last_run = None
    if record is not None:
        last_run = {
            "time": record.get("time"),
            "age": int(now - record["time"]) if runrecord.finite(record.get("time")) else None,
            "exit_code": record.get("exit_code"),
            "messages": [m for m in _list(record.get("messages")) if isinstance(m, str)],
            "own_endpoint": record.get("own_endpoint"),
            "servers": _list(record.get("servers")),
            "nat": record.get("nat") if isinstance(record.get("nat"), str) else None,
        }
    return {
        "interface": name,
        "public_key": str(live.public_key) if live is not None else None,
        "listen_port": live.listen_port if live is not None else None,
        "live": live is not None,
        "live_error": live_error,
        "last_run": last_run,
        "port_mapping": port_mapping,  # wgsigc.portmapping.status_entry
        "peers": sorted(peers.values(), key=lambda p: str(p["public_key"])),
    }


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _relay(e: dict[str, Any], memory: dict[str, Any]) -> str | None:
    """The relay's part, one phrase: None when wgsigc neither asks for one nor has one."""
    relay = next((c.get("endpoint") for c in e["candidates"] if c.get("kind") == "relay"), None)
    asked = memory.get("relay") is True
    if relay is None:
        return "asked for (every direct candidate failed), none allocated yet" if asked else None
    if isinstance(e["in_use"], str) and e["in_use"].endswith("(relay)"):
        return f"in use: {relay} (no direct candidate got a handshake)"
    if memory.get("probe_since") is not None:
        return f"allocated: {relay}; trying a direct path again"
    return f"allocated: {relay}" + ("" if asked else ", no longer asked for (a direct path works)")


def _live_in_use(e: dict[str, Any], endpoint: Any, handshake: int, now: float) -> None:
    """Which candidate the kernel points at now, and why: the last run's reason while it is still
    on the endpoint that run left, else what the live handshake says."""
    text = endpoint_text(endpoint)
    if text is None:
        e["in_use"], e["why"] = None, None
        return
    kind = next((c.get("kind") for c in e["candidates"] if c.get("endpoint") == text), None)
    in_use = f"{text} ({kind})" if kind else f"{text} (set by hand or learned by WireGuard)"
    young = bool(handshake) and now - handshake < HEALTHY_SECONDS
    if in_use != e["in_use"] or young:
        e["why"] = f"handshake {int(now - handshake)} s ago" if young else (
            "changed since the last run" if e["in_use"] else None)
        if kind == "relay" and e["why"]:
            e["why"] += ", relayed: no direct candidate got a handshake"
    e["in_use"] = in_use


HEALTHY_SECONDS = 180  # a handshake younger than WireGuard's REJECT_AFTER_TIME keeps a session


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _age(when: Any, now: float) -> int | None:
    return int(now - when) if runrecord.finite(when) else None


def format_view(view: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = [f"interface {view['interface']}"]
    if view["public_key"]:
        lines.append(f"  public key: {view['public_key']}, listen port {view['listen_port']}")
    if view["live_error"]:
        lines.append(f"  kernel state not read: {view['live_error']}")
    run = view["last_run"]
    if run is None:
        lines.append("  last run: none recorded")
    else:
        outcome = "ok" if run["exit_code"] == 0 else f"failed (exit code {run['exit_code']})"
        lines.append(f"  last run: {_ago(run['age'])}, {outcome}; public endpoint {run['own_endpoint'] or '(unknown)'}")
        if run["nat"]:
            lines.append(f"  NAT: {run['nat']}")
        for message in run["messages"]:
            lines.append(f"    {message}")
    mapping = view.get("port_mapping")
    if mapping is not None:
        left = mapping["expires_in"]
        when = f"expires in {left} s" if left > 0 else f"expired {-left} s ago"
        lines.append(f"  port mapping: {mapping['protocol']} {mapping['external_endpoint']} -> port"
                     f" {mapping['internal_port']} (gateway {mapping['gateway']}), {when}")
    for p in view["peers"]:
        lines.append(f"  peer {p['public_key']}")
        record = f" (record {p['record_age']} s old)" if p["record_age"] is not None else ""
        lines.append(f"    server endpoint: {p['server_endpoint'] or '(none)'}{record}")
        lines.append(f"    kernel endpoint: {p['kernel_endpoint'] or '(none)'}")
        lines.append(f"    latest handshake: {_ago(p['handshake_age'])}")
        if p["candidates"]:
            known = ", ".join(f"{c.get('endpoint')} ({c.get('kind')})" for c in p["candidates"])
            lines.append(f"    candidates: {known}")
        if p["in_use"]:
            why = f", {p['why']}" if p["why"] else ""
            lines.append(f"    in use: {p['in_use']}{why}")
        if p.get("relay"):
            lines.append(f"    relay: {p['relay']}")
        if p["worked"]:
            worked = ", ".join(f"{w.get('endpoint')} ({_ago(_age(w.get('handshake'), now))})" for w in p["worked"])
            lines.append(f"    worked: {worked}")
        if p["last_action"]:
            detail = f": {p['last_detail']}" if p["last_detail"] else ""
            lines.append(f"    last run: {p['last_action']}{detail}")
        if p["problem"]:
            lines.append(f"    problem: {p['problem']}")
    return "\n".join(lines) + "\n"


def status_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wgsigc status", description="Show what wgsigc found and did, per peer.")
    parser.add_argument("--config", default="/etc/wgsig/wgsigc.toml", metavar="FILE",
                        help="configuration (default /etc/wgsig/wgsigc.toml)")
    parser.add_argument("--interface", metavar="NAME", help="show only this interface")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main_status(argv: list[str]) -> int:
    try:
        args = status_parser().parse_args(argv)
    except SystemExit as exit_:
        return EXIT_OK if exit_.code == 0 else EXIT_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"wgsigc: {error}", file=sys.stderr)
        return EXIT_USAGE
    interfaces = [i for i in config.interfaces if args.interface in (None, i.name)]
    if not interfaces:
        print(f"wgsigc: interface {args.interface} is not configured in {args.config}", file=sys.stderr)
        return EXIT_USAGE
    now = time.time()
    views = []
    for interface in interfaces:
        record, problem = runrecord.read(state_file_for(interface))
        if problem is not None:
            print(f"wgsigc: {problem}", file=sys.stderr)
        live, live_error = _live(interface.name)
        views.append(status_view(interface.name, record, live, live_error, now, _port_mapping(interface, now)))
    if args.json:
        json.dump({"interfaces": views}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n".join(format_view(v) for v in views))
    return EXIT_OK


def _port_mapping(interface: InterfaceConfig, now: float) -> dict[str, Any] | None:
    record = Path(state_file_for(interface))
    path = record.with_name(record.stem + ".portmap.json")
    if not path.exists():
        return None  # no import of the port mapping shell where it was never used
    from wgsigc import portmapping

    return portmapping.status_entry(path, now)


def _live(name: str) -> tuple[InterfaceState | None, str | None]:
    from wgsigc import netlink

    try:
        return netlink.read_interface(name), None
    except WgsigcError as error:
        return None, str(error)
