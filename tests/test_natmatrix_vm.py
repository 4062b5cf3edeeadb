"""The NAT behaviour matrix (issue 14) in the QEMU VM: real kernel WireGuard, nftables NATs in
namespaces, two wgsigd and wgsigc with the shipped defaults (tests/natmatrix.py describes the
behaviours, tests/natmatrix_lab.sh the lab).

One VM boot runs the whole matrix (``tests.natmatrix.all_pairs``, about 6 minutes: a pair that
connects takes about 10 s, one that cannot two timer rounds); ``sh scripts/natmatrix.sh
--update-readme`` runs the same and writes the README's table.
Each pair: peer a's run starts, b's 2 s later (as two timers would), a second round 30 s after the
first if there is no tunnel yet. Expected (``tests.natmatrix.expected``): a tunnel for every pair
except a symmetric NAT against one that filters by port (port-restricted, symmetric, double NAT),
which needs a relay or a port mapping and is diagnosed as such; a symmetric NAT against one that
filters by address only (or a full cone) gets its tunnel through WireGuard's roaming.
"""

from __future__ import annotations

import pytest

from tests.natmatrix import Pair, all_pairs, expected, parse, run_matrix, table

pytestmark = pytest.mark.vm

PAIRS = all_pairs()


@pytest.fixture(scope="module")
def matrix() -> dict[tuple[str, str], Pair]:
    facts, out = run_matrix(PAIRS)
    pairs = parse(facts, PAIRS)
    print(table(pairs))
    return {(p.a, p.b): p for p in pairs}


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_each_pair_gets_a_tunnel_exactly_when_one_is_possible_without_a_relay(
        matrix: dict[tuple[str, str], Pair], a: str, b: str) -> None:
    pair = matrix.get((a, b))
    assert pair is not None, f"pair {a} / {b} did not run (the lab stopped before it)"
    want = expected(a, b)
    if want.tunnel:
        assert pair.tunnel, f"{a} / {b}: no tunnel, but this pair can connect without a relay: {pair}"
        assert pair.path == want.path, f"{a} / {b}: the tunnel takes the path {want.path}, not {pair.path}: {pair}"
        assert pair.side_a.rc[-1] == pair.side_b.rc[-1] == 0, \
            f"{a} / {b}: both peers' runs succeed once the tunnel is up: {pair.side_a}, {pair.side_b}"
    else:
        assert not pair.tunnel, f"{a} / {b}: a tunnel where none was expected (the matrix is out of date): {pair}"
        assert all(rc == 5 for rc in pair.side_a.rc + pair.side_b.rc), \
            f"{a} / {b}: both peers' runs exit 5 (a peer cannot be reached): {pair}"


def test_a_symmetric_nat_that_cannot_connect_is_named_with_what_to_do(matrix: dict[tuple[str, str], Pair]) -> None:
    """The symmetric side saw two servers give it two ports: its run says so, and what helps."""
    pair = matrix[("symmetric", "port-restricted")]
    said = "\n".join(pair.diagnosis())
    assert "symmetric NAT" in said and "forward a UDP port" in said, \
        f"the symmetric side's run names its NAT's behaviour and what to do: {pair.side_a.out}"


def test_symmetric_against_address_restricted_connects_through_roaming_without_failing(
        matrix: dict[tuple[str, str], Pair]) -> None:
    """Issue 14 point 2: the address-restricted side answers where the symmetric side's first
    authenticated packet came from; the symmetric side's run then succeeds (its NAT is named as
    a warning, not a failure: the tunnel is up)."""
    pair = matrix[("symmetric", "address-restricted")]
    assert pair.tunnel and pair.path == "roamed", pair
    assert pair.side_a.rc[-1] == 0, f"the symmetric side's run succeeds once its tunnel is up: {pair.side_a}"
    assert "symmetric NAT" in pair.side_a.out, f"... and still names its NAT's behaviour: {pair.side_a.out}"
