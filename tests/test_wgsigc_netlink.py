"""Unit tests of the pure parts of wgsigc.netlink and of wgsigc.pyroute2load: which pyroute2
sends the kernel's peer flags, the peer arguments for each, and merging the kernel's split dump
(plain dicts stand in for pyroute2's messages, a stand-in module for the flag test; the real
kernel and both real pyroute2 versions are exercised in tests/test_kernel_vm.py). Loading the
real classes without pyroute2's package __init__ is checked against Debian's pyroute2 here."""

from __future__ import annotations

import base64
import subprocess
import sys
import types

import pytest

from wgsig.keys import PublicKey
from wgsigc import pyroute2load
from wgsigc.netlink import InterfaceError, merge_device, peer_updates
from wgsigc.plan import PeerWrite

KEY = PublicKey(bytes(range(32)))
KEY_TEXT = base64.b64encode(KEY).decode()
OWN = PublicKey(bytes([9]) * 32)


@pytest.mark.parametrize(("update_only", "fixed"), [(2, False), (4, True), (None, False)])
def test_the_modules_flag_constant_decides_flags(
        monkeypatch: pytest.MonkeyPatch, update_only: int | None, fixed: bool) -> None:
    """pyroute2 0.7.2-0.9.2 define WGPEER_F_UPDATE_ONLY = 2 (the kernel's REPLACE_ALLOWEDIPS),
    0.9.3 and later 4; a pyroute2 without the constant is taken as old (FAKE: a stand-in module)."""
    fake = types.ModuleType("pyroute2")
    fake.__dict__.update(WireGuard=object)
    if update_only is not None:
        fake.__dict__.update(WGPEER_F_UPDATE_ONLY=update_only)
    monkeypatch.setitem(sys.modules, "pyroute2", fake)
    monkeypatch.delitem(sys.modules, pyroute2load.WIREGUARD_MODULE, raising=False)
    assert pyroute2load.sends_kernel_peer_flags() is fixed


def test_loads_the_real_classes_without_the_package_init() -> None:
    """Debian's pyroute2 (real, in a fresh interpreter): WireGuard loads, the package's __init__
    (which imports NDB and every entry point) does not run, reading the addresses does not
    import IPRoute, the flags are the old ones when it is bookworm's 0.7.2."""
    pytest.importorskip("pyroute2")
    probe = subprocess.run([sys.executable, "-c", """
import sys
from wgsigc import pyroute2load
from wgsigc import localaddrs
wireguard = pyroute2load.wireguard_class()
localaddrs.read_local("wg0")
import importlib.metadata
print(wireguard.__module__, "pyroute2.iproute" in sys.modules, "pyroute2.ndb.main" in sys.modules,
      hasattr(sys.modules["pyroute2"], "IPDB"), pyroute2load.sends_kernel_peer_flags(),
      importlib.metadata.version("pyroute2"))
"""], capture_output=True, text=True, check=True)
    wg_module, iproute, ndb, ipdb, fixed, version = probe.stdout.split()
    assert wg_module == "pyroute2.netlink.generic.wireguard"
    assert iproute == "False", "the LAN candidates' address dump imported pyroute2's IPRoute"
    assert (ndb, ipdb) == ("False", "False"), "pyroute2's package __init__ ran"
    assert fixed == str(tuple(int(p) for p in version.split(".")[:3]) >= (0, 9, 3))


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
