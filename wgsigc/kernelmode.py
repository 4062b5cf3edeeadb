"""Kernel mode: register each configured WireGuard interface and write its peers' endpoints.

    wgsigc [--config FILE] [--interface NAME] [--dry-run]

Per interface: read it and this host's addresses (netlink), register from
WireGuard's own port and fetch the tables (``wgsigc.signalling``: IPv4 and
IPv6, X1 candidates), merge the records by newest label, decide
(``wgsigc.plan``, pure), write; while a peer waits for a handshake, keep
fetching and deciding for up to ``converge_seconds``; record what was done for
``wgsigc status``, and write the run's metrics (``wgsigc.metricsfile``).

Exit codes (per run; the first failing interface's code when several fail):
0 all went well, 1 socket or netlink error or missing capability, 2 no valid
answer from any server, 3 no server name could be resolved, 4 interface
problem (missing, not WireGuard, no key or port), 5 a peer cannot be reached
(hairpin NAT needed, no handshake after its endpoint was set; a symmetric NAT
here is named then, a warning only while every peer is reached),
6 configuration or secret file error.
"""

from __future__ import annotations

import os
import sys
import time

from wgsig.client import GroupCredentials, newest_records
from wgsig.endpoint import Endpoint, endpoint_text
from wgsig.host.configfile import MetricsDirectory
from wgsig.host.secretfile import SecretFileError, load_secret, resolve_secret_path
from wgsig.keys import PublicKey
from wgsig.plainclass import dataclass, field
from wgsig.wire import Record
from wgsigc import localaddrs, netlink, runrecord
from wgsigc.candidates import LocalView
from wgsigc.config import ConfigError, InterfaceConfig, config_cache_file, load_config, state_file_for
from wgsigc.exitcodes import (
    EXIT_INTERFACE,
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_PEER,
    EXIT_RESOLVE,
    EXIT_SOCKET,
    EXIT_USAGE,
    WgsigcError,
)
from wgsigc.natview import NatView, Registration, observe, verdict
from wgsigc.plan import Action, InterfaceState, PeerMemory, Plan, Settings, plan
from wgsigc.relayplan import relay_peers, with_relays
from wgsigc.signalling import (
    CLFLG_CHECK,
    ServerOutcome,
    announced_from,
    fetch,
    fetch_all,
    merged_items,
    own_items,
    register_and_fetch,
    resolve_servers,
)

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from typing import Any, TextIO


@dataclass
class Run:
    """Everything one interface's run produced, for output and the run record."""

    config: InterfaceConfig
    dry_run: bool
    code: int = EXIT_OK
    messages: list[str] = field(default_factory=list)
    servers: list[ServerOutcome] = field(default_factory=list)
    plan: Plan | None = None
    applied: bool = False
    written: set[PublicKey] = field(default_factory=set)  # peers whose endpoint this run wrote
    refused: set[PublicKey] = field(default_factory=set)  # peers whose unusable record endpoint was reported
    nat: NatView | None = None  # what this host's NAT did with its registrations
    portmap_path: str | None = None  # the port mapping's state file (wgsigc.portmapping)
    port_mapping_done: bool = False

    def fail(self, code: int, message: str) -> None:
        if self.code == EXIT_OK:
            self.code = code
        self.messages.append(message)


def run_kernel_mode(config_path: str, interface: str | None, dry_run: bool) -> int:
    try:
        config = load_config(config_path, None if dry_run else config_cache_file())
    except ConfigError as error:
        print(f"wgsigc: {error}", file=sys.stderr)
        return EXIT_USAGE
    interfaces = config.interfaces
    if interface is not None:
        interfaces = tuple(i for i in interfaces if i.name == interface)
        if not interfaces:
            print(f"wgsigc: interface {interface} is not configured in {config_path}", file=sys.stderr)
            return EXIT_USAGE
    code = EXIT_OK
    for entry in interfaces:
        run = handle_interface(entry, dry_run, metrics=config.metrics_directory)
        if code == EXIT_OK:
            code = run.code
    return code


def handle_interface(config: InterfaceConfig, dry_run: bool, out: TextIO | None = None,
                     err: TextIO | None = None, metrics: MetricsDirectory | None = None) -> Run:
    out = out or sys.stdout
    err = err or sys.stderr
    run = Run(config, dry_run)
    path = state_file_for(config)
    run.portmap_path = os.path.splitext(path)[0] + ".portmap.json"  # portmapping.state_path, without its import
    last, problem = runrecord.read(path)
    if problem is not None:
        run.messages.append(f"warning: {problem}")
    previous = runrecord.pending_from(last)
    own_before = runrecord.own_endpoint_from(last)
    now = time.time()
    started = time.monotonic()
    try:
        _run_interface(run, previous, out, own_before)
    except WgsigcError as error:
        run.code = error.exit_code  # what stopped the run outranks peer problems found before it
        run.messages.append(str(error))
        if error.exit_code == EXIT_INTERFACE and not run.port_mapping_done:
            _port_mapping(run, None)  # the interface is gone: delete the mapping made for it
    for message in run.messages:
        print(f"wgsigc: {config.name}: {message}", file=err)
    if run.plan is not None:
        _report(run, out)
    if not dry_run:
        record = runrecord.build_record(
            config.name, now, run.code, run.messages, run.plan, [s.as_json() for s in run.servers], run.applied,
            previous if run.plan is None else None, own_before, run.nat.summary if run.nat is not None else None,
        )
        try:
            runrecord.save(path, record)
        except OSError as error:
            print(f"wgsigc: {config.name}: cannot save the run record {path}: {error.strerror}", file=err)
        if metrics is not None and metrics.in_use():
            # only where metrics are written (by default where node-exporter's directory exists):
            # every import delays the run
            from wgsigc import metricsfile

            metricsfile.write(metrics, config.name, run.code, time.time(), time.monotonic() - started, run.plan, err)
    return run


def _run_interface(run: Run, previous: dict[PublicKey, PeerMemory], out: TextIO,
                   own_before: Endpoint | None = None) -> None:
    config = run.config
    started = time.monotonic()
    try:
        secret = load_secret(resolve_secret_path(config.secret_file))
        credentials = GroupCredentials(config.group, secret, config.encrypt)
    except SecretFileError as error:  # the core's error: it knows no exit codes
        raise WgsigcError(str(error), EXIT_USAGE) from None
    state = netlink.read_interface(config.name)
    run.servers = resolve_servers(config)
    local, announce = _local_view(run, state)
    mapped = _port_mapping(run, state.listen_port) if state.listen_port else []
    items = own_items(announce, state.listen_port, config.advertise + tuple(mapped)) if config.candidates else []
    try:
        if run.dry_run:
            for outcome in run.servers:
                if outcome.reachable is not None:
                    fetch(outcome, state, credentials, config, CLFLG_CHECK)
        else:
            _check_port(state)
            register_and_fetch(run.servers, state, credentials, config, items, config.ipv6 and local.global_ipv6,
                               relay_peers(previous))
    except OSError as error:
        raise WgsigcError(f"socket error: {error.strerror or error}", EXIT_SOCKET) from None
    answered = [s for s in run.servers if s.records is not None]
    for server in run.servers:
        if server.error is not None and answered:
            run.messages.append(f"warning: {server.error} (using the other servers' answers)")
    if not answered:
        codes = [EXIT_NO_ANSWER if s.reachable is not None else EXIT_RESOLVE for s in run.servers]
        raise WgsigcError("; ".join(s.error or "no answer" for s in run.servers), min(codes))
    if not run.dry_run:
        state = _read_again(state)
    memory = previous
    run.plan = _decide(run, state, local, memory, own_before)  # later ticks: this host did not move again
    run.nat = observe(
        [Registration(s.name, s.registered) for s in run.servers if s.registered is not None], state.listen_port,
        announce, config.advertise + tuple(mapped),
    )
    if run.dry_run:
        _problems(run)
        return
    try:
        _converge(run, state, credentials, local, memory, items, started, out)
    finally:
        _problems(run)  # also when the interface vanished: its code still decides


def _converge(run: Run, state: InterfaceState, credentials: GroupCredentials, local: LocalView,
              memory: dict[PublicKey, PeerMemory], items: list[Any], started: float, out: TextIO) -> None:
    config = run.config
    assert run.plan is not None
    _apply(run, state, out)
    # A tunnel within seconds: while a peer waits for its first handshake (or is being moved
    # through its candidates), keep fetching and judging, so that a peer that just came online
    # is learned and reached at once rather than at the next timer run.
    last_fetch = time.monotonic()
    while run.plan.waiting and time.monotonic() - started < config.converge_seconds:
        time.sleep(TICK)
        if time.monotonic() - last_fetch >= POLL_INTERVAL:
            fetch_all(run.servers, state, credentials, config, items, relay_peers(run.plan.memory(memory)))
            last_fetch = time.monotonic()
        state = _read_again(state)
        memory = run.plan.memory(memory)
        run.plan = _decide(run, state, local, memory)
        _apply(run, state, out)


TICK = 0.5  # how often a converging run re-reads the interface (handshakes, candidate steps)
POLL_INTERVAL = 0.5  # how often it fetches the servers meanwhile (two small exchanges a second)


def _port_mapping(run: Run, listen_port: int | None) -> list[Endpoint]:
    """Request, renew or delete the router's mapping of WireGuard's port (off by default); the
    mapped endpoint to announce. Not in a dry run; no import unless mapping is on or was."""
    assert run.portmap_path is not None
    run.port_mapping_done = True
    if run.dry_run or (run.config.port_mapping == "off" and not os.path.exists(run.portmap_path)):
        return []
    from pathlib import Path

    from wgsigc import portmapping

    outcome = portmapping.maintain(run.config.port_mapping, listen_port, Path(run.portmap_path), time.time(),
                                   f"wgsigc {run.config.name}")
    run.messages.extend(outcome.lines)
    return [outcome.announce] if outcome.announce is not None else []


def _check_port(state: InterfaceState) -> None:
    if not state.listen_port:
        raise netlink.InterfaceError(
            f"interface {state.name} has no listen port yet (down, no ListenPort): set one with"
            f" 'wg set {state.name} listen-port PORT' so that peers can reach it"
        )


def _local_view(run: Run, state: InterfaceState) -> tuple[LocalView, list[str]]:
    """This host's addresses (netlink): what to announce and what the candidate choice needs."""
    config = run.config
    try:
        found = localaddrs.read_local(state.name, config.exclude_candidates)
    except localaddrs.LocalAddressError as error:
        run.messages.append(f"warning: {error}; no LAN candidates announced")
        return LocalView(), []
    return LocalView(None, tuple(found.onlink), found.global_ipv6), list(found.announce)


def _decide(run: Run, state: InterfaceState, local: LocalView, memory: dict[PublicKey, PeerMemory],
            own_before: Endpoint | None = None) -> Plan:
    config = run.config
    answered = [s for s in run.servers if s.records is not None]
    records = newest_records((s.records or [] for s in answered), time.time())
    views: dict[bytes, list[Record]] = {}
    for s in answered:
        for r in s.records or []:
            views.setdefault(r.peer_id, []).append(r)
    own = records.get(state.public_key)
    if own is not None and own.port:
        local = LocalView(own.ip, local.onlink, local.global_ipv6)
    announced = announced_from(merged_items(answered)) if config.candidates else {}
    settings = Settings(
        config.keepalive, config.handshake_threshold, config.handshake_timeout, config.max_age, config.extra_peers
    )
    now = time.time()
    decided = plan(state, records, settings, now, memory, announced=announced, local=local,
                   own_before=own_before, views=views)
    decided = with_relays(decided, state, memory, now)  # ask for a relay, or leave it, when due
    for d in decided.decisions:
        # once per peer and run: a converging run decides every half second
        if d.refused is not None and d.public_key not in run.refused:
            run.refused.add(d.public_key)
            run.messages.append(f"warning: peer {d.public_key}: {d.refused}; never written to the kernel")
    return decided


def _problems(run: Run) -> None:
    """The run's verdict on its peers: a symmetric NAT here fails the run only when a peer could
    not be reached (a tunnel that came up by roaming is fine); a peer's problem names what this
    host's NAT was seen to do, which tells the admin on which side to look."""
    assert run.plan is not None
    problems = run.plan.problems
    failure, warning = verdict(run.nat, bool(problems))
    if failure is not None:
        run.fail(EXIT_PEER, failure)
    elif warning is not None:
        run.messages.append(f"warning: {warning}")
    for problem in problems:
        seen = f" ({run.nat.summary})" if run.nat is not None and failure is None else ""
        run.fail(EXIT_PEER, problem + seen)


def _apply(run: Run, state: InterfaceState, out: TextIO) -> None:
    """Carry out the plan's writes and say what changed, one line each."""
    assert run.plan is not None
    if not run.plan.writes:
        return
    config = run.config
    try:
        from wgsigc import pyroute2load  # only a run that writes loads pyroute2

        fixed_flags = pyroute2load.sends_kernel_peer_flags()
        errors = netlink.apply_writes(config.name, run.plan.writes, fixed_flags)
    except netlink.InterfaceError as error:
        raise netlink.InterfaceError(f"{error}; stopped writing its peers") from None
    run.applied = True
    for d in run.plan.decisions:
        if d.write is not None:
            run.written.add(d.public_key)
            # flushed: under systemd stdout is a pipe, and a converging run lasts up to 25 s;
            # the journal should say when the endpoint changed, not when the run ended
            print(f"{config.name}: peer {d.public_key}: {d.action.value}: {d.detail}", file=out,
                  flush=True)
    for error_line in errors:
        run.fail(EXIT_SOCKET, error_line)


def _read_again(before: InterfaceState) -> InterfaceState:
    """Registering and fetching take seconds: plan on the interface as it is now, so that the
    writes carry the current allowed IPs, and stop if it vanished or was re-keyed meanwhile."""
    try:
        now = netlink.read_interface(before.name)
    except WgsigcError as error:
        raise WgsigcError(f"{error}; nothing was written to it", error.exit_code) from None
    if (now.public_key, now.listen_port) != (before.public_key, before.listen_port):
        raise netlink.InterfaceError(
            f"interface {before.name} changed during the run (new private key or listen port);"
            " nothing was written, run wgsigc again"
        )
    return now


def _resolve_servers(run: Run) -> None:
    run.servers = resolve_servers(run.config)


def _register_and_fetch(run: Run, state: InterfaceState, credentials: GroupCredentials) -> None:
    """One registration and fetch with every server, without candidates (tests call it directly)."""
    _check_port(state)
    register_and_fetch(run.servers, state, credentials, run.config, [], ipv6=False)


def _report(run: Run, out: TextIO) -> None:
    """In a dry run one line per decision; then a summary (the changes were printed as made)."""
    assert run.plan is not None
    name = run.config.name
    if run.dry_run:
        for d in run.plan.decisions:
            verb = "would " if d.write is not None else ""
            print(f"{name}: peer {d.public_key}: {verb}{d.action.value}: {d.detail}", file=out)
        changed = len(run.plan.writes)
    else:
        changed = len(run.written)
    healthy = sum(1 for d in run.plan.decisions if d.action in (Action.HEALTHY, Action.REOPEN))
    own = endpoint_text(run.plan.own_endpoint) or (
        "(IPv6 only)" if any(s.registered6 and s.records is not None for s in run.servers) else "(not registered)"
    )
    answered = sum(1 for s in run.servers if s.records is not None)
    verb = "would be " if run.dry_run else ""
    print(
        f"{name}: public endpoint {own}; {answered} of {len(run.servers)} servers answered;"
        f" {changed} peers {verb}updated, {healthy} healthy",
        file=out,
    )
