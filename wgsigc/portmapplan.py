"""When to ask the router for a port mapping of WireGuard's port, renew it or delete it (pure).

Kernel mode runs every 30 s from a timer, so the mapping a run obtained is kept in a small state
file (``wgsigc.portmapping``) and each run decides from it, the time (an argument) and the config:

- port mapping off, or the interface gone: delete the mapping a run made, if any;
- a mapping for another internal port (the listen port changed) or of another protocol than the
  one now configured: delete it and request anew;
- a mapping past half its lifetime (RFC 6886 section 3.3: renew at half the lifetime; RFC 6887
  section 11.2.1 likewise): renew it (the same nonce for PCP);
- no mapping: request one, unless the last attempt failed less than ``RETRY_AFTER`` ago (a router
  without PCP or NAT-PMP would otherwise cost every run its timeout).

What to announce: the mapped endpoint while the mapping is valid (``expires`` in the future).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

from wgsig.endpoint import Endpoint

MODES = ("off", "auto", "pcp", "natpmp", "upnp")
PROTOCOLS = ("pcp", "natpmp", "upnp")
LIFETIME = 7200  # seconds asked for: RFC 6886 section 3.3's recommendation
RETRY_AFTER = 300.0  # after a failed attempt, seconds before the next (10 timer runs)


@dataclass(frozen=True)
class Mapping:
    """A mapping the router granted: what a run stores and the next run renews or deletes."""

    protocol: str  # "pcp", "natpmp" or "upnp"
    gateway: str  # the router asked (its address; for UPnP the control URL's host)
    internal_port: int  # WireGuard's listen port
    external_address: str
    external_port: int
    lifetime: int  # seconds granted
    granted: float  # when (Unix time)
    nonce: str = ""  # PCP's mapping nonce, hex: renewals and the deletion repeat it

    @property
    def expires(self) -> float:
        return self.granted + self.lifetime

    @property
    def renew_at(self) -> float:
        return self.granted + self.lifetime / 2

    @property
    def endpoint(self) -> Endpoint:
        return self.external_address, self.external_port

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def mapping_from_json(raw: Any) -> Mapping | None:
    """A stored mapping, or None when ``raw`` is not one (a damaged file is as no file)."""
    if not isinstance(raw, dict):
        return None
    kinds: dict[str, type | tuple[type, ...]] = {
        "protocol": str, "gateway": str, "internal_port": int, "external_address": str,
        "external_port": int, "lifetime": int, "granted": (int, float), "nonce": str}
    if set(raw) != set(kinds) or any(not isinstance(raw[k], t) or isinstance(raw[k], bool) for k, t in kinds.items()):
        return None
    if raw["protocol"] not in PROTOCOLS or not 0 < raw["internal_port"] < 65536:
        return None
    return Mapping(**raw)


class Step(enum.Enum):
    NOTHING = "nothing"
    REQUEST = "request"  # ask for a new mapping (after deleting ``delete`` if set)
    RENEW = "renew"  # ask again for the stored one
    DELETE = "delete"  # only delete ``delete``


@dataclass(frozen=True)
class Decision:
    step: Step
    delete: Mapping | None  # a stored mapping to delete first (or only)
    announce: Endpoint | None  # what to announce to the peers this run, before the step's outcome
    why: str


def decide(stored: Mapping | None, mode: str, listen_port: int | None, now: float,
           retry_at: float | None = None) -> Decision:
    """What this run does about the port mapping (pure). ``listen_port`` None: the interface is gone."""
    if mode == "off" or listen_port is None:
        if stored is None:
            return Decision(Step.NOTHING, None, None, "port mapping off")
        why = "the interface is gone" if listen_port is None else "port mapping was turned off"
        return Decision(Step.DELETE, stored, None, why)
    if stored is not None and stored.internal_port != listen_port:
        return Decision(Step.REQUEST, stored, None, f"the listen port changed from {stored.internal_port}")
    if stored is not None and mode != "auto" and stored.protocol != mode:
        return Decision(Step.REQUEST, stored, None, f"port_mapping is now {mode}, the mapping is {stored.protocol}")
    if stored is not None and now >= stored.expires:
        return Decision(Step.REQUEST, None, None, "the mapping expired")
    if stored is not None and now >= stored.renew_at:
        return Decision(Step.RENEW, None, stored.endpoint, "half of the mapping's lifetime has passed")
    if stored is not None:
        return Decision(Step.NOTHING, None, stored.endpoint, "the mapping is valid")
    if retry_at is not None and now < retry_at:
        return Decision(Step.NOTHING, None, None, "the last attempt failed; retrying later")
    return Decision(Step.REQUEST, None, None, "no mapping yet")


def protocols_for(mode: str) -> tuple[str, ...]:
    """The protocols to try, in order: PCP first, then NAT-PMP (RFC 6887 section 9), then UPnP."""
    return PROTOCOLS if mode == "auto" else (mode,) if mode in PROTOCOLS else ()
