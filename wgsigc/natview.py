"""What this host's NAT does with WireGuard's port, judged from what the servers saw: pure.

Each server reports the public endpoint it saw this host's registration come from (sent from
WireGuard's own port). In RFC 4787's terms: one endpoint for every server is an
endpoint-independent mapping (hole punching works with any peer whose NAT does the same); a
different port per server is a symmetric NAT, which WireGuard can still get through to a peer
whose NAT lets any port of this host in (full cone, address-restricted): that side answers where
the first authenticated packet came from (roaming). Against a NAT that filters by port as well
(the usual home router) it needs a port forward, a port mapping or a relay.

``observe`` words it for the admin (``wgsigc status``, the journal); ``verdict`` says whether it
fails the run: only when a peer could not be reached, so a tunnel that came up by roaming does not
make every timer run fail.
"""

from __future__ import annotations

from wgsig.endpoint import Endpoint, endpoint_text
from wgsig.plainclass import dataclass  # wgsigc loads it on every run: no dataclasses module

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class Registration:
    """Our own record as one server saw it in this run."""

    server: str
    endpoint: Endpoint


@dataclass(frozen=True)
class NatView:
    summary: str  # one line for the admin, naming what the servers saw
    per_destination: bool  # a new public endpoint per destination: a symmetric NAT
    forwarded: tuple[Endpoint, ...] = ()  # announced ways in: the port mapping's, advertise's


def _ep(endpoint: Endpoint) -> str:
    return endpoint_text(endpoint) or "(none)"


def observe(registrations: Sequence[Registration], listen_port: int,
            own_addresses: Sequence[str] = (), forwarded: Sequence[Endpoint] = ()) -> NatView | None:
    """This host's NAT as the registrations of one run show it (None when no server saw one).
    ``forwarded``: the endpoints announced as ways in (port mapping, ``advertise``)."""
    if not registrations:
        return None
    where = ", ".join(f"{r.server} saw {_ep(r.endpoint)}" for r in registrations)
    seen = {r.endpoint for r in registrations}
    if len(seen) > 1:
        if len({e[0] for e in seen}) > 1:
            what = "leaves from a different public address per destination (several uplinks or a carrier NAT pool)"
        else:
            what = (f"maps WireGuard's port {listen_port} to a different public port per destination:"
                    " a symmetric NAT (e.g. 'masquerade fully-random')")
        return NatView(f"this host's NAT {what} ({where})", True, tuple(forwarded))
    ip, port = registrations[0].endpoint
    if ip in own_addresses:
        return NatView(f"no NAT: the servers see this host's own address ({where})", False)
    kept = f"keeps WireGuard's port {listen_port}" if port == listen_port else \
        f"maps WireGuard's port {listen_port} to port {port}"
    if len(registrations) == 1:
        return NatView(f"this host's NAT {kept} ({where}; with one server it cannot be told whether the"
                       " mapping depends on the destination: a second server in 'servers' would show it)", False)
    return NatView(f"this host's NAT {kept}, the same public endpoint for every server ({where}):"
                   " an endpoint-independent mapping, hole punching works", False)


REACHED = ("peers whose NAT lets any port of this host in (full cone, address-restricted) are still reached,"
           " through WireGuard's roaming")
TO_DO = ("for the others (NATs that filter by port, most home routers) turn on port_mapping = \"auto\" if this"
         " router speaks PCP, NAT-PMP or UPnP, or forward a UDP port to WireGuard (and announce it with"
         " advertise = [\"IP:PORT\"]), or use a relay")


def verdict(view: NatView | None, unreachable: bool) -> tuple[str | None, str | None]:
    """(the line that fails the run, the warning line): a symmetric NAT fails the run only when a
    peer could not be reached; otherwise it is named as a warning, since the tunnels are up."""
    if view is None or not view.per_destination:
        return None, None
    if view.forwarded:
        ways = ", ".join(_ep(e) for e in view.forwarded)
        if unreachable:
            return (f"{view.summary}; a peer was not reached although {ways} is announced (port mapping or"
                    " advertise): check that the router forwards it to WireGuard's port"), None
        return None, (f"{view.summary}; {ways} is announced (port mapping or advertise): peers reach"
                      " WireGuard there whatever their own NAT does")
    if unreachable:
        return f"{view.summary}; hole punching cannot work through it: {REACHED}; {TO_DO}", None
    return None, f"{view.summary}; {REACHED}; {TO_DO}"
