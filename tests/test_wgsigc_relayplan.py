"""wgsigc and the relay (wgsigc/relayplan.py, wgsigc/candidates.py, the status view): pure
decisions over hand-made interface states and server answers (stand-ins for the kernel and the
servers, no I/O). The whole path with real sockets is tests/test_relay_loopback.py (server side)
and tests/test_relay_vm.py (kernel WireGuard)."""

from __future__ import annotations

from wgsig import x1
from wgsig.keys import PublicKey
from wgsig.label import encode_label
from wgsig.wire import Record
from wgsigc.candidates import Announced, LocalView, candidate_order
from wgsigc.plan import Action, InterfaceState, PeerMemory, PeerState, Plan, Settings, plan
from wgsigc.relayplan import PROBE_STEP, RELAY_RETRY, relay_peers, with_relays
from wgsigc.signalling import announced_from
from wgsigc.status import format_view, status_view

NOW = 1_700_000_000.0
OWN = PublicKey(bytes([1]) * 32)
PEER = PublicKey(bytes([2]) * 32)
PUBLIC = ("203.0.113.5", 40000)
RELAY = ("192.0.2.1", 40123)
SETTINGS = Settings(handshake_timeout=15)


def state(endpoint: tuple[str, int] | None, handshake: float = 0) -> InterfaceState:
    peer = PeerState(PEER, endpoint, ("10.0.0.2/32",), 25, int(handshake))
    return InterfaceState("wg0", OWN, 51820, 0, {PEER: peer})


def decide(st: InterfaceState, now: float, memory: dict[PublicKey, PeerMemory], relay: bool) -> Plan:
    records = {bytes(PEER): Record(bytes(PEER), PUBLIC[0], PUBLIC[1], encode_label(int(now) - 5, 0))}
    announced = {bytes(PEER): Announced(relay=RELAY)} if relay else {}
    return with_relays(plan(st, records, SETTINGS, now, memory, announced=announced, local=LocalView()), st, memory,
                       now)


def test_the_relay_is_the_last_candidate_even_when_it_worked() -> None:
    order = candidate_order(PUBLIC, Announced(relay=RELAY), LocalView(), worked=[RELAY])
    assert [(c.endpoint, c.kind) for c in order] == [(PUBLIC, "public"), (RELAY, "relay")]
    assert candidate_order(PUBLIC, Announced(relay=("2001:db8::1", 4)), LocalView())[-1].kind == "public"


def test_relay_items_become_the_announced_relay() -> None:
    items = {bytes(PEER): [x1.Item(x1.ItemType.RELAY, *RELAY), x1.Item(x1.ItemType.HOST4, "192.168.1.2", 51820)]}
    assert announced_from(items)[bytes(PEER)].relay == RELAY


def test_asked_for_once_direct_candidates_failed_then_used_and_renewed() -> None:
    memory: dict[PublicKey, PeerMemory] = {}
    first = decide(state(None), NOW, memory, relay=False)
    assert first.writes[0].endpoint == PUBLIC and relay_peers(first.memory(memory)) == []
    memory = first.memory(memory)
    failed = decide(state(PUBLIC), NOW + 20, memory, relay=False)
    assert failed.problems and relay_peers(failed.memory(memory)) == [bytes(PEER)]
    memory = failed.memory(memory)
    # The servers allocated: the relay appears as a new, last candidate and is tried at once.
    moved = decide(state(PUBLIC), NOW + 21, memory, relay=True)
    (d,) = moved.decisions
    assert d.write is not None and d.write.endpoint == RELAY and d.in_use == f"{RELAY[0]}:{RELAY[1]} (relay)"
    memory = moved.memory(memory)
    # A handshake through it: healthy, the status says why, and the requests go on (renewal).
    healthy = decide(state(RELAY, NOW + 23), NOW + 24, memory, relay=True)
    (d,) = healthy.decisions
    assert d.action is Action.HEALTHY and d.write is None and "relayed" in (d.why or "")
    assert relay_peers(healthy.memory(memory)) == [bytes(PEER)]


def on_relay(now: float, probed: float = 0.0) -> dict[PublicKey, PeerMemory]:
    return {PEER: PeerMemory(record_endpoint=PUBLIC, record_label=encode_label(int(now) - 5, 0), relay=True,
                             worked=((RELAY, now - 110),), candidates=(PUBLIC, RELAY), probed=probed)}


def start_probe(now: float) -> tuple[Plan, dict[PublicKey, PeerMemory]]:
    memory = on_relay(now)
    probe = decide(state(RELAY, now - 110), now, memory, relay=True)
    (d,) = probe.decisions
    assert d.action is Action.SET_ENDPOINT and d.write is not None and d.write.endpoint == PUBLIC
    assert d.waiting  # the run keeps converging to judge it
    return probe, probe.memory(memory)


def test_no_probe_before_the_retry_interval_or_while_the_session_is_young() -> None:
    now = NOW + 10_000
    (d,) = decide(state(RELAY, now - 110), now, on_relay(now, probed=now - RELAY_RETRY + 5), relay=True).decisions
    assert d.action is Action.HEALTHY and d.write is None
    (d,) = decide(state(RELAY, now - 30), now, on_relay(now), relay=True).decisions
    assert d.action is Action.HEALTHY and d.write is None


def test_a_direct_path_that_handshakes_replaces_the_relay() -> None:
    now = NOW + 10_000
    _probe, memory = start_probe(now)
    waiting = decide(state(PUBLIC, now - 110), now + 2, memory, relay=True)
    assert waiting.decisions[0].action is Action.WAITING and waiting.writes == []
    memory = waiting.memory(memory)
    done = decide(state(PUBLIC, now + 3), now + 4, memory, relay=True)
    (d,) = done.decisions
    assert d.action is Action.HEALTHY and "direct" in d.detail and relay_peers(done.memory(memory)) == []
    # Afterwards it stays direct, and asks for no relay.
    later = decide(state(PUBLIC, now + 3), now + 30, done.memory(memory), relay=True)
    assert later.writes == [] and relay_peers(later.memory(done.memory(memory))) == []


def test_without_a_handshake_it_goes_back_to_the_relay_after_one_step() -> None:
    now = NOW + 10_000
    _probe, memory = start_probe(now)
    back = decide(state(PUBLIC, now - 110), now + PROBE_STEP + 1, memory, relay=True)
    (d,) = back.decisions
    assert d.write is not None and d.write.endpoint == RELAY and "back to the relay" in d.detail
    after = back.memory(memory)[PEER]
    assert after.relay and after.probe_since is None and PUBLIC not in [w[0] for w in after.worked]
    # The next try waits RELAY_RETRY.
    (d,) = decide(state(RELAY, now - 30), now + PROBE_STEP + 60, back.memory(memory), relay=True).decisions
    assert d.write is None


def test_when_wireguard_roamed_back_to_the_relay_the_probe_is_over() -> None:
    now = NOW + 10_000
    _probe, memory = start_probe(now)
    # The peer's datagram came through the relay: WireGuard points there again (no write needed).
    (d,) = decide(state(RELAY, now + 1), now + 2, memory, relay=True).decisions
    assert d.write is None and d.pending is not None and d.pending.probe_since is None and d.pending.relay


def test_status_shows_the_relay_in_use_and_why() -> None:
    memory = on_relay(NOW)
    decided = decide(state(RELAY, NOW - 30), NOW, memory, relay=True)
    (d,) = decided.decisions
    record = {
        "time": NOW, "exit_code": 0, "messages": [], "own_endpoint": None, "servers": [],
        "peers": [{
            "public_key": str(PEER), "action": d.action.value, "detail": d.detail, "in_use": d.in_use, "why": d.why,
            "candidates": [{"endpoint": f"{c.endpoint[0]}:{c.endpoint[1]}", "kind": c.kind} for c in d.candidates],
            "pending": {"relay": True, "worked": []},
        }],
    }
    view = status_view("wg0", record, None, None, NOW)
    assert view["peers"][0]["relay"] == f"in use: {RELAY[0]}:{RELAY[1]} (no direct candidate got a handshake)"
    text = format_view(view, NOW)
    assert f"in use: {RELAY[0]}:{RELAY[1]} (relay)" in text and "relayed" in text and "    relay: in use" in text


def test_a_relay_allocated_for_a_resting_peer_is_used_at_once() -> None:
    memory: dict[PublicKey, PeerMemory] = {}
    for now in (NOW, NOW + 6, NOW + 12, NOW + 20):  # the public endpoint's step, then resting on it
        decided = decide(state(PUBLIC), now, memory, relay=False)
        memory = decided.memory(memory)
    assert memory[PEER].relay and memory[PEER].resting
    (d,) = decide(state(PUBLIC), NOW + 21, memory, relay=True).decisions
    assert d.write is not None and d.write.endpoint == RELAY and "allocated" in d.detail


def test_with_several_relaying_servers_both_peers_pick_the_same_relay() -> None:
    one, two = x1.Item(x1.ItemType.RELAY, "198.51.100.9", 40001), x1.Item(x1.ItemType.RELAY, "192.0.2.1", 41000)
    assert announced_from({bytes(PEER): [one, two]})[bytes(PEER)].relay == ("192.0.2.1", 41000)
    assert announced_from({bytes(PEER): [two, one]})[bytes(PEER)].relay == ("192.0.2.1", 41000)


def test_the_relay_memory_survives_the_run_record() -> None:
    from wgsigc.runrecord import _memory, memory_json

    memory = PeerMemory(endpoint=PUBLIC, since=NOW, relay=True, probe_since=NOW + 1, probed=NOW - 5)
    again = _memory(memory_json(memory))
    assert (again.relay, again.probe_since, again.probed) == (True, NOW + 1, NOW - 5)
    assert _memory({}).relay is False and _memory({"relay": "yes"}).relay is False


def test_live_status_on_the_relay_says_why() -> None:
    from wgsig.endpoint import endpoint_text

    record = {"time": NOW, "exit_code": 0, "messages": [], "peers": [{
        "public_key": str(PEER), "in_use": None, "candidates": [{"endpoint": endpoint_text(RELAY), "kind": "relay"}],
        "pending": {"relay": True}}]}
    view = status_view("wg0", record, state(RELAY, NOW - 3), None, NOW)
    (p,) = view["peers"]
    assert p["in_use"] == f"{endpoint_text(RELAY)} (relay)" and "relayed" in p["why"] and p["relay"].startswith("in use")
