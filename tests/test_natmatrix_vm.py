"""The NAT behaviour matrix (issue 14): every pair of NAT behaviours, in the QEMU VM, with real
kernel WireGuard, nftables NATs in namespaces and wgsigc with the shipped defaults.

One VM boot runs tests/natmatrix_lab.sh: for each pair a fresh lab (one wgsigd on the "public"
network 192.0.2.0/24, peer a behind NAT A, peer b behind NAT B, WireGuard with keys and allowed
IPs but no endpoint); a's run starts, b's 2 s later, both converge (25 s at most), and if there
is no tunnel yet a second pair of runs follows, as the next timer period would. The behaviours
(RFC 4787 terms), all dropping unsolicited inbound traffic unless said:

- ``full-cone``: endpoint-independent mapping and filtering (a static forward of WireGuard's port);
- ``address-restricted``: endpoint-independent mapping, address-dependent filtering (any port of
  a host that the peer sent to may send in);
- ``port-restricted``: Linux ``masquerade`` with a stateful filter (the usual home router);
- ``symmetric``: ``masquerade fully-random``, a new public port for every destination;
- ``cgnat``: a port-restricted home NAT behind a carrier's port-restricted NAT (100.64.0.0/10).

Expected: a tunnel for every pair except a symmetric NAT against a port-restricted one, a
symmetric one or a carrier-grade NAT, which need a relay or port mapping (tests.natmatrix).
The table goes into the README with ``sh scripts/natmatrix.sh --update-readme``.
"""

from __future__ import annotations

import itertools
import time

import pytest

from tests.natmatrix import KINDS, Pair, expected_tunnel, parse, run_matrix, table

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def matrix() -> dict[frozenset[str], Pair]:
    start = time.monotonic()
    rc, out = run_matrix()
    print(f"\n[NAT matrix VM run: {time.monotonic() - start:.1f} s]\n{out}")
    pairs = parse(out)
    if not pairs:
        pytest.fail(f"the matrix produced no results (rc {rc}):\n{out}", pytrace=False)
    print(table(pairs))
    return {p.kinds: p for p in pairs}


PAIRS = [(a, b) for a, b in itertools.combinations_with_replacement(KINDS, 2)]


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_pair_connects_exactly_when_possible_without_a_relay(matrix: dict[frozenset[str], Pair], a: str,
                                                             b: str) -> None:
    pair = matrix.get(frozenset({a, b}))
    assert pair is not None, f"pair {a} / {b} did not run"
    if expected_tunnel(a, b):
        assert pair.tunnel, f"{a} / {b}: no tunnel, but this pair can connect without a relay"
        assert pair.path.startswith("public"), f"{a} / {b}: the tunnel should use the public endpoints: {pair}"
    else:
        assert not pair.tunnel, f"{a} / {b}: a tunnel where none was expected (the matrix is out of date)"


def test_symmetric_reaches_address_restricted_by_roaming(matrix: dict[frozenset[str], Pair]) -> None:
    """Issue 14 point 2: the address-restricted side learns the symmetric side's real port from
    its first authenticated packet; the kernel's endpoint is then not the port the server saw."""
    pair = matrix[frozenset({"symmetric", "address-restricted"})]
    assert pair.tunnel and pair.path == "public-roamed", pair
