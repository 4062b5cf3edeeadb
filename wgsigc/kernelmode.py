"""Kernel mode: register each configured WireGuard interface and write its peers' endpoints.

    wgsigc [--config FILE] [--interface NAME] [--dry-run]

Per interface: read it (netlink), register from WireGuard's own port (raw
socket while the kernel holds the port, a bound socket while it is free),
fetch the table from every server, merge the records by newest label, decide
(``wgsigc.plan``), write, and record what was done for ``wgsigc status``.

Exit codes (per run; the first failing interface's code when several fail):
0 all went well, 1 socket or netlink error or missing capability, 2 no valid
answer from any server, 3 no server name could be resolved, 4 interface
problem (missing, not WireGuard, no key or port), 5 a peer cannot be reached
(hairpin NAT needed, symmetric NAT, no handshake after its endpoint was set),
6 configuration or secret file error.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from wgsig.client import GroupCredentials, build_request, newest_records
from wgsig.keys import key_text
from wgsig.label import label_from_ns
from wgsig.secretfile import SecretFileError, load_secret, resolve_secret_path
from wgsig.wire import NO_ENDPOINT_UPDATE, NO_LABEL_UPDATE, Record
from wgsigc import netlink, runrecord
from wgsigc.config import ConfigError, InterfaceConfig, load_config, state_file_for
from wgsigc.exchange import MIN_REQUEST_GAP, ExchangeError, diagnose, exchange, resolve
from wgsigc.exitcodes import (
    EXIT_INTERFACE,
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_PEER,
    EXIT_RESOLVE,
    EXIT_SOCKET,
    EXIT_USAGE,
)
from wgsigc.plan import Action, InterfaceState, Plan, Registration, Settings, nat_diagnosis, plan
from wgsigc.rawsend import CapabilityMissing, port_is_free, send_from_port, set_mark, udp_socket

CLFLG_REGISTER = 0
CLFLG_FETCH = NO_ENDPOINT_UPDATE | NO_LABEL_UPDATE  # change nothing on the server, just answer


class InterfaceFailed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ServerOutcome:
    name: str
    address: tuple[str, int] | None = None
    records: list[Record] | None = None
    registered: tuple[str, int] | None = None  # our endpoint as this server recorded it in this run
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.name,
            "address": runrecord.endpoint_text(self.address),
            "answered": self.records is not None,
            "registered_as": runrecord.endpoint_text(self.registered),
            "error": self.error,
        }


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

    def fail(self, code: int, message: str) -> None:
        if self.code == EXIT_OK:
            self.code = code
        self.messages.append(message)


def run_kernel_mode(config_path: str, interface: str | None, dry_run: bool) -> int:
    try:
        config = load_config(config_path)
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
        run = handle_interface(entry, dry_run)
        if code == EXIT_OK:
            code = run.code
    return code


def handle_interface(config: InterfaceConfig, dry_run: bool, out: TextIO | None = None,
                     err: TextIO | None = None) -> Run:
    out = out or sys.stdout
    err = err or sys.stderr
    run = Run(config, dry_run)
    path = state_file_for(config)
    previous = runrecord.pending_from(runrecord.load(path))
    now = time.time()
    try:
        _run_interface(run, previous)
    except InterfaceFailed as error:
        run.code = error.code  # what stopped the run outranks peer problems found before it
        run.messages.append(str(error))
    for message in run.messages:
        print(f"wgsigc: {config.name}: {message}", file=err)
    if run.plan is not None:
        _report(run, out)
    if not dry_run:
        record = runrecord.build_record(
            config.name, now, run.code, run.messages, run.plan, [s.as_json() for s in run.servers], run.applied,
            previous if run.plan is None else None,
        )
        try:
            runrecord.save(path, record)
        except OSError as error:
            print(f"wgsigc: {config.name}: cannot save the run record {path}: {error.strerror}", file=err)
    return run


def _run_interface(run: Run, previous: dict[bytes, Any]) -> None:
    config = run.config
    try:
        secret = load_secret(resolve_secret_path(config.secret_file))
        credentials = GroupCredentials(config.group, secret, config.encrypt)
    except SecretFileError as error:
        raise InterfaceFailed(EXIT_USAGE, str(error)) from None
    state = _read(config.name)
    _resolve_servers(run)
    try:
        if run.dry_run:
            _fetch_all(run, state, credentials)
        else:
            _register_and_fetch(run, state, credentials)
    except CapabilityMissing as error:
        raise InterfaceFailed(EXIT_SOCKET, str(error)) from None
    except OSError as error:
        raise InterfaceFailed(EXIT_SOCKET, f"socket error: {error.strerror or error}") from None
    answered = [s for s in run.servers if s.records is not None]
    for server in run.servers:
        if server.error is not None and answered:
            run.messages.append(f"warning: {server.error} (using the other servers' answers)")
    if not answered:
        codes = [EXIT_NO_ANSWER if s.address is not None else EXIT_RESOLVE for s in run.servers]
        raise InterfaceFailed(min(codes), "; ".join(s.error or "no answer" for s in run.servers))
    records = newest_records(s.records or [] for s in answered)
    if not run.dry_run:
        state = _read_again(state)
    settings = Settings(
        config.keepalive, config.handshake_threshold, config.handshake_timeout, config.max_age, config.extra_peers
    )
    run.plan = plan(state, records, settings, time.time(), previous)
    diagnosis = nat_diagnosis(
        [Registration(s.name, s.registered) for s in run.servers if s.registered is not None], state.listen_port
    )
    if diagnosis is not None:
        run.fail(EXIT_PEER, diagnosis)
    for problem in run.plan.problems:
        run.fail(EXIT_PEER, problem)
    if run.dry_run or not run.plan.writes:
        return
    try:
        fixed_flags = netlink.has_fixed_peer_flags(netlink.pyroute2_version())
        errors = netlink.apply_writes(config.name, run.plan.writes, fixed_flags)
    except netlink.InterfaceError as error:
        raise InterfaceFailed(EXIT_INTERFACE, f"{error}; stopped writing its peers") from None
    except (netlink.CapabilityError, netlink.NetlinkFailure) as error:
        raise InterfaceFailed(EXIT_SOCKET, str(error)) from None
    run.applied = True
    for error_line in errors:
        run.fail(EXIT_SOCKET, error_line)


def _read(name: str) -> InterfaceState:
    try:
        return netlink.read_interface(name)
    except netlink.InterfaceError as error:
        raise InterfaceFailed(EXIT_INTERFACE, str(error)) from None
    except (netlink.CapabilityError, netlink.NetlinkFailure) as error:
        raise InterfaceFailed(EXIT_SOCKET, str(error)) from None


def _read_again(before: InterfaceState) -> InterfaceState:
    """Registering and fetching take seconds: plan on the interface as it is now, so that the
    writes carry the current allowed IPs, and stop if it vanished or was re-keyed meanwhile."""
    try:
        now = _read(before.name)
    except InterfaceFailed as error:
        raise InterfaceFailed(error.code, f"{error}; nothing was written to it") from None
    if (now.public_key, now.listen_port) != (before.public_key, before.listen_port):
        raise InterfaceFailed(
            EXIT_INTERFACE,
            f"interface {before.name} changed during the run (new private key or listen port);"
            " nothing was written, run wgsigc again",
        )
    return now


def _resolve_servers(run: Run) -> None:
    """Names are resolved at every run: a server that moved is followed."""
    for server in run.config.servers:
        outcome = ServerOutcome(str(server))
        try:
            outcome.address = resolve(server.host, server.port)
        except ExchangeError as error:
            outcome.error = str(error)
        run.servers.append(outcome)


def _fetch(outcome: ServerOutcome, state: InterfaceState, credentials: GroupCredentials, config: InterfaceConfig,
           sock: socket.socket | None = None, clflg: int = CLFLG_FETCH) -> None:
    assert outcome.address is not None
    own = sock if sock is not None else udp_socket(state.fwmark)
    try:
        result = exchange(
            own, outcome.address, credentials, state.public_key, clflg,
            attempts=config.attempts, attempt_timeout=config.timeout,
        )
    except ExchangeError as error:
        outcome.error = str(error)
        return
    finally:
        if sock is None:
            own.close()
    if result.records is None:
        outcome.error = diagnose(result, outcome.address)
    else:
        outcome.records = result.records


def _fetch_all(run: Run, state: InterfaceState, credentials: GroupCredentials) -> None:
    for outcome in run.servers:
        if outcome.address is not None:
            _fetch(outcome, state, credentials, run.config)


def _own(records: list[Record] | None, own_id: bytes) -> Record | None:
    return next((r for r in records or () if r.peer_id == own_id), None)


def _register_and_fetch(run: Run, state: InterfaceState, credentials: GroupCredentials) -> None:
    if not state.listen_port:
        raise InterfaceFailed(
            EXIT_INTERFACE,
            f"interface {state.name} has no listen port yet (down, no ListenPort): set one with"
            f" 'wg set {state.name} listen-port PORT' so that peers can reach it",
        )
    targets = [s for s in run.servers if s.address is not None]
    bound = port_is_free(state.listen_port)
    if bound is not None:
        # WireGuard is down and the port is free: register from it directly, as the C client does.
        with bound:
            set_mark(bound, state.fwmark)
            for outcome in targets:
                _fetch(outcome, state, credentials, run.config, bound, CLFLG_REGISTER)
                own = _own(outcome.records, state.public_key)
                if own is not None:
                    outcome.registered = (own.ip, own.port)
        return
    # The kernel holds the port: register through a raw socket, fetch from an ordinary one.
    pending = list(targets)
    for _attempt in range(run.config.attempts):
        labels = {}
        for outcome in pending:
            assert outcome.address is not None
            label = label_from_ns(time.time_ns())
            request = build_request(credentials, state.public_key, label, CLFLG_REGISTER, os.urandom)
            try:
                send_from_port(state.listen_port, outcome.address, request, state.fwmark)
            except OSError as error:
                outcome.error = f"cannot send to {outcome.name}: {error.strerror}"
                continue
            labels[outcome.name] = label
        # The C server compares labels at 16.8 ms granularity: the fetch's label must come later.
        time.sleep(MIN_REQUEST_GAP)
        retry = []
        for outcome in pending:
            if outcome.name not in labels:
                continue
            outcome.error = None
            _fetch(outcome, state, credentials, run.config)
            own = _own(outcome.records, state.public_key)
            if own is not None and own.label >= labels[outcome.name]:
                outcome.registered = (own.ip, own.port)
            elif outcome.records is not None:
                retry.append(outcome)  # the registration was lost: send it again
        pending = retry
        if not pending:
            break
    for outcome in pending:
        outcome.error = f"{outcome.name} answered, but did not record this host's registration"


def _report(run: Run, out: TextIO) -> None:
    """One line per change (or, in a dry run, per decision), then a summary."""
    assert run.plan is not None
    name = run.config.name
    verb = "would " if run.dry_run else ""
    changed = 0
    for d in run.plan.decisions:
        if d.write is not None:
            changed += 1
            print(f"{name}: peer {key_text(d.public_key)}: {verb}{d.action.value}: {d.detail}", file=out)
        elif run.dry_run:
            print(f"{name}: peer {key_text(d.public_key)}: {d.action.value}: {d.detail}", file=out)
    healthy = sum(1 for d in run.plan.decisions if d.action is Action.HEALTHY)
    own = runrecord.endpoint_text(run.plan.own_endpoint) or "(not registered)"
    answered = sum(1 for s in run.servers if s.records is not None)
    print(
        f"{name}: public endpoint {own}; {answered} of {len(run.servers)} servers answered;"
        f" {changed} peers {verb}updated, {healthy} healthy",
        file=out,
    )
