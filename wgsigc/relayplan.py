"""When wgsigc asks for a relay, when it leaves it again: pure decisions beside ``wgsigc/plan.py``.

The relay (README, "Relay"; doc/x1.md) is the last resort, for two peers that no direct path
reaches (both behind NATs that map each destination to a new port):

- **Asking.** A peer whose direct candidates all failed (the plan reports its problem) is asked
  for: its ID goes as a RELAY_REQ into the next label-storing X1 request to every server that
  relays (``relay_peers``).  The servers allocate once both peers asked; their answers then
  carry a RELAY item for the peer, and ``wgsigc/candidates.py`` makes it the last candidate
  ("relay"), where the plan rests.  The requests go on while the relay is in use or the peer is
  unreachable (they renew the allocation), and stop once a direct path works (the allocation
  then expires on the server).
- **Going back.** A live session on the relay does not handshake again by itself when a direct
  path starts working, so every ``RELAY_RETRY`` seconds, while the relay is healthy and the
  session is old enough that WireGuard rekeys soon (``REKEY_SOON``), the best direct candidate
  is set for one step (``PROBE_STEP``).  A handshake through it (the kernel still pointing
  there: a handshake through the relay would have moved the endpoint back, WireGuard roams)
  proves it: the peer stays on it and the relay is let go.  Otherwise the relay is set again,
  and a datagram of the peer through the relay would have brought WireGuard back there anyway:
  the tunnel is never left on a path that does not work for longer than a step.
"""

from __future__ import annotations

from wgsig.endpoint import Endpoint, endpoint_text
from wgsig.keys import PublicKey
from wgsig.plainclass import replace
from wgsig.x1 import MAX_RELAY_REQUESTS
from wgsigc.plan import Action, InterfaceState, PeerDecision, PeerMemory, PeerState, PeerWrite, Plan

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Mapping

RELAY_RETRY = 600.0  # seconds on the relay between two tries of a direct path
REKEY_SOON = 100.0  # session age from which a probe may start (WireGuard rekeys at 120 s)
PROBE_STEP = 20.0  # seconds a direct candidate is tried while on the relay


def relay_peers(memory: Mapping[PublicKey, PeerMemory]) -> list[bytes]:
    """The peer IDs to send RELAY_REQ for (at most what a server reads from one request)."""
    return sorted(bytes(key) for key, m in memory.items() if m.relay)[:MAX_RELAY_REQUESTS]


def with_relays(plan: Plan, state: InterfaceState, memory: Mapping[PublicKey, PeerMemory], now: float) -> Plan:
    """The plan with each decision's relay part (``with_relay``), given what ``plan`` was decided from."""
    decisions = tuple(with_relay(d, state.peers.get(d.public_key), memory.get(d.public_key), now)
                      for d in plan.decisions)
    return Plan(plan.interface, plan.own_endpoint, decisions)


def with_relay(decision: PeerDecision, peer: PeerState | None, before: PeerMemory | None, now: float) -> PeerDecision:
    """``decision`` with the relay's part: whether to ask for one, a direct probe while on it."""
    pending = decision.pending
    if pending is None or peer is None:
        return decision
    before = before or PeerMemory()
    relay = next((c for c in decision.candidates if c.kind == "relay"), None)
    kernel = peer.endpoint
    on_relay = relay is not None and kernel == relay.endpoint
    healthy = decision.action is Action.HEALTHY
    if before.probe_since is not None and relay is not None:
        return _probing(decision, peer, before, relay.endpoint, now)
    wants = decision.problem is not None or (before.relay and not (healthy and not on_relay))
    if wants and relay is not None and not healthy and not on_relay and relay.endpoint not in before.candidates:
        # The relay was just allocated for a peer whose direct candidates all failed: use it at
        # once rather than cycling through them again first.
        write = PeerWrite(peer.public_key, relay.endpoint, peer.keepalive or 25, peer.allowed_ips,
                          old_keepalive=peer.keepalive)
        memory = replace(pending, endpoint=relay.endpoint, since=now, resting=False, relay=True, probe_since=None,
                         probed=before.probed)
        return replace(decision, action=Action.SET_ENDPOINT, write=write, pending=memory,
                       detail=f"endpoint {_text(kernel)} -> {_text(relay.endpoint)} (relay): allocated for this peer,"
                              " whose direct candidates failed",
                       in_use=f"{_text(relay.endpoint)} (relay)", why="relayed: no direct candidate got a handshake")
    if wants and on_relay and healthy and now - before.probed >= RELAY_RETRY \
            and now - peer.latest_handshake >= REKEY_SOON:
        direct = next((c for c in decision.candidates if c.kind != "relay"), None)
        if direct is not None:
            write = PeerWrite(peer.public_key, direct.endpoint, peer.keepalive or 25, peer.allowed_ips,
                              old_keepalive=peer.keepalive)
            memory = replace(pending, endpoint=direct.endpoint, since=now, relay=True, probe_since=now, probed=now)
            detail = f"on the relay {_text(kernel)}: trying {_text(direct.endpoint)} ({direct.kind})" \
                     f" for {PROBE_STEP:g} s"
            return replace(decision, action=Action.SET_ENDPOINT, detail=detail, write=write, pending=memory,
                           in_use=f"{_text(direct.endpoint)} ({direct.kind})",
                           why="trying a direct path again, back to the relay if no handshake")
    memory = replace(pending, relay=wants, probe_since=None, probed=before.probed if wants else 0.0)
    if on_relay and healthy:
        return replace(decision, pending=memory, why=f"{decision.why}; relayed: no direct candidate got a handshake,"
                       f" direct paths tried again every {RELAY_RETRY / 60:g} min")
    return replace(decision, pending=memory)


def _probing(decision: PeerDecision, peer: PeerState, before: PeerMemory, relay: Endpoint,
             now: float) -> PeerDecision:
    """While a direct candidate is tried: stay on it once it had a handshake, else back to the relay."""
    assert decision.pending is not None and before.probe_since is not None
    probe, kernel = before.endpoint, peer.endpoint
    pending = decision.pending
    if probe is not None and kernel == probe and peer.latest_handshake >= int(before.probe_since):
        memory = replace(pending, relay=False, probe_since=None, probed=0.0)
        return replace(decision, action=Action.HEALTHY, pending=memory,
                       detail=f"handshake through {_text(probe)}: a direct path works again, off the relay",
                       why=f"handshake {int(now - peer.latest_handshake)} s ago (direct again, relay let go)")
    # What the plan took for a working endpoint during the probe (the session's handshake) was not.
    worked = tuple(w for w in pending.worked if w[0] != probe)
    if probe is not None and kernel == probe and now - before.probe_since < PROBE_STEP:
        memory = replace(pending, endpoint=probe, since=before.since, worked=worked, relay=True,
                         probe_since=before.probe_since, probed=before.probed)
        return replace(decision, action=Action.WAITING, write=None, pending=memory,
                       detail=f"trying {_text(probe)} while on the relay"
                              f" ({now - before.probe_since:.0f} of {PROBE_STEP:g} s)",
                       why="trying a direct path again, back to the relay if no handshake")
    memory = replace(pending, endpoint=None, worked=worked, relay=True, probe_since=None, probed=before.probed)
    write = None
    if kernel != relay:
        write = PeerWrite(peer.public_key, relay, peer.keepalive or 25, peer.allowed_ips,
                          old_keepalive=peer.keepalive)
    return replace(decision, action=Action.SET_ENDPOINT if write else Action.HEALTHY, write=write, pending=memory,
                   detail=f"no handshake through the direct path {_text(probe)}: back to the relay {_text(relay)}",
                   in_use=f"{_text(relay)} (relay)",
                   why=f"relayed: the direct path did not answer; tried again in {RELAY_RETRY / 60:g} min")


def _text(endpoint: Endpoint | None) -> str:
    return endpoint_text(endpoint) or "(none)"
