"""Properties of wgsigc.plan and of the netlink messages it turns into (wgsigc.netlink.peer_updates),
for arbitrary interface states, server records, configurations and remembered state (hypothesis;
pure code, no I/O: generated states stand in for the kernel and the servers).

What must hold whatever the input: no write removes a peer; no write touches a public key that is
neither on the interface nor in the configuration's [[interface.X.peer]] list, nor this host's own
key; a peer already on the interface keeps its allowed IPs -- the old-pyroute2 messages (< 0.9.3,
which replace allowed IPs on every set) carry exactly its current ones, the newer ones say
update_only and carry none -- and keeps a keepalive the administrator set; only configured peers
are added, with exactly the configured allowed IPs; a peer with a recent handshake is left alone.
"""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wgsig import ipaddr
from wgsig.endpoint import Endpoint
from wgsig.keys import PublicKey
from wgsig.label import encode_label
from wgsig.wire import Record
from wgsigc.candidates import Announced, LocalView
from wgsigc.netlink import peer_updates
from wgsigc.plan import CANDIDATES_GRACE, InterfaceState, PeerMemory, PeerState, Plan, Settings, plan

NOW = 1_700_000_000
KEYS = [PublicKey(bytes([i]) * 32) for i in range(1, 7)]  # a small pool, so that states, records and config overlap
OWN = KEYS[0]
CIDRS = ["10.0.0.1/32", "10.0.0.2/32", "10.9.0.0/16", "0.0.0.0/0", "fd00::2/128", "::/0"]

ips = st.lists(st.sampled_from(CIDRS), max_size=4, unique=True).map(tuple)
endpoints = st.tuples(st.sampled_from(["203.0.113.5", "198.51.100.1", "10.1.0.2"]), st.integers(1, 65535))
times = st.integers(NOW - 2000, NOW + 100)


@st.composite
def peer_states(draw: st.DrawFn, key: bytes) -> PeerState:
    handshake = draw(st.one_of(st.just(0), times))
    return PeerState(key, draw(st.none() | endpoints), draw(ips), draw(st.sampled_from([0, 1, 25, 65535])), handshake)


@st.composite
def interfaces(draw: st.DrawFn) -> InterfaceState:
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True))  # may even hold the own key
    return InterfaceState("wg0", OWN, draw(st.integers(1, 65535)), draw(st.integers(0, 3)),
                          {k: draw(peer_states(k)) for k in keys})


@st.composite
def server_records(draw: st.DrawFn) -> dict[bytes, Record]:
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True))
    records = {}
    for key in keys:
        ip, port = draw(endpoints)
        records[key] = Record(key, ip, port, encode_label(draw(times), draw(st.integers(0, 999_999_999))))
    return records


plan_settings = st.builds(
    Settings,
    keepalive=st.integers(1, 65535),
    handshake_threshold=st.floats(0, 400),
    handshake_timeout=st.floats(1, 100),
    max_age=st.none() | st.floats(1, 3000),
    extra_peers=st.dictionaries(st.sampled_from(KEYS), ips, max_size=4),
)
pendings = st.dictionaries(st.sampled_from(KEYS), st.builds(PeerMemory, endpoints, times.map(float)), max_size=4)
nows = st.floats(NOW - 100, NOW + 2000)


def check(state: InterfaceState, records: dict[bytes, Record], config: Settings, result: Plan) -> None:
    allowed_keys = set(state.peers) | set(config.extra_peers)
    written = [w.public_key for w in result.writes]
    assert len(written) == len(set(written)), "one write per peer"
    decisions = {d.public_key: d for d in result.decisions}
    for write in result.writes:
        assert write.public_key != OWN
        assert write.public_key in allowed_keys
        record = records[write.public_key]
        current = state.peers.get(write.public_key)
        # Without announcements: the record's endpoint, or one that had a handshake (the kernel's).
        assert write.endpoint in {(record.ip, record.port)} | ({current.endpoint} if current else set())
        candidates = {c.endpoint for c in decisions[write.public_key].candidates}
        assert write.endpoint in candidates | {(record.ip, record.port)}
        if current is not None:
            assert not write.new_peer
            assert write.allowed_ips == current.allowed_ips
            assert write.old_keepalive == current.keepalive
            assert write.keepalive == (current.keepalive or config.keepalive)
        else:
            assert write.new_peer
            assert write.allowed_ips == config.extra_peers[write.public_key]
        for fixed in (False, True):
            messages = peer_updates(write, fixed)
            assert messages
            for message in messages:
                assert "remove" not in message
                assert base64.b64decode(message["public_key"]) == write.public_key
                if current is None:
                    assert message["allowed_ips"] == list(config.extra_peers[write.public_key])
                    assert message.get("replace_allowed_ips", False) is False and "update_only" not in message
                elif fixed:
                    assert message["update_only"] is True
                    assert "allowed_ips" not in message and "replace_allowed_ips" not in message
                else:  # pyroute2 < 0.9.3 replaces allowed IPs on every set: pass the current ones back
                    assert message["allowed_ips"] == list(current.allowed_ips)
            assert messages[-1]["persistent_keepalive"] == write.keepalive


@settings(max_examples=400, deadline=None)
@given(interfaces(), server_records(), plan_settings, nows, pendings)
def test_plan_never_removes_nor_touches_foreign_keys_nor_changes_allowed_ips(
    state: InterfaceState, records: dict[bytes, Record], config: Settings, now: float, pending: dict[bytes, PeerMemory]
) -> None:
    check(state, records, config, plan(state, records, config, now, pending))


@settings(max_examples=200, deadline=None)
@given(interfaces(), server_records(), plan_settings, nows)
def test_recent_handshake_is_never_written(
    state: InterfaceState, records: dict[bytes, Record], config: Settings, now: float
) -> None:
    written = {w.public_key for w in plan(state, records, config, now).writes}
    for key, peer in state.peers.items():
        if peer.latest_handshake and now - peer.latest_handshake < config.handshake_threshold:
            assert key not in written


# A converging run, tick by tick, against a fake kernel (pure: the kernel is a PeerState the
# test updates; a handshake comes while it points at a "working" endpoint).
PEER = KEYS[1]
ANNOUNCE_POOL = [("192.168.1.2", 51820), ("192.168.1.3", 51820), ("10.8.0.2", 51820), ("2001:db8:1::2", 51820),
                 ("fd00::2", 51820), ("198.51.100.1", 4000), ("0.0.0.0", 0), ("192.168.1.4", 0)]
RECORD_POOL = [("198.51.100.1", 40000), ("198.51.100.1", 40001), ("203.0.113.5", 51820), ("0.0.0.0", 0)]
ROAM_POOL = [("198.18.0.9", 3333), ("198.18.0.10", 4444)]
REAL = [e for e in ANNOUNCE_POOL + RECORD_POOL + ROAM_POOL if e[1] != 0]
LOCALS = [
    LocalView("198.51.100.1", (ipaddr.parse_prefix("192.168.1.0/24"), ipaddr.parse_prefix("2001:db8:1::/64")),
              True),
    LocalView("198.51.100.1", (ipaddr.parse_prefix("192.168.1.0/24"),), False),
    LocalView("203.0.113.200", (ipaddr.parse_prefix("192.168.7.0/24"),), True),
]
announcements = st.builds(
    Announced,
    st.none() | st.sampled_from([("2001:db8:1::2", 51820), ("2001:db8:9::2", 51820)]),
    st.lists(st.sampled_from(ANNOUNCE_POOL), max_size=4).map(tuple),
    st.lists(st.sampled_from(ANNOUNCE_POOL[5:]), max_size=1).map(tuple),
)


@st.composite
def runs(draw: st.DrawFn) -> dict[str, Any]:
    """Per tick: its length, the record (endpoint, whether re-registered), the announcements, a roam."""
    ticks = draw(st.integers(1, 60))
    return {
        "local": draw(st.sampled_from(LOCALS)),
        "working": set(draw(st.lists(st.sampled_from(REAL), max_size=3))),
        "start": draw(st.none() | st.sampled_from(REAL)),  # the kernel never reports 0.0.0.0:0
        "handshake_age": draw(st.none() | st.integers(0, 400)),
        "threshold": draw(st.sampled_from([5.0, 30.0, 180.0])),
        "timeout": draw(st.sampled_from([3.0, 15.0])),
        "steps": [
            (draw(st.floats(0.1, 3)), draw(st.sampled_from(RECORD_POOL)) if draw(st.booleans()) else None,
             draw(announcements) if draw(st.integers(0, 4)) == 0 else None,
             draw(st.sampled_from(ROAM_POOL)) if draw(st.integers(0, 9)) == 0 else None)
            for _ in range(ticks)
        ],
        "record": draw(st.sampled_from(RECORD_POOL)),
        "announced": draw(st.none() | announcements),
    }


def _left(kernel: Endpoint | None, before: tuple[Endpoint, bytes] | None, after: tuple[Endpoint, bytes],
          announced_before: Announced | None, announced_now: Announced | None) -> bool:
    """The issue's rule, written out independently: the kernel is at the previous record's endpoint
    and a newer record shows another one, or at a LAN address the peer no longer announces."""
    if kernel is None:
        return False
    usable_now = after[0][1] != 0
    if before is not None and kernel == before[0] and after[0] != before[0] and after[1] > before[1] and usable_now:
        return True
    now_eps = announced_now.endpoints() if announced_now else ()
    then_eps = announced_before.endpoints() if announced_before else ()
    return bool(now_eps) and kernel in then_eps and kernel not in now_eps and kernel != after[0]


@settings(max_examples=300, deadline=None)
@given(runs())
def test_converging_run_writes_only_candidates_never_moves_a_healthy_peer_that_stayed(run: dict[str, Any]) -> None:
    config = Settings(handshake_threshold=run["threshold"], handshake_timeout=run["timeout"], max_age=None)
    now = float(NOW)
    age = run["handshake_age"]
    peer = PeerState(PEER, run["start"], ("10.0.0.2/32",), 25, 0 if age is None else NOW - age)
    endpoint, label = run["record"], encode_label(NOW - 10, 0)
    announced: Announced | None = run["announced"]
    memory: dict[bytes, PeerMemory] = {}
    seen: tuple[Endpoint, bytes] | None = None  # the newest record this run has planned with
    seen_announced: Announced | None = None
    left_at: float | None = None
    for length, new_record, new_announced, roam in run["steps"]:
        if new_record is not None:
            endpoint, label = new_record, encode_label(int(now), 1)
        if new_announced is not None:
            announced = new_announced
        if roam is not None and roam in run["working"]:  # WireGuard roamed: a handshake from there
            peer = PeerState(PEER, roam, peer.allowed_ips, 25, int(now))
        if left_at is not None and peer.latest_handshake >= int(left_at):
            left_at = None  # a handshake after it left (whole seconds: the same one counts): settled again
        if _left(peer.endpoint, seen, (endpoint, label), seen_announced, announced):
            left_at = now
        result = plan(InterfaceState("wg0", OWN, 51820, 0, {PEER: peer}),
                      {OWN: Record(OWN, run["local"].public_ipv4, 51820, encode_label(NOW, 0)),
                       PEER: Record(PEER, endpoint[0], endpoint[1], label)},
                      config, now, memory, announced={PEER: announced} if announced else {}, local=run["local"])
        (decision,) = result.decisions
        healthy = bool(peer.latest_handshake) and now - peer.latest_handshake < config.handshake_threshold
        for write in result.writes:
            assert write.endpoint in {c.endpoint for c in decision.candidates} | {peer.endpoint}
            assert write.endpoint[1] != 0 and write.endpoint[0] not in ("0.0.0.0", "::")
            assert not healthy or left_at is not None, "a healthy peer that did not leave its address was moved"
            peer = PeerState(PEER, write.endpoint, peer.allowed_ips, write.keepalive, peer.latest_handshake)
        if seen is None or label >= seen[1]:
            seen = (endpoint, label)
        if announced is not None and announced.endpoints():
            seen_announced = announced
        memory = result.memory(memory)
        now += length
        if peer.endpoint in run["working"]:
            peer = PeerState(PEER, peer.endpoint, peer.allowed_ips, peer.keepalive, int(now))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(LOCALS), st.sampled_from(RECORD_POOL), st.none() | announcements,
       st.lists(st.floats(0.1, 3), min_size=1, max_size=80), st.sampled_from([3.0, 15.0]))
def test_a_cycle_without_handshake_ends_within_len_candidates_steps_and_pauses(
        local: LocalView, endpoint: Endpoint, announced: Announced | None, ticks: list[float], timeout: float) -> None:
    config = Settings(handshake_timeout=timeout, max_age=None)
    peer = PeerState(PEER, None, ("10.0.0.2/32",), 0, 0)
    records = {OWN: Record(OWN, local.public_ipv4 or "", 51820, encode_label(NOW, 0)),
               PEER: Record(PEER, endpoint[0], endpoint[1], encode_label(NOW - 1, 0))}
    memory: dict[bytes, PeerMemory] = {}
    now = float(NOW)
    writes: list[tuple[float, Endpoint]] = []
    rested_at: float | None = None
    candidates: tuple[Endpoint, ...] = ()
    for tick in ticks:
        result = plan(InterfaceState("wg0", OWN, 51820, 0, {PEER: peer}), records, config, now, memory,
                      announced={PEER: announced} if announced else {}, local=local)
        (decision,) = result.decisions
        candidates = tuple(c.endpoint for c in decision.candidates)
        for write in result.writes:
            assert write.endpoint in candidates
            writes.append((now, write.endpoint))
            peer = PeerState(PEER, write.endpoint, peer.allowed_ips, 25, 0)
        memory = result.memory(memory)
        if rested_at is None and memory[PEER].resting:
            rested_at = now
            first_cycle = [e for t, e in writes if t < now]
            assert len(first_cycle) <= len(candidates) and len(set(first_cycle)) == len(first_cycle)
            # at most one more write, onto where it rests: the server-seen endpoint when there is one
            (rest,) = [e for t, e in writes if t == now] or [peer.endpoint]  # type: ignore[list-item]
            assert rest == peer.endpoint and (rest == endpoint or endpoint not in candidates)
            # (+ the grace a just-registered peer behind our public IP gets for its LAN candidates)
            assert now - NOW <= sum(c.step for c in decision.candidates) + 3 * len(candidates) + 3 + CANDIDATES_GRACE
        if rested_at is not None and now - rested_at < timeout - 3:
            assert [w for w in writes if w[0] > rested_at] == [], "a new cycle before the pause"
        now += tick
    if not candidates:
        assert writes == []
    elif now - NOW > sum(3 + 5 for _ in candidates) + 3 + CANDIDATES_GRACE:
        assert rested_at is not None, "the cycle did not end"
