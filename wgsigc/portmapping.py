"""Port mapping of WireGuard's port by the router: the shell around ``wgsig.portmap`` (codecs) and
``wgsigc.portmapplan`` (the decision).

One call per kernel-mode run (``maintain``): read the stored mapping, decide, talk to the router,
store the result, and return the endpoint to announce to the peers (an X1 MAPPED4 item).

- The router is the IPv4 default gateway, read from ``/proc/self/net/route`` (this network
  namespace's main table; ``/proc/net`` itself is hidden by wgsigc.service's ProcSubset=pid): one
  small file, where pyroute2's ``IPRoute`` would cost the run its import time (see
  ``wgsigc/localaddrs.py``).
- PCP first (RFC 6887), NAT-PMP when the router answers PCP with NAT-PMP's UNSUPPORTED_VERSION or
  not at all (RFC 6887 section 9), then UPnP-IGD through Debian's ``python3-miniupnpc`` if it is
  installed ("auto"; "pcp", "natpmp" and "upnp" try only that one).
- Timing: RFC 6886 retries from 250 ms doubling up to 64 s, far too long for a run every 30 s.
  Here a request is sent, sent again after ``RESEND`` if no answer came, and given up after
  ``TIMEOUT`` in all: an absent PCP/NAT-PMP server costs a run 2 x 0.75 s, and then no run
  asks again for ``portmapplan.RETRY_AFTER`` seconds.
- State: ``wgsigc-IFNAME.portmap.json`` beside the run record, written atomically.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import socket
import time
from pathlib import Path
from typing import Any

from wgsig import portmap
from wgsig.endpoint import Endpoint, endpoint_text
from wgsig.host.atomicfile import replace_file
from wgsig.plainclass import dataclass, field
from wgsig.wire import DecodeError
from wgsigc.portmapplan import LIFETIME, RETRY_AFTER, Decision, Mapping, Step, decide, mapping_from_json, protocols_for

RESEND = 0.25  # seconds before the request is sent a second time
TIMEOUT = 0.75  # seconds, in all, a protocol is given before the next one is tried
UPNP_DISCOVER_MS = 200  # per device type miniupnpc searches: LAN routers answer in milliseconds


class PortMapError(Exception):
    """One line: why this protocol gave no mapping."""


class _NatPmpOnly(PortMapError):
    """The router answered PCP as a NAT-PMP server does: try NAT-PMP."""


@dataclass
class Outcome:
    announce: Endpoint | None  # the mapped endpoint to announce this run
    mapping: Mapping | None  # what is stored after the run
    lines: list[str] = field(default_factory=list)  # what happened, for the journal
    retry_at: float | None = None


def state_path(run_record: Path) -> Path:
    return run_record.with_name(run_record.stem + ".portmap.json")


def load_state(path: Path) -> tuple[Mapping | None, float | None]:
    """The stored mapping and the time of the next attempt after a failure; (None, None) if none
    or not readable (a fresh start only costs a new request)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    retry = data.get("retry_at")
    return mapping_from_json(data.get("mapping")), float(retry) if isinstance(retry, int | float) else None


def save_state(path: Path, mapping: Mapping | None, retry_at: float | None) -> None:
    if mapping is None and retry_at is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"mapping": mapping.as_json() if mapping else None, "retry_at": retry_at}
    replace_file(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), durable=True)


def status_entry(path: Path, now: float) -> dict[str, Any] | None:
    """For ``wgsigc status``: the stored mapping (protocol, external endpoint, expiry), or None."""
    mapping, _retry = load_state(path)
    if mapping is None:
        return None
    return {"protocol": _name(mapping.protocol), "external_endpoint": endpoint_text(mapping.endpoint),
            "internal_port": mapping.internal_port, "gateway": mapping.gateway, "expires": mapping.expires,
            "expires_in": int(mapping.expires - now)}


def maintain(mode: str, listen_port: int | None, path: Path, now: float, description: str = "wgsigc") -> Outcome:
    """One run's port mapping work; never raises for network trouble (it is reported in lines)."""
    stored, retry_at = load_state(path)
    decision = decide(stored, mode, listen_port, now, retry_at)
    outcome = _carry_out(decision, stored, mode, listen_port, now, description, retry_at)
    try:
        save_state(path, outcome.mapping, outcome.retry_at)
    except OSError as error:
        outcome.lines.append(f"warning: cannot save the port mapping state {path}: {error.strerror or error}")
    return outcome


def _carry_out(decision: Decision, stored: Mapping | None, mode: str, listen_port: int | None, now: float,
               description: str, retry_at: float | None) -> Outcome:
    outcome = Outcome(decision.announce, stored, retry_at=retry_at)
    if decision.delete is not None:
        outcome.mapping = None
        try:
            _delete(decision.delete, description)
            outcome.lines.append(f"port mapping {_says(decision.delete)} deleted ({decision.why})")
        except (PortMapError, OSError) as error:
            outcome.lines.append(f"warning: port mapping {_says(decision.delete)} not deleted"
                                 f" ({decision.why}): {error}; it expires by itself")
    if decision.step in (Step.NOTHING, Step.DELETE) or listen_port is None:
        if decision.step is Step.DELETE:
            outcome.retry_at = None
        return outcome
    renewing = decision.step is Step.RENEW and stored is not None
    protocols = (stored.protocol,) if renewing and stored is not None else protocols_for(mode)
    nonce = bytes.fromhex(stored.nonce) if renewing and stored is not None and stored.nonce else os.urandom(12)
    errors = []
    for protocol in protocols:
        try:
            mapping = _request(protocol, listen_port, nonce, now, description)
        except (PortMapError, OSError) as error:
            errors.append(f"{_name(protocol)}: {error}")
            continue
        verb = "renewed" if renewing else "obtained"
        outcome.lines.append(f"port mapping {verb}: {_says(mapping)}, {mapping.lifetime} s")
        outcome.mapping, outcome.announce, outcome.retry_at = mapping, mapping.endpoint, None
        return outcome
    if renewing and stored is not None and now < stored.expires:
        outcome.lines.append(f"warning: port mapping {_says(stored)} not renewed ({'; '.join(errors)});"
                             " still announced until it expires")
        return outcome
    outcome.mapping, outcome.announce, outcome.retry_at = None, None, now + RETRY_AFTER
    outcome.lines.append(f"warning: no port mapping ({'; '.join(errors) or 'no protocol to try'});"
                         f" next attempt in {int(RETRY_AFTER)} s")
    return outcome


def _name(protocol: str) -> str:
    return {"pcp": "PCP", "natpmp": "NAT-PMP", "upnp": "UPnP-IGD"}.get(protocol, protocol)


def _says(mapping: Mapping) -> str:
    return f"{_name(mapping.protocol)} {endpoint_text(mapping.endpoint)} -> port {mapping.internal_port}"


# --- the router ------------------------------------------------------------------


def parse_proc_route(text: str) -> str | None:
    """The IPv4 default gateway in a ``/proc/net/route`` listing (pure): the first route with
    destination and mask 0 and the gateway flag, its address in host byte order as hex."""
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            destination, gateway, flags, mask = (int(fields[i], 16) for i in (1, 2, 3, 7))
        except ValueError:
            continue
        if destination == 0 and mask == 0 and flags & 0x2 and gateway:  # RTF_GATEWAY
            return str(ipaddress.IPv4Address(gateway.to_bytes(4, "little")))
    return None


def default_gateway() -> str:
    try:
        text = Path("/proc/self/net/route").read_text()  # /proc/net is hidden by ProcSubset=pid
    except OSError as error:
        raise PortMapError(f"cannot read /proc/self/net/route: {error.strerror}") from None
    gateway = parse_proc_route(text)
    if gateway is None:
        raise PortMapError("no IPv4 default gateway to ask")
    return gateway


def _request(protocol: str, port: int, nonce: bytes, now: float, description: str) -> Mapping:
    if protocol == "upnp":
        return _upnp_map(port, now, description)
    gateway = default_gateway()
    if protocol == "pcp":
        return _pcp(gateway, port, nonce, LIFETIME, now)  # _NatPmpOnly: "auto" tries NAT-PMP next
    return _natpmp(gateway, port, LIFETIME, now)


def _delete(mapping: Mapping, description: str) -> None:
    if mapping.protocol == "upnp":
        _upnp_delete(mapping)
    elif mapping.protocol == "pcp":
        _pcp(mapping.gateway, mapping.internal_port, bytes.fromhex(mapping.nonce), 0, time.time())
    else:
        _natpmp(mapping.gateway, mapping.internal_port, 0, time.time())


def _exchange(gateway: str, request: bytes, accept: Any) -> Any:
    """Send ``request`` to the gateway's port 5351 (again after RESEND), return the first answer
    ``accept`` takes (it returns None to skip one, raises DecodeError for a malformed one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((gateway, portmap.SERVER_PORT))  # answers from elsewhere are not the router's
        start = time.monotonic()
        sock.send(request)
        resent = False
        while (left := TIMEOUT - (time.monotonic() - start)) > 0:
            wait = min(left, RESEND - (time.monotonic() - start)) if not resent else left
            readable, _, _ = select.select([sock], [], [], max(wait, 0))
            if not readable:
                if not resent:
                    sock.send(request)
                    resent = True
                continue
            try:
                data = sock.recv(portmap.PCP_MAX_SIZE + 4)
            except ConnectionRefusedError:
                raise PortMapError(f"gateway {gateway} refuses port {portmap.SERVER_PORT}") from None
            with contextlib.suppress(DecodeError):
                answer = accept(data, sock.getsockname()[0])
                if answer is not None:
                    return answer
    raise PortMapError(f"no answer from gateway {gateway} within {TIMEOUT} s")


def _pcp(gateway: str, port: int, nonce: bytes, lifetime: int, now: float) -> Mapping:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((gateway, portmap.SERVER_PORT))
        client = probe.getsockname()[0]  # PCP's client address: ours towards the router
    request = portmap.pcp_map_request(client, nonce, port, port if lifetime else 0, lifetime)

    def accept(data: bytes, _local: str) -> portmap.PcpMapping | None:
        if portmap.pcp_answered_with_natpmp(data):
            raise _NatPmpOnly("the router speaks NAT-PMP only (port_mapping = \"natpmp\" or \"auto\")")
        answer = portmap.decode_pcp_map(data)
        return answer if answer.nonce in (nonce, b"") else None  # another mapping's answer

    answer = _exchange(gateway, request, accept)
    if answer.result != portmap.PcpResult.SUCCESS:
        raise PortMapError(f"gateway {gateway} refused: {_result_name(portmap.PcpResult, answer.result)}")
    return Mapping("pcp", gateway, port, answer.external_address, answer.external_port, answer.lifetime, now,
                   nonce.hex())


def _natpmp(gateway: str, port: int, lifetime: int, now: float) -> Mapping:
    request = portmap.natpmp_map_request(port, port if lifetime else 0, lifetime)

    def accept(data: bytes, _local: str) -> portmap.NatPmpMapping | None:
        answer = portmap.decode_natpmp_map(data)
        return answer if answer.internal_port in (port, 0) else None

    answer = _exchange(gateway, request, accept)
    if answer.result != portmap.NatPmpResult.SUCCESS:
        raise PortMapError(f"gateway {gateway} refused: {_result_name(portmap.NatPmpResult, answer.result)}")
    if not lifetime:
        return Mapping("natpmp", gateway, port, "0.0.0.0", 0, 0, now)
    address = _exchange(gateway, portmap.natpmp_address_request(), lambda d, _l: portmap.decode_natpmp_address(d))
    if address.result != portmap.NatPmpResult.SUCCESS:
        raise PortMapError(f"gateway {gateway} has no external address:"
                           f" {_result_name(portmap.NatPmpResult, address.result)}")
    return Mapping("natpmp", gateway, port, address.address, answer.external_port, answer.lifetime, now)


def _result_name(kind: Any, value: int) -> str:
    try:
        return str(kind(value).name)
    except ValueError:
        return f"result code {value}"


# --- UPnP-IGD (optional: python3-miniupnpc) ---------------------------------------


def _miniupnpc() -> Any:
    try:
        import miniupnpc  # Debian's python3-miniupnpc, optional
    except ImportError:
        raise PortMapError("UPnP-IGD needs python3-miniupnpc: apt install python3-miniupnpc") from None
    return miniupnpc


def _igd() -> Any:
    upnp = _miniupnpc().UPnP()
    upnp.discoverdelay = UPNP_DISCOVER_MS
    try:
        if not upnp.discover():
            raise PortMapError("no UPnP-IGD device answered on the LAN")
        upnp.selectigd()
    except PortMapError:
        raise
    except Exception as error:  # miniupnpc raises plain Exception with the library's message
        raise PortMapError(f"no UPnP-IGD: {error}") from None
    return upnp


def _upnp_map(port: int, now: float, description: str) -> Mapping:
    upnp = _igd()
    try:
        external = upnp.externalipaddress()
        upnp.addportmapping(port, "UDP", upnp.lanaddr, port, description, "", LIFETIME)
    except Exception as error:
        raise PortMapError(f"the UPnP-IGD device refused: {error}") from None
    return Mapping("upnp", "igd", port, str(external), port, LIFETIME, now)


def _upnp_delete(mapping: Mapping) -> None:
    upnp = _igd()
    try:
        upnp.deleteportmapping(mapping.external_port, "UDP")
    except Exception as error:
        raise PortMapError(f"the UPnP-IGD device refused: {error}") from None
