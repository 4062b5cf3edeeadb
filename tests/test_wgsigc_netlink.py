"""Unit tests of the pure parts of wgsigc.netlink: pyroute2 version handling, the peer
arguments for each version, and merging the kernel's split dump (plain dicts stand in for
pyroute2's messages; the real kernel is exercised in tests/test_kernel_vm.py)."""

from __future__ import annotations

import base64

import pytest

from wgsigc.netlink import InterfaceError, has_fixed_peer_flags, merge_device, parse_version, peer_updates
from wgsigc.plan import PeerWrite

KEY = bytes(range(32))
KEY_TEXT = base64.b64encode(KEY).decode()
OWN = bytes([9]) * 32


@pytest.mark.parametrize(
    ("text", "fixed"),
    [("0.7.2", False), ("0.9.2", False), ("0.9.3", True), ("0.9.5", True), ("1.0", True), ("unknown", False)],
)
def test_version_decides_flags(text: str, fixed: bool) -> None:
    assert has_fixed_peer_flags(parse_version(text)) is fixed


def test_old_pyroute2_always_passes_current_allowed_ips() -> None:
    write = PeerWrite(KEY, ("203.0.113.5", 4000), 25, ("10.0.0.2/32", "10.9.0.0/16"), old_keepalive=0)
    (only,) = peer_updates(write, fixed_flags=False)
    assert only == {
        "public_key": KEY_TEXT, "endpoint_addr": "203.0.113.5", "endpoint_port": 4000,
        "allowed_ips": ["10.0.0.2/32", "10.9.0.0/16"], "persistent_keepalive": 25,
    }


def test_new_pyroute2_updates_only_and_leaves_allowed_ips_out() -> None:
    write = PeerWrite(KEY, ("203.0.113.5", 4000), 25, ("10.0.0.2/32",), old_keepalive=0)
    (only,) = peer_updates(write, fixed_flags=True)
    assert only["update_only"] is True
    assert "allowed_ips" not in only and "replace_allowed_ips" not in only
    assert only["persistent_keepalive"] == 25


@pytest.mark.parametrize("fixed", [False, True])
def test_existing_keepalive_is_cycled_through_zero_to_trigger_a_handshake(fixed: bool) -> None:
    write = PeerWrite(KEY, ("203.0.113.5", 4000), 25, ("10.0.0.2/32",), old_keepalive=25)
    first, second = peer_updates(write, fixed_flags=fixed)
    assert first["persistent_keepalive"] == 0 and first["endpoint_port"] == 4000
    assert second["persistent_keepalive"] == 25 and "endpoint_addr" not in second
    for message in (first, second):
        # every message on its own keeps the allowed IPs (old pyroute2) or is update-only (new)
        assert message.get("allowed_ips") == (None if fixed else ["10.0.0.2/32"])
        assert message.get("update_only", False) is fixed


@pytest.mark.parametrize("fixed", [False, True])
def test_new_peer_gets_configured_allowed_ips_without_update_only(fixed: bool) -> None:
    write = PeerWrite(KEY, ("203.0.113.5", 4000), 25, ("10.0.0.8/32",), new_peer=True)
    (only,) = peer_updates(write, fixed_flags=fixed)
    assert only["allowed_ips"] == ["10.0.0.8/32"]
    assert not only.get("update_only")
    assert only["persistent_keepalive"] == 25


def _peer(key: bytes, ips: list[str], **extra: object) -> dict[str, object]:
    return {"public_key": base64.b64encode(key), "allowed_ips": ips, **extra}


def test_merge_joins_peers_split_over_messages() -> None:
    other = bytes([7]) * 32
    messages = [
        {"public_key": base64.b64encode(OWN), "listen_port": 51820, "fwmark": 0x51, "peers": [
            _peer(KEY, ["10.0.0.2/32"], endpoint={"addr": "203.0.113.5", "port": 4000}, keepalive=25,
                  latest_handshake={"tv_sec": 1234, "tv_nsec": 0}),
        ]},
        # the kernel continues the same peer's allowed IPs, then the next peer
        {"peers": [_peer(KEY, ["10.9.0.0/16"]), _peer(other, [], endpoint={"addr": "0.0.0.0", "port": 0})]},
    ]
    state = merge_device(messages, "wg0")
    assert state.public_key == OWN and state.listen_port == 51820 and state.fwmark == 0x51
    first = state.peers[KEY]
    assert first.allowed_ips == ("10.0.0.2/32", "10.9.0.0/16")
    assert first.endpoint == ("203.0.113.5", 4000)
    assert (first.keepalive, first.latest_handshake) == (25, 1234)
    assert state.peers[other].endpoint is None and state.peers[other].allowed_ips == ()


def test_interface_without_key_is_an_interface_error() -> None:
    with pytest.raises(InterfaceError, match="no private key"):
        merge_device([{"listen_port": 0, "peers": []}], "wg0")
