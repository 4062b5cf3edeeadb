"""What wgsigc changes in a WireGuard interface: a pure decision, no I/O.

Given the interface as the kernel reports it, the merged records of the
servers, the configuration, the previous run's memory and the time, ``plan``
says per peer what to do and why.  The netlink shell only carries it out.

Rules: never change keys or allowed IPs, never remove a peer; leave a peer
whose latest handshake is recent alone (WireGuard follows roaming peers by
itself) unless it has left the address the kernel points at (a newer record
elsewhere while the kernel is at the previous record's endpoint, or a LAN
address it no longer announces): then follow it at once.  Others go through
their candidates (``wgsigc.candidates``), one step each, judged by a handshake
at or after the step's start; a candidate that appears meanwhile and ranks
higher is tried at once; after the last they rest on the endpoint that last
worked, else the server-seen one, until a pause or a new registration.
Unknown peers are added only when the configuration gives their allowed IPs.
"""

from __future__ import annotations

from wgsig.endpoint import NO_IPV4_ENDPOINT, Endpoint, endpoint_text, unusable_reason
from wgsig.keys import PublicKey
from wgsig.label import label_seconds
from wgsig.plainclass import dataclass, field, replace
from wgsig.wire import Record
from wgsigc.candidates import (
    Announced,
    Candidate,
    LocalView,
    candidate_order,
    canonical_announced,
    lan_address,
    usable,
)

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, ClassVar


@dataclass(frozen=True)
class PeerState:
    """One peer as the kernel reports it."""

    public_key: PublicKey
    endpoint: Endpoint | None = None
    allowed_ips: tuple[str, ...] = ()
    keepalive: int = 0
    latest_handshake: int = 0  # UNIX seconds, 0 = never


@dataclass(frozen=True)
class InterfaceState:
    name: str
    public_key: PublicKey
    listen_port: int
    fwmark: int = 0
    peers: Mapping[PublicKey, PeerState] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    keepalive: int = 25
    handshake_threshold: float = 180
    handshake_timeout: float = 15
    max_age: float | None = 600
    extra_peers: Mapping[PublicKey, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PeerMemory:
    """What wgsigc remembers of a peer between runs (and between the ticks of one run).

    ``endpoint`` is the candidate set at ``since`` and not yet answered by a handshake (None
    while the peer is healthy); ``waiting_since`` is when the peer started waiting for one.
    ``record_endpoint`` and ``announced`` are what the servers said last time: a peer that has
    left the address the kernel points at is followed at once. ``worked`` are endpoints that had
    a handshake, newest first, with its time.
    """

    endpoint: Endpoint | None = None
    since: float = 0.0
    waiting_since: float | None = None
    record_endpoint: Endpoint | None = None
    record_label: bytes = b""
    announced: tuple[Endpoint, ...] = ()
    worked: tuple[tuple[Endpoint, float], ...] = ()
    resting: bool = False  # every candidate was tried: on the best-known one until the next cycle
    following: bool = False  # it left the kernel's endpoint: cycle until a handshake newer than waiting_since
    # The candidates of the last decision: one that appears later and ranks higher is tried at once.
    candidates: tuple[Endpoint, ...] = ()
    # The relay (wgsigc/relayplan.py): asked for (its direct candidates failed), trying a direct
    # path again since (None: not), last tried one at.
    relay: bool = False
    probe_since: float | None = None
    probed: float = 0.0


class Action:
    """What a run does with a peer: one instance per action, compared by identity; ``value`` is
    the words the run's output and record say, ``name`` the constant's (as an enum.Enum's: the
    enum module is about 6 % of an idle run, issue 16)."""

    __slots__ = ("name", "value")

    SET_ENDPOINT: ClassVar[Action]
    ADD_PEER: ClassVar[Action]
    HANDSHAKE: ClassVar[Action]
    HEALTHY: ClassVar[Action]
    FOLLOW: ClassVar[Action]
    REOPEN: ClassVar[Action]
    WAITING: ClassVar[Action]
    NO_CANDIDATE: ClassVar[Action]
    NO_RECORD: ClassVar[Action]
    OLD_RECORD: ClassVar[Action]
    NOT_CONFIGURED: ClassVar[Action]

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"<Action.{self.name}: {self.value!r}>"


for _name, _value in (
    ("SET_ENDPOINT", "set endpoint"),
    ("ADD_PEER", "add peer"),
    ("HANDSHAKE", "start handshake"),
    ("HEALTHY", "healthy, left alone"),
    ("FOLLOW", "follow moved peer"),
    ("REOPEN", "start handshake, this host moved"),
    ("WAITING", "waiting for a handshake"),
    ("NO_CANDIDATE", "no endpoint this host can use"),
    ("NO_RECORD", "no record on the servers"),
    ("OLD_RECORD", "record too old"),
    ("NOT_CONFIGURED", "not configured on the interface, ignored"),
):
    setattr(Action, _name, Action(_name, _value))


@dataclass(frozen=True)
class PeerWrite:
    """One netlink change: set the endpoint (and keepalive), optionally make WireGuard handshake now.

    ``allowed_ips`` are the peer's current ones (or the configured ones for a new peer): old
    pyroute2 versions replace allowed IPs on every write, so they must be passed back unchanged.
    ``old_keepalive`` is what the kernel has now (0 for a new peer).
    """

    public_key: PublicKey
    endpoint: Endpoint
    keepalive: int
    allowed_ips: tuple[str, ...]
    new_peer: bool = False
    old_keepalive: int = 0


@dataclass(frozen=True)
class PeerDecision:
    public_key: PublicKey
    action: Action
    detail: str
    server_endpoint: Endpoint | None = None
    kernel_endpoint: Endpoint | None = None
    record_time: int | None = None  # UNIX seconds of the record's label
    latest_handshake: int = 0
    write: PeerWrite | None = None
    pending: PeerMemory | None = None  # to remember for the next run (or tick)
    problem: str | None = None  # one line for the operator; makes the run fail
    candidates: tuple[Candidate, ...] = ()
    in_use: str | None = None  # which candidate the kernel points at (after this decision's write)
    why: str | None = None  # why that one: "handshake 3 s ago", "cycling: step 2 of 4", "resting on ..."
    unknown_yet: bool = False  # a peer of the interface without record or handshake: it may come online
    refused: str | None = None  # the record's endpoint cannot be a peer's (broadcast, port 0, ...): why

    @property
    def waiting(self) -> bool:
        """A peer of the interface without a recent handshake: keep fetching, it may appear any second."""
        return self.action in _WAITING_ACTIONS or self.unknown_yet


_WAITING_ACTIONS = frozenset({Action.SET_ENDPOINT, Action.ADD_PEER, Action.HANDSHAKE, Action.FOLLOW, Action.WAITING})


@dataclass(frozen=True)
class Plan:
    interface: str
    own_endpoint: Endpoint | None
    decisions: tuple[PeerDecision, ...]

    @property
    def writes(self) -> list[PeerWrite]:
        return [d.write for d in self.decisions if d.write is not None]

    @property
    def problems(self) -> list[str]:
        return [d.problem for d in self.decisions if d.problem is not None]

    @property
    def waiting(self) -> list[PublicKey]:
        return [d.public_key for d in self.decisions if d.waiting]

    def memory(self, before: Mapping[PublicKey, PeerMemory]) -> dict[PublicKey, PeerMemory]:
        """What to remember after this plan: each decision's memory, else what was known before."""
        result = dict(before)
        for d in self.decisions:
            if d.pending is not None:
                result[d.public_key] = d.pending
        return result


def _ep(endpoint: Endpoint | None) -> str:
    """An endpoint in a decision's detail; "(none)" where the kernel has none."""
    return endpoint_text(endpoint) or "(none)"


def plan(
    state: InterfaceState,
    records: Mapping[bytes, Record],
    settings: Settings,
    now: float,
    pending: Mapping[PublicKey, PeerMemory] | None = None,
    *,
    announced: Mapping[bytes, Announced] | None = None,
    local: LocalView | None = None,
    own_before: Endpoint | None = None,
    views: Mapping[bytes, Sequence[Record]] | None = None,
) -> Plan:
    """Decide, per peer of the interface and per record, what to do.

    ``own_before`` is this host's public endpoint as the previous run saw it: when it changed
    (a NAT with a new address), healthy peers get a handshake too (``_reopen``). ``views`` are
    every answering server's record of each peer (``records`` holds the newest of them): a peer
    behind a NAT that maps per destination is seen at a different port by each server, which is
    not a move (``_seen_elsewhere``)."""
    pending = pending or {}
    announced = announced or {}
    own = records.get(state.public_key)
    own_endpoint = (own.ip, own.port) if own is not None and usable((own.ip, own.port)) else None
    if local is None:
        local = LocalView(own_endpoint[0] if own_endpoint else None)
    decisions: list[PeerDecision] = []
    oldest = None if settings.max_age is None else now - settings.max_age
    for peer_id, record in records.items():
        if peer_id == state.public_key:
            continue
        key = PublicKey(peer_id)
        peer = state.peers.get(key)
        record_time = label_seconds(record.label)
        server_endpoint = (record.ip, record.port)
        if oldest is not None and record_time < oldest:
            if peer is not None:
                decisions.append(
                    PeerDecision(
                        key, Action.OLD_RECORD,
                        f"record is {int(now - record_time)} s old (max_age {settings.max_age:g} s), left alone",
                        server_endpoint, peer.endpoint, record_time, peer.latest_handshake,
                        pending=pending.get(key),  # kept: what worked still counts when it comes back
                    )
                )
            continue
        if peer is None:
            decisions.append(_unknown_peer(key, record, announced.get(key), local, settings, now))
        else:
            decisions.append(
                _known_peer(peer, record, announced.get(key), local, settings, now, pending.get(key),
                            (views or {}).get(peer_id, ()))
            )
    for key, peer in state.peers.items():
        if key not in records:
            stale = not peer.latest_handshake or now - peer.latest_handshake >= settings.handshake_threshold
            decisions.append(
                PeerDecision(
                    key, Action.NO_RECORD, "no server knows this peer: is wgsigc running there?",
                    None, peer.endpoint, None, peer.latest_handshake, unknown_yet=stale,
                    pending=pending.get(key),
                )
            )
    if own_before is not None and own_endpoint is not None and own_before != own_endpoint:
        decisions = [_reopen(d, state.peers.get(d.public_key), own_before, own_endpoint, settings) for d in decisions]
    return Plan(state.name, own_endpoint, tuple(decisions))


def _reopen(decision: PeerDecision, peer: PeerState | None, before: Endpoint, now: Endpoint,
            settings: Settings) -> PeerDecision:
    """This host's public endpoint changed: a healthy peer's NAT still lets in only the old one,
    and following us it will send to the new one, which our NAT drops until we have sent to it.
    A handshake from here (and a persistent keepalive) opens that way; nothing else changes."""
    if decision.action is not Action.HEALTHY or peer is None or peer.endpoint is None:
        return decision
    write = PeerWrite(peer.public_key, peer.endpoint, peer.keepalive or settings.keepalive, peer.allowed_ips,
                      old_keepalive=peer.keepalive)
    detail = f"public endpoint {_ep(before)} -> {_ep(now)}: handshake with {_ep(peer.endpoint)} so that our NAT" \
             " lets its answer in"
    return replace(decision, action=Action.REOPEN, detail=detail, write=write)


def _refused(record: Record) -> str | None:
    """Why the record's endpoint is never written (None when usable, or the IPv6-only placeholder)."""
    endpoint = (record.ip, record.port)
    why = None if endpoint == NO_IPV4_ENDPOINT else unusable_reason(endpoint)
    return None if why is None else f"its record's endpoint {_ep(endpoint)} is {why}"


def _unknown_peer(key: PublicKey, record: Record, announced: Announced | None, local: LocalView, settings: Settings,
                  now: float) -> PeerDecision:
    record_time = label_seconds(record.label)
    record_endpoint: Endpoint | None = (record.ip, record.port)
    if not usable(record_endpoint):
        record_endpoint = None
    allowed = settings.extra_peers.get(key)
    if allowed is None:
        return PeerDecision(key, Action.NOT_CONFIGURED, "not a peer of this interface", record_endpoint, None,
                            record_time)
    refused = _refused(record)
    candidates = tuple(candidate_order(record_endpoint, announced, local))
    if not candidates:
        return PeerDecision(key, Action.NO_CANDIDATE, refused or "no endpoint this host can reach (e.g. IPv6 only,"
                            " no IPv6 here)", record_endpoint, None, record_time, refused=refused)
    first = candidates[0]
    write = PeerWrite(key, first.endpoint, settings.keepalive, allowed, new_peer=True)
    announced_now = announced.endpoints() if announced is not None else ()
    memory = PeerMemory(first.endpoint, now, now, record_endpoint, record.label, announced_now,
                        candidates=tuple(c.endpoint for c in candidates))
    detail = f"added with endpoint {_describe(first)}, allowed IPs {', '.join(allowed) or '(none)'}"
    return PeerDecision(
        key, Action.ADD_PEER, detail, record_endpoint, None, record_time, 0, write, memory,
        candidates=candidates, in_use=_describe(first), why=f"cycling: step 1 of {len(candidates)}", refused=refused,
    )


def _known_peer(
    peer: PeerState,
    record: Record,
    announced: Announced | None,
    local: LocalView,
    settings: Settings,
    now: float,
    memory: PeerMemory | None,
    views: Sequence[Record] = (),
) -> PeerDecision:
    key = peer.public_key
    handshake = peer.latest_handshake
    record_endpoint: Endpoint | None = (record.ip, record.port)
    if not usable(record_endpoint):
        record_endpoint = None  # seen only over IPv6: its OBS6 is in the announcements
    memory = memory or PeerMemory()
    announced = canonical_announced(announced) if announced is not None else None
    now_announced = announced.endpoints() if announced is not None else ()
    kernel = peer.endpoint
    # A record older than the remembered one (the server that had the newer one did not answer
    # this time) says nothing new: it neither moves the peer nor replaces what is remembered.
    newer = record.label > memory.record_label
    stale_record = bool(memory.record_label) and record.label < memory.record_label
    # Has the peer left the address the kernel points at? It registered from elsewhere since the
    # record that gave it (or stopped announcing that LAN address): following cannot break a
    # working path. An endpoint WireGuard learned by roaming is neither, and is never moved.
    # An empty announcement says nothing (a server restart loses them). Nor does another
    # server's view of the same registration (a symmetric NAT shows each server another port).
    dropped = set(memory.announced) - set(now_announced) - {record_endpoint} if now_announced else set()
    moved = (
        bool(memory.record_label) and newer and memory.record_endpoint is not None
        and record_endpoint is not None and record_endpoint != memory.record_endpoint
        and not _seen_elsewhere(memory.record_endpoint, record, views)
    )
    left = kernel is not None and ((moved and kernel == memory.record_endpoint) or kernel in dropped)
    # Forget what worked at addresses it has left.
    gone = set(dropped) | ({memory.record_endpoint} if moved else set()) | ({kernel} if left else set())
    worked = [w for w in memory.worked if w[0] not in gone]
    # Handshake times are whole seconds: one in the same second as "since" counts as after it.
    succeeded = memory.endpoint is not None and memory.endpoint == kernel and handshake >= int(memory.since) > 0
    # With no memory of this peer (a first run, a lost state file), an endpoint that had a handshake
    # is believed to have worked when it is still plausible: the record's, an announced one, or a
    # private address (set by hand for a peer behind the same NAT).
    adopted = (
        memory.record_endpoint is None and memory.endpoint is None and not memory.worked
        and kernel is not None and (kernel == record_endpoint or kernel in now_announced or lan_address(kernel))
    )
    if kernel is not None and handshake and not left and (
            succeeded or adopted or now - handshake < settings.handshake_threshold):
        worked = [(kernel, float(handshake))] + [w for w in worked if w[0] != kernel]
    worked = worked[:4]
    spread = _same_round(record, views)
    if memory.record_endpoint in spread and not stale_record:
        # Which server's view of a symmetric NAT is the newest changes from fetch to fetch: stay
        # on the one already in use instead of rewriting the endpoint each time.
        record_endpoint = memory.record_endpoint
    candidates = tuple(candidate_order(record_endpoint, announced, local, [w[0] for w in worked]))
    refused = _refused(record)
    base: dict[str, Any] = {
        "server_endpoint": record_endpoint, "kernel_endpoint": kernel, "record_time": label_seconds(record.label),
        "latest_handshake": handshake, "candidates": candidates, "refused": refused,
    }
    remembered = PeerMemory(
        record_endpoint=memory.record_endpoint if stale_record else record_endpoint,
        record_label=memory.record_label if stale_record else record.label,
        announced=now_announced or memory.announced, worked=tuple(worked),
        candidates=tuple(c.endpoint for c in candidates),
    )
    in_use = _in_use(kernel, candidates)
    if _candidates_on_their_way(kernel, now_announced, candidates, memory.waiting_since, now):
        first_seen = memory.waiting_since if memory.waiting_since is not None else now
        detail = (f"waiting {CANDIDATES_GRACE} s for its LAN candidates (behind this host's public IP, none"
                  f" announced yet, {now - first_seen:.0f} s so far)")
        pending = replace_memory(remembered, None, now, first_seen, False, False)
        return PeerDecision(key, Action.WAITING, detail, pending=pending, in_use=in_use, why=detail, **base)
    # After following a moved peer its handshake (through the old address) is still young: it is
    # healthy again only once a handshake came after the follow.
    following = memory.following and memory.waiting_since is not None and handshake < int(memory.waiting_since)
    if handshake and now - handshake < settings.handshake_threshold and not left and not following:
        why = f"handshake {int(now - handshake)} s ago"
        return PeerDecision(key, Action.HEALTHY, why, pending=remembered, in_use=in_use, why=why, **base)
    if not candidates:
        return PeerDecision(key, Action.NO_CANDIDATE, refused or "no endpoint this host can reach (e.g. IPv6 only,"
                            " no IPv6 here)", pending=remembered, in_use=in_use, **base)
    # (Nothing written yet, e.g. after the LAN candidates' grace: the waiting starts with the first write.)
    waiting_since = (memory.waiting_since if memory.waiting_since is not None and memory.endpoint is not None
                     and not (left or succeeded) else now)
    endpoints = [c.endpoint for c in candidates]
    current = memory.endpoint
    index = endpoints.index(current) if current in endpoints else None
    fresh_registration = record.label > memory.record_label and bool(memory.record_label)
    restart = (
        left or succeeded or index is None or kernel != current
        or (memory.resting and (now - memory.since >= settings.handshake_timeout
                                or (fresh_registration and now - memory.since >= candidates[0].step)))
    )
    # A candidate that appeared since the last decision and ranks above the one in use (the peer
    # just registered over IPv6, or announced a new address) is tried at once: both peers then
    # move to it together, which is what stateful firewalls on both sides need.
    jump = None
    if not restart and memory.candidates and index is not None:
        ahead = len(candidates) if memory.resting else index
        jump = next((i for i, c in enumerate(candidates[:ahead]) if c.endpoint not in memory.candidates), None)
    problem = None
    if restart:
        step, resting, since = 0, False, now
    elif jump is not None:
        step, resting, since = jump, False, now
    elif not memory.resting and index is not None and now - memory.since >= candidates[index].step:
        step, resting, since = index + 1, False, now  # no handshake in time: the next candidate
        if step >= len(candidates):
            step, resting = _rest(candidates, worked, record_endpoint), True
    else:
        # Still within this candidate's step, or resting: nothing to write.
        assert index is not None
        pending = replace_memory(remembered, current, memory.since, waiting_since, memory.resting, following)
        problem = _problem(key, candidates, waiting_since, settings, now, spread)
        why = _why(index, candidates, memory.resting, worked, following)
        detail = f"{'resting on' if memory.resting else 'trying'} {_describe(candidates[index])}" \
                 f" (step {index + 1} of {len(candidates)}, {now - memory.since:.0f} s)"
        return PeerDecision(key, Action.WAITING, detail, pending=pending, problem=problem, in_use=in_use, why=why,
                            **base)
    chosen = candidates[step]
    problem = _problem(key, candidates, waiting_since, settings, now, spread)
    following = (left or following) and not resting
    pending = replace_memory(remembered, chosen.endpoint, since, waiting_since, resting, following)
    why = _why(step, candidates, resting, worked, following)
    if resting and chosen.endpoint == kernel:
        detail = f"resting on {_describe(chosen)}: every candidate tried"
        return PeerDecision(key, Action.WAITING, detail, pending=pending, problem=problem, in_use=in_use, why=why,
                            **base)
    write = PeerWrite(
        key, chosen.endpoint, peer.keepalive or settings.keepalive, peer.allowed_ips, old_keepalive=peer.keepalive
    )
    if left:
        action, detail = Action.FOLLOW, f"it left {_ep(kernel)}: endpoint -> {_describe(chosen)}"
    elif kernel == chosen.endpoint:
        action, detail = Action.HANDSHAKE, f"endpoint {_describe(chosen)} already set, no recent handshake"
    else:
        action, detail = Action.SET_ENDPOINT, f"endpoint {_ep(kernel)} -> {_describe(chosen)}"
    if len(candidates) > 1:
        detail += f" (candidate {step + 1} of {len(candidates)})"
    detail += f" (last handshake {int(now - handshake)} s ago)" if handshake else " (no handshake yet)"
    return PeerDecision(key, action, detail, write=write, pending=pending, problem=problem,
                        in_use=_describe(chosen), why=why, **base)


# Registrations of one run reach every server within a few seconds; a peer's next registration
# comes a timer period later.
SAME_ROUND = 10
# An X1 peer registers first and announces its LAN addresses in its next request, a moment later:
# a peer behind this host's public IP that was never given an endpoint and announces nothing yet
# may be one whose LAN candidates are on their way, so the hairpin endpoint (the only candidate
# until then) waits this long from the first sight of it. Once taken and working, the hairpin
# path would stay (a healthy peer is never moved). Not the record's age: a converging peer
# refreshes its record every half second.
CANDIDATES_GRACE = 3


def _candidates_on_their_way(kernel: Endpoint | None, announced: Sequence[Endpoint], candidates: Sequence[Candidate],
                             waiting_since: float | None, now: float) -> bool:
    """Whether to wait a moment for a just-seen peer's LAN candidates (pure)."""
    return (
        kernel is None and not announced and bool(candidates) and all(c.kind == "hairpin" for c in candidates)
        and (waiting_since is None or now - waiting_since < CANDIDATES_GRACE)
    )


def _seen_elsewhere(endpoint: Endpoint, newest: Record, views: Sequence[Record]) -> bool:
    """A server still sees the peer at ``endpoint`` in a registration of the same round as the
    newest record: it has not left it (its NAT maps each destination to another port)."""
    when = label_seconds(newest.label)
    return any((r.ip, r.port) == endpoint and when - label_seconds(r.label) <= SAME_ROUND for r in views)


def _same_round(newest: Record, views: Sequence[Record]) -> tuple[Endpoint, ...]:
    """Where the servers saw the peer in its newest registration round, when they saw it at more
    than one endpoint (its NAT maps each destination to another port), else ()."""
    when = label_seconds(newest.label)
    seen = sorted({(r.ip, r.port) for r in views if abs(when - label_seconds(r.label)) <= SAME_ROUND}
                  | {(newest.ip, newest.port)})
    return tuple(seen) if len(seen) > 1 else ()


def replace_memory(base: PeerMemory, endpoint: Endpoint | None, since: float, waiting_since: float | None,
                   resting: bool, following: bool = False) -> PeerMemory:
    return PeerMemory(endpoint, since, waiting_since, base.record_endpoint, base.record_label, base.announced,
                      base.worked, resting, following, base.candidates, base.relay, base.probe_since, base.probed)


def _why(index: int, candidates: tuple[Candidate, ...], resting: bool, worked: list[tuple[Endpoint, float]],
         following: bool) -> str:
    """Why the peer is on candidate ``index``, for the operator."""
    if resting:
        kind = candidates[index].kind
        which = "the relay" if kind == "relay" else "the last-worked endpoint" \
            if worked and worked[0][0] == candidates[index].endpoint \
            else "the server-seen endpoint" if kind in ("public", "hairpin") else "the last candidate"
        return f"resting on {which}: every candidate tried, next cycle after a pause"
    return f"{'following the moved peer' if following else 'cycling'}: step {index + 1} of {len(candidates)}"


def _rest(candidates: tuple[Candidate, ...], worked: list[tuple[Endpoint, float]],
          record_endpoint: Endpoint | None) -> int:
    """Where a peer rests once every candidate failed: the relay, if the servers allocated one
    (it needs no hole punching), else the endpoint that last worked (never trade it for one known
    not to work), else the public one (both sides on it is what hole punching needs), else the
    last candidate."""
    endpoints = [c.endpoint for c in candidates]
    relay = next((i for i, c in enumerate(candidates) if c.kind == "relay"), None)
    if relay is not None:
        return relay
    for preferred in [w[0] for w in worked[:1]] + [record_endpoint]:
        if preferred in endpoints:
            return endpoints.index(preferred)
    return len(candidates) - 1


def _describe(candidate: Candidate) -> str:
    return f"{_ep(candidate.endpoint)} ({candidate.kind})"


def _in_use(kernel: Endpoint | None, candidates: tuple[Candidate, ...]) -> str | None:
    if kernel is None:
        return None
    known = next((c for c in candidates if c.endpoint == kernel), None)
    return _describe(known) if known is not None else f"{_ep(kernel)} (set by hand or learned by WireGuard)"


def _problem(key: PublicKey, candidates: tuple[Candidate, ...], waiting_since: float, settings: Settings,
             now: float, spread: tuple[Endpoint, ...] = ()) -> str | None:
    """One line once every candidate had its step and the peer has waited longer than handshake_timeout.
    ``spread``: the servers saw the peer at several endpoints (``_same_round``): its NAT is the cause."""
    waited = now - waiting_since
    if waited < settings.handshake_timeout or waited < sum(c.step for c in candidates):
        return None
    hairpin = next((c for c in candidates if c.kind == "hairpin"), None)
    if hairpin is not None and not any(c.kind.startswith("lan") or c.kind == "worked" for c in candidates):
        return (
            f"peer {key} is behind the same public IP {hairpin.endpoint[0]} as this host and no handshake"
            f" came through {_ep(hairpin.endpoint)}: that needs a NAT that supports hairpinning (NAT loopback);"
            " run wgsigc with candidates = true on both peers, or give it a LAN endpoint by hand"
        )
    tried = ", ".join(_describe(c) for c in candidates)
    if spread:
        return (
            f"peer {key}: no handshake {int(waited)} s after its endpoint was set (tried {tried}); the servers"
            f" saw it at {', '.join(_ep(e) for e in spread)}: its NAT maps each destination to a new port"
            " (symmetric NAT), so a NAT here that filters by port (most home routers) drops its packets;"
            " that peer needs port_mapping = \"auto\" (if its router speaks PCP, NAT-PMP or UPnP), a forwarded"
            " UDP port, or a relay"
        )
    return (
        f"peer {key}: no handshake {int(waited)} s after its endpoint was set (tried {tried});"
        " likely causes: a NAT on either side maps each destination to a new port (symmetric NAT,"
        " e.g. 'masquerade fully-random'), a firewall drops UDP, or wgsigc is not running on that peer"
    )
