"""wgsigc.portmapping's own pure parts and its state file: the default gateway from a
``/proc/net/route`` listing (a sample listing, not the host's), and a damaged state file read as
no mapping (a real file in a temporary directory). The network side is tested against a real
miniupnpd in tests/test_portmap_miniupnpd.py and in the X1 VM lab."""

from __future__ import annotations

from pathlib import Path

from wgsigc.portmapping import load_state, parse_proc_route, save_state, state_path, status_entry
from wgsigc.portmapplan import Mapping

ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t0009000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t00000000\t0100090A\t0003\t0\t0\t0\t00000000\t0\t0\t0
"""


def test_default_gateway_from_the_route_listing() -> None:
    assert parse_proc_route(ROUTES) == "10.9.0.1"


def test_no_default_route_or_a_damaged_listing_is_no_gateway() -> None:
    assert parse_proc_route(ROUTES.splitlines()[0] + "\n" + ROUTES.splitlines()[1]) is None
    assert parse_proc_route("header\neth0 zz 0100090A 0003 0 0 0 00000000\n") is None
    assert parse_proc_route("") is None


def test_state_round_trip_and_damage(tmp_path: Path) -> None:
    path = state_path(tmp_path / "wgsigc-wg0.json")
    assert path.name == "wgsigc-wg0.portmap.json"
    mapping = Mapping("natpmp", "10.9.0.1", 51820, "192.0.3.2", 51820, 120, 1000.0)
    save_state(path, mapping, None)
    assert load_state(path) == (mapping, None)
    assert status_entry(path, 1100.0) == {"protocol": "NAT-PMP", "external_endpoint": "192.0.3.2:51820",
                                          "internal_port": 51820, "gateway": "10.9.0.1", "expires": 1120.0,
                                          "expires_in": 20}
    save_state(path, None, None)
    assert not path.exists()
    for damaged in ("not json", "[]", '{"mapping": {"protocol": "pcp"}, "retry_at": "soon"}'):
        path.write_text(damaged)
        assert load_state(path) == (None, None)
