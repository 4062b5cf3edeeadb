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

from hypothesis import given, settings
from hypothesis import strategies as st

from wgsig.label import encode_label
from wgsig.wire import Record
from wgsigc.netlink import peer_updates
from wgsigc.plan import InterfaceState, PeerState, PeerMemory, Plan, Settings, plan

NOW = 1_700_000_000
KEYS = [bytes([i]) * 32 for i in range(1, 7)]  # a small pool, so that states, records and config overlap
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
    return InterfaceState("wg0", OWN, draw(st.integers(1, 65535)), draw(st.integers(0, 3)), draw(st.booleans()),
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
        assert write.endpoint in {c.endpoint for c in decisions[write.public_key].candidates} | {(record.ip, record.port)}
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
