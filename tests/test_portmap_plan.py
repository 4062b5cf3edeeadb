"""wgsigc.portmapplan: when a run requests, renews or deletes the router's port mapping (pure
code: plain values in, no network), and the stored form it reads back."""

from __future__ import annotations

from wgsigc.portmapplan import LIFETIME, Mapping, Step, decide, mapping_from_json, protocols_for

NOW = 1_000_000.0
MAPPING = Mapping("pcp", "10.9.0.1", 51820, "192.0.3.2", 51820, LIFETIME, NOW, "00" * 12)


def test_off_by_default_does_nothing_without_a_mapping() -> None:
    decision = decide(None, "off", 51820, NOW)
    assert decision.step is Step.NOTHING and decision.announce is None


def test_no_mapping_is_requested() -> None:
    assert decide(None, "auto", 51820, NOW).step is Step.REQUEST


def test_a_valid_mapping_is_announced_and_kept() -> None:
    decision = decide(MAPPING, "auto", 51820, NOW + LIFETIME / 2 - 1)
    assert decision.step is Step.NOTHING and decision.announce == ("192.0.3.2", 51820)


def test_renewed_at_half_its_lifetime_and_still_announced() -> None:
    decision = decide(MAPPING, "auto", 51820, NOW + LIFETIME / 2)
    assert decision.step is Step.RENEW and decision.announce == ("192.0.3.2", 51820)


def test_an_expired_mapping_is_not_announced_but_requested_again() -> None:
    decision = decide(MAPPING, "auto", 51820, NOW + LIFETIME)
    assert decision.step is Step.REQUEST and decision.announce is None and decision.delete is None


def test_turned_off_deletes_the_mapping_it_made() -> None:
    decision = decide(MAPPING, "off", 51820, NOW + 10)
    assert decision.step is Step.DELETE and decision.delete == MAPPING and decision.announce is None


def test_interface_gone_deletes_the_mapping() -> None:
    decision = decide(MAPPING, "auto", None, NOW + 10)
    assert decision.step is Step.DELETE and decision.delete == MAPPING and "gone" in decision.why


def test_a_new_listen_port_deletes_the_old_mapping_and_requests_one() -> None:
    decision = decide(MAPPING, "auto", 51821, NOW + 10)
    assert decision.step is Step.REQUEST and decision.delete == MAPPING and decision.announce is None


def test_another_protocol_configured_replaces_the_mapping() -> None:
    assert decide(MAPPING, "natpmp", 51820, NOW + 10).delete == MAPPING
    assert decide(MAPPING, "pcp", 51820, NOW + 10).step is Step.NOTHING
    assert decide(MAPPING, "auto", 51820, NOW + 10).step is Step.NOTHING


def test_after_a_failure_no_request_until_the_retry_time() -> None:
    assert decide(None, "auto", 51820, NOW, retry_at=NOW + 1).step is Step.NOTHING
    assert decide(None, "auto", 51820, NOW + 1, retry_at=NOW + 1).step is Step.REQUEST


def test_protocol_order_pcp_then_natpmp_then_upnp() -> None:
    assert protocols_for("auto") == ("pcp", "natpmp", "upnp")
    assert protocols_for("natpmp") == ("natpmp",)
    assert protocols_for("off") == ()


def test_stored_form_round_trips_and_damage_is_no_mapping() -> None:
    assert mapping_from_json(MAPPING.as_json()) == MAPPING
    damaged = dict(MAPPING.as_json(), internal_port="51820")
    assert mapping_from_json(damaged) is None
    assert mapping_from_json(dict(MAPPING.as_json(), protocol="smtp")) is None
    assert mapping_from_json({"protocol": "pcp"}) is None
    assert mapping_from_json([1, 2]) is None
    assert mapping_from_json(dict(MAPPING.as_json(), lifetime=True)) is None
