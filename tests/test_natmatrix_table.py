"""The NAT matrix's judging side (tests/natmatrix.py), on hand-made lab facts: which path a tunnel
took, the table, the README markers, the lanes. The VM run itself is tests/test_natmatrix_vm.py."""

from __future__ import annotations

from pathlib import Path

from tests.natmatrix import BEGIN, END, all_pairs, expected, lanes, parse, table, update_readme

EIM = ("  NAT: this host's NAT keeps WireGuard's port 51820, the same public endpoint for every server"
       " (192.0.2.1:1223 saw {ep}, 192.0.2.2:1223 saw {ep}): an endpoint-independent mapping, hole punching works")
SYM = ("  NAT: this host's NAT maps WireGuard's port 51820 to a different public port per destination: a"
       " symmetric NAT (e.g. 'masquerade fully-random') (192.0.2.1:1223 saw {p}, 192.0.2.2:1223 saw {q})")


def facts(pid: str, out_a: str, out_b: str, ep_in_a: str, ep_in_b: str, status_a: str, status_b: str,
          first: str = "1.5") -> dict[str, str]:
    return {f"{pid}.a1.rc": "0", f"{pid}.a1.out": out_a, f"{pid}.b1.rc": "0", f"{pid}.b1.out": out_b,
            f"{pid}.first_reply": first, f"{pid}.ep_in_a": ep_in_a, f"{pid}.ep_in_b": ep_in_b,
            f"{pid}.status_a": f"interface wg0\n{status_a}", f"{pid}.status_b": f"interface wg0\n{status_b}",
            f"{pid}.ping_end": "answered" if first else "no answer"}


def test_an_endpoint_the_kernel_learned_before_wgsigc_wrote_is_public_when_a_server_saw_it() -> None:
    """A full cone: a's run ended before b registered; b's handshake taught a's kernel b's
    server-seen endpoint. That is the public path, not roaming."""
    f = facts("p0", "wg0: public endpoint 192.0.2.11:51820; 2 of 2 servers answered; 0 peers updated, 1 healthy",
              "wg0: peer X: set endpoint: endpoint (none) -> 192.0.2.11:51820 (public) (no handshake yet)\n"
              "wg0: public endpoint 192.0.2.12:51820; 2 of 2 servers answered; 1 peers updated, 1 healthy",
              "192.0.2.12:51820", "192.0.2.11:51820",
              EIM.format(ep="192.0.2.11:51820"), EIM.format(ep="192.0.2.12:51820"))
    (pair,) = parse(f, [("full-cone", "full-cone")])
    assert pair.tunnel and pair.path == "public" == expected("full-cone", "full-cone").path
    assert pair.side_a.nat_seen == "one endpoint for all"


def test_a_port_no_server_saw_is_roaming() -> None:
    """Against a symmetric NAT the full cone's kernel holds the port that NAT opened towards it."""
    f = facts("p0", "wg0: peer X: set endpoint: endpoint (none) -> 192.0.2.12:48002 (public) (no handshake yet)\n"
              "wg0: public endpoint 192.0.2.11:51820; 2 of 2 servers answered; 1 peers updated, 1 healthy",
              "wg0: peer Y: set endpoint: endpoint (none) -> 192.0.2.11:51820 (public) (no handshake yet)\n"
              "wg0: public endpoint 192.0.2.12:48002; 2 of 2 servers answered; 1 peers updated, 1 healthy",
              "192.0.2.12:35295", "192.0.2.11:51820",
              EIM.format(ep="192.0.2.11:51820"), SYM.format(p="192.0.2.12:55293", q="192.0.2.12:48002"))
    (pair,) = parse(f, [("full-cone", "symmetric")])
    assert pair.path == "roamed" == expected("full-cone", "symmetric").path
    assert pair.side_b.nat_seen == "new port per destination"
    assert "yes" in table([pair]) and "port learned by WireGuard's roaming" in table([pair])


def test_a_written_mapped_endpoint_is_the_mapped_path_and_no_tunnel_says_why() -> None:
    mapped = facts("p0", "wg0: public endpoint 192.0.3.21:53349; 2 of 2 servers answered; 0 peers updated, 1 healthy",
                   "wg0: peer X: set endpoint: endpoint (none) -> 192.0.3.21:51820 (mapped) (candidate 1 of 2)",
                   "192.0.2.22:12046", "192.0.3.21:51820",
                   SYM.format(p="192.0.3.21:7848", q="192.0.3.21:53349"), EIM.format(ep="192.0.2.22:51820"))
    none = facts("p1", "wg0: ...", "wg0: ...", "192.0.2.12:51820", "192.0.2.11:15283", "", "", first="")
    one, two = parse(mapped | none, [("symmetric-pcp", "port-restricted"), ("symmetric", "port-restricted")])
    assert one.path == "mapped" and not two.tunnel and two.path == "-"
    text = table([one, two])
    assert "through the port mapping" in text
    assert "no: needs a relay or a port mapping (symmetric mapping on one side, port-dependent filtering" in text


def test_the_readme_table_is_replaced_between_the_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{BEGIN}\nold table\n{END}\nafter\n")
    assert update_readme("| new |", readme) is None
    assert readme.read_text() == f"before\n{BEGIN}\n| new |\n{END}\nafter\n"
    readme.write_text("no markers\n")
    assert update_readme("| new |", readme) is not None and readme.read_text() == "no markers\n"


def test_every_nat_kind_of_issue_14_is_in_the_matrix_and_the_lanes_share_the_waiting_pairs() -> None:
    pairs = all_pairs()
    kinds = {k for pair in pairs for k in pair}
    assert {"full-cone", "address-restricted", "port-restricted", "symmetric", "cgnat", "symmetric-pcp",
            "shared", "shared-hairpin"} <= kinds
    assert len(set(pairs)) == len(pairs)
    lane = lanes(pairs, 2)
    waiting = [lane[i] for i, p in enumerate(pairs) if not expected(*p).tunnel]
    assert len(waiting) >= 2 and len(set(waiting)) == 2  # the pairs without a tunnel do not all queue up
    assert set(lanes(pairs, 1)) == {0}
