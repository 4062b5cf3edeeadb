"""The NAT behaviour matrix (issue 14) in the QEMU VM: real kernel WireGuard, nftables NATs in
namespaces, miniupnpd, two wgsigd and wgsigc with the shipped defaults (tests/natmatrix.py
describes the behaviours, tests/natmatrix_lab.sh the lab).

One VM boot runs the whole matrix (``tests.natmatrix.all_pairs``, about 7 minutes: a pair that
connects takes about 10 s, one that cannot two timer rounds); ``sh scripts/natmatrix.sh
--update-readme`` runs the same and writes the README's table.
Each pair: peer a's run starts, b's 2 s later (as two timers would), a second round 30 s after the
first if there is no tunnel yet. Expected (``tests.natmatrix.expected``): a tunnel for every pair
except a symmetric NAT against one that filters by port (port-restricted, symmetric, double NAT),
which needs a relay or a port mapping and is diagnosed as such; a symmetric NAT against one that
filters by address only (or a full cone) gets its tunnel through WireGuard's roaming, and with
port mapping (miniupnpd) even against a port-restricted or symmetric NAT.
"""

from __future__ import annotations

import pytest

from tests import vmlane
from tests.natmatrix import HARD, Pair, all_pairs, expected, parse, path_ok, run_matrix, table

pytestmark = pytest.mark.vm

PAIRS = all_pairs()


VM_LANE_ORDER = 2  # tests/vmlane.py: after the kernel lab


def boot_lab() -> dict[str, str]:
    return run_matrix(PAIRS)[0]


@pytest.fixture(scope="module")
def matrix() -> dict[tuple[str, str], Pair]:
    facts = vmlane.lab_of(__name__, boot_lab)
    pairs = parse(facts, PAIRS)
    print(table(pairs))
    return {(p.a, p.b): p for p in pairs}


def find(matrix: dict[tuple[str, str], Pair], a: str, b: str) -> Pair:
    """The pair of NATs a and b, in whichever order the matrix ran it."""
    pair = matrix.get((a, b)) or matrix.get((b, a))
    assert pair is not None, f"pair {a} / {b} did not run (the lab stopped before it)"
    return pair


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_each_pair_gets_a_tunnel_exactly_when_one_is_possible_without_a_relay(
        matrix: dict[tuple[str, str], Pair], a: str, b: str) -> None:
    pair = find(matrix, a, b)
    want = expected(a, b)
    if want.tunnel:
        assert pair.tunnel, f"{a} / {b}: no tunnel, but this pair can connect without a relay: {pair}"
        assert path_ok(want.path, pair.path), \
            f"{a} / {b}: the tunnel takes the path {want.path}, not {pair.path}: {pair}"
        assert pair.side_a.rc[-1] == pair.side_b.rc[-1] == 0, \
            f"{a} / {b}: both peers' runs succeed once the tunnel is up: {pair.side_a}, {pair.side_b}"
    else:
        assert not pair.tunnel, f"{a} / {b}: a tunnel where none was expected (the matrix is out of date): {pair}"
        assert len(pair.side_a.rc) == len(pair.side_b.rc) == 2, f"{a} / {b}: two timer rounds ran: {pair}"
        assert all(rc == 5 for rc in pair.side_a.rc + pair.side_b.rc), \
            f"{a} / {b}: every run of both peers exits 5 (a peer cannot be reached), the second too: {pair}"


@pytest.mark.parametrize(("a", "b"), [p for p in PAIRS if not p[0].startswith("shared")],
                         ids=[f"{a}+{b}" for a, b in PAIRS if not a.startswith("shared")])
def test_wgsigc_status_names_what_each_nat_does(matrix: dict[tuple[str, str], Pair], a: str, b: str) -> None:
    """Issue 14 point 4: from what the two servers saw, wgsigc status says whether this host's
    NAT keeps one public endpoint for every destination or maps each to a new port."""
    pair = find(matrix, a, b)
    for kind, side in ((pair.a, pair.side_a), (pair.b, pair.side_b)):
        line = side.nat_line
        if kind in HARD:
            assert "a different public port per destination: a symmetric NAT" in line, \
                f"{kind}: status names a symmetric NAT: {side.status}"
        elif kind != "symmetric-pcp":  # its mapping may give the servers one port
            assert "the same public endpoint for every server" in line and "endpoint-independent" in line, \
                f"{kind}: status names an endpoint-independent mapping: {side.status}"


def test_pairs_that_need_a_relay_are_diagnosed_on_both_sides_with_what_to_do(
        matrix: dict[tuple[str, str], Pair]) -> None:
    """The symmetric side names its own NAT and what helps; the other side learns from the
    servers' two views of the peer that the peer's NAT is the cause (issue 14 points 2, 4)."""
    pair = find(matrix, "symmetric", "port-restricted")
    symmetric, other = pair.side("symmetric"), pair.side("port-restricted")
    said = "\n".join(line for line in symmetric.out.splitlines() if line.startswith("wgsigc: "))
    assert "symmetric NAT" in said and "hole punching cannot work through it" in said, symmetric.out
    assert "port_mapping" in said and "forward a UDP port" in said and "relay" in said, symmetric.out
    assert "symmetric NAT" in symmetric.nat_line, symmetric.status
    said = "\n".join(line for line in other.out.splitlines() if line.startswith("wgsigc: "))
    assert "the servers saw it at" in said and "its NAT maps each destination to a new port" in said, other.out
    assert "relay" in said, other.out


def test_symmetric_against_address_restricted_connects_through_roaming_without_failing(
        matrix: dict[tuple[str, str], Pair]) -> None:
    """Issue 14 point 2: the address-restricted side answers where the symmetric side's first
    authenticated packet came from; the symmetric side's run then succeeds (its NAT is named as
    a warning, not a failure: the tunnel is up)."""
    pair = find(matrix, "symmetric", "address-restricted")
    symmetric = pair.side("symmetric")
    assert pair.tunnel and pair.path == "roamed", pair
    assert symmetric.rc[-1] == 0, f"the symmetric side's run succeeds once its tunnel is up: {symmetric}"
    assert "warning: this host's NAT" in symmetric.out and "symmetric NAT" in symmetric.out, symmetric.out


def test_port_mapping_gets_a_symmetric_nat_through_to_a_port_restricted_one(
        matrix: dict[tuple[str, str], Pair]) -> None:
    """Point 3 in the matrix: the symmetric NAT's miniupnpd maps WireGuard's port; the other peer
    writes the mapped endpoint, shown by wgsigc status on the mapping side."""
    pair = find(matrix, "symmetric-pcp", "port-restricted")
    mapping = pair.side("symmetric-pcp")
    assert pair.tunnel and pair.path == "mapped", pair
    assert "port mapping: " in mapping.status, mapping.status
    said = "\n".join(line for line in mapping.out.splitlines() if line.startswith("wgsigc: "))
    assert "is announced (port mapping or advertise)" in said and "turn on port_mapping" not in said, \
        f"its NAT line names the mapping in place, not the advice to turn it on: {mapping.out}"
