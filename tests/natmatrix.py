"""The NAT behaviour matrix: run tests/natmatrix_lab.sh in the QEMU VM, judge it, make its table.

    python3 -m tests.natmatrix [--update-readme] [--quick]     (scripts/natmatrix.sh runs this)

The behaviours (RFC 4787 terms), built with nftables in namespaces; every NAT drops unsolicited
inbound traffic unless said:

- ``full-cone``: endpoint-independent mapping and filtering (a static forward of WireGuard's port);
- ``address-restricted``: endpoint-independent mapping, address-dependent filtering (any port of a
  host that the peer sent to may send in);
- ``port-restricted``: Linux ``masquerade`` with a stateful filter (the usual home router);
- ``symmetric``: ``masquerade fully-random``, a new public port for every destination;
- ``cgnat``: a port-restricted home NAT behind a carrier's port-restricted NAT (100.64.0.0/10);
- ``shared``: both peers behind one port-restricted NAT that does not hairpin; ``shared-hairpin``
  the same NAT with hairpinning (NAT loopback); ``shared-hairpin-nocand`` that one with
  ``candidates = false`` on both peers, so the tunnel must go through the loopback.

Used by tests/test_natmatrix_vm.py (which checks every pair against ``expected``) and by
scripts/natmatrix.sh (which prints the table and, with --update-readme, writes it into README.md
between the ``natmatrix`` markers).
"""

from __future__ import annotations

import argparse
import compileall
import itertools
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KINDS = ("full-cone", "address-restricted", "port-restricted", "symmetric", "cgnat")
SHARED = ("shared", "shared-hairpin", "shared-hairpin-nocand")
# Hard to get through: a new port per destination, or filtering by address and port.
HARD = frozenset({"symmetric"})
FILTERS_BY_PORT = frozenset({"port-restricted", "cgnat", "symmetric"})
BEGIN, END = "<!-- natmatrix: begin (sh scripts/natmatrix.sh --update-readme) -->", "<!-- natmatrix: end -->"
NAMES = {
    "full-cone": "full cone (port forward)", "address-restricted": "address-restricted cone",
    "port-restricted": "port-restricted cone (masquerade)", "symmetric": "symmetric (masquerade fully-random)",
    "cgnat": "double NAT (home NAT behind a CGNAT)",
    "shared": "both behind one NAT, no hairpinning", "shared-hairpin": "both behind one NAT with hairpinning",
    "shared-hairpin-nocand": "both behind one NAT with hairpinning, candidates = false",
}


def all_pairs() -> list[tuple[str, str]]:
    """Every unordered pair of KINDS, then the one-NAT cases (their second kind is the first)."""
    return list(itertools.combinations_with_replacement(KINDS, 2)) + [(s, s) for s in SHARED]


# A representative set for the test suite: each kind at least once, both outcomes of a symmetric
# NAT, both one-NAT cases of the shipped client (scripts/natmatrix.sh runs every pair).
QUICK = [("full-cone", "port-restricted"), ("address-restricted", "port-restricted"),
         ("port-restricted", "port-restricted"), ("cgnat", "port-restricted"),
         ("symmetric", "full-cone"), ("symmetric", "address-restricted"), ("symmetric", "port-restricted"),
         ("shared", "shared"), ("shared-hairpin-nocand", "shared-hairpin-nocand")]


@dataclass(frozen=True)
class Expected:
    tunnel: bool
    path: str | None  # "LAN", "public", "roamed", "hairpin"; None without a tunnel


def expected(a: str, b: str) -> Expected:
    """What wgsigc reaches without a relay or port mapping (issue 14)."""
    if a.startswith("shared"):
        return Expected(True, "hairpin" if a == "shared-hairpin-nocand" else "LAN")
    kinds = {a, b}
    if kinds & HARD:
        other = (kinds - HARD) or HARD
        # WireGuard's roaming: the side that lets any port of a host in answers where the
        # symmetric side's packet came from; a side that filters by port never lets it in.
        if other & FILTERS_BY_PORT:
            return Expected(False, None)
        return Expected(True, "roamed")
    return Expected(True, "public")


@dataclass(frozen=True)
class Side:
    rc: tuple[int, ...]  # the exit code of each round's run
    out: str  # every round's output
    endpoint: str  # what its kernel holds for the other peer

    def wrote(self, endpoint: str) -> str | None:
        """The candidate kind wgsigc wrote (or found set) for ``endpoint``, None if it never did."""
        m = re.search(rf"{re.escape(endpoint)} \(([\w+-]+)\)", self.out) if endpoint else None
        return m[1] if m else None


@dataclass(frozen=True)
class Pair:
    id: str
    a: str
    b: str
    seconds: float | None  # from b's first run start to a's first ping reply
    side_a: Side
    side_b: Side

    @property
    def tunnel(self) -> bool:
        return self.seconds is not None

    @property
    def path(self) -> str:
        """Which path the tunnel took: LAN, hairpin, public, or roamed (a kernel holds an endpoint
        that wgsigc never wrote: WireGuard learned it from the other peer's packets)."""
        if not self.tunnel:
            return "-"
        ends = (self.side_a.endpoint, self.side_b.endpoint)
        kinds = (self.side_a.wrote(ends[0]), self.side_b.wrote(ends[1]))
        if "hairpin" in kinds:  # the other side may hold the NAT's LAN address (the loopback masquerades)
            return "hairpin"
        if all(e.startswith("10.") for e in ends):
            return "LAN"
        return "roamed" if None in kinds else "public"

    def diagnosis(self) -> list[str]:
        """The lines wgsigc gave for a peer it could not reach (or for this host's NAT)."""
        lines = (self.side_a.out + "\n" + self.side_b.out).splitlines()
        return sorted({line for line in lines if "NAT" in line and line.startswith("wgsigc: ")})


def parse(facts: dict[str, str], pairs: list[tuple[str, str]]) -> list[Pair]:
    result = []
    for i, (a, b) in enumerate(pairs):
        pid = f"p{i}"
        if f"{pid}.ping_end" not in facts:
            break

        seconds = facts.get(f"{pid}.first_reply", "")
        result.append(Pair(pid, a, b, float(seconds) if seconds else None, _side(facts, pid, "a"),
                           _side(facts, pid, "b")))
    return result


def _side(facts: dict[str, str], pid: str, x: str) -> Side:
    """Peer x's runs (one or two rounds) and the endpoint its kernel holds, from the facts."""
    rounds = [r for r in (1, 2) if f"{pid}.{x}{r}.rc" in facts]
    return Side(tuple(int(facts[f"{pid}.{x}{r}.rc"]) for r in rounds),
                "\n".join(facts[f"{pid}.{x}{r}.out"] for r in rounds), facts.get(f"{pid}.ep_in_{x}", ""))


def run_matrix(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], str]:
    """One VM boot for every pair; the facts it reported and its whole output."""
    sys.path.insert(0, str(ROOT))
    from tests.labfacts import run_lab
    from tests.test_kernel_vm import _copy_sources

    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp)
        _copy_sources(payload / "src")
        compileall.compile_dir(payload, quiet=2, workers=2)
        (payload / "pairs.txt").write_text("".join(f"p{i} {a} {b}\n" for i, (a, b) in enumerate(pairs)))
        # about 25 s a connecting pair, 65 s one that does not (two timer rounds)
        lab = run_lab(payload, HERE / "natmatrix_lab.sh", 120 + 70 * len(pairs), "NAT matrix")
        return lab.facts, lab.output


PATHS = {"LAN": "LAN", "public": "public endpoints", "roamed": "public; port learned by WireGuard's roaming",
         "hairpin": "public, through the NAT's loopback", "-": "—"}


def table(pairs: list[Pair]) -> str:
    lines = ["| peer a's NAT | peer b's NAT | tunnel | path | seconds to the first ping |",
             "|---|---|---|---|---:|"]
    for p in pairs:
        seconds = f"{p.seconds:.1f}" if p.seconds is not None else "—"
        tunnel = "yes" if p.tunnel else "no: needs a relay or a port mapping (diagnosed)"
        b = "(the same NAT)" if p.a.startswith("shared") else NAMES[p.b]
        lines.append(f"| {NAMES[p.a]} | {b} | {tunnel} | {PATHS[p.path]} | {seconds} |")
    return "\n".join(lines)


def update_readme(text: str, readme: Path = ROOT / "README.md") -> str | None:
    """Write the table between the markers; an error line when they are missing."""
    content = readme.read_text()
    if BEGIN not in content or END not in content:
        return "natmatrix: README.md has no natmatrix markers"
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the NAT behaviour matrix in the VM and print its table.")
    parser.add_argument("--update-readme", action="store_true", help="write the table into README.md")
    parser.add_argument("--quick", action="store_true", help="only the test suite's representative pairs")
    args = parser.parse_args()
    from tests.vmlib import ensure_image

    ensure_image()
    wanted = QUICK if args.quick else all_pairs()
    start = time.monotonic()
    facts, out = run_matrix(wanted)
    pairs = parse(facts, wanted)
    if len(pairs) != len(wanted):
        print(out)
        print(f"natmatrix: the VM run stopped after {len(pairs)} of {len(wanted)} pairs", file=sys.stderr)
        return 1
    text = table(pairs)
    print(text)
    unexpected = [p for p in pairs if Expected(p.tunnel, p.path if p.tunnel else None) != expected(p.a, p.b)]
    for p in unexpected:
        print(f"natmatrix: {p.a} / {p.b}: expected {expected(p.a, p.b)}, got tunnel {p.tunnel}, path {p.path}",
              file=sys.stderr)
    print(f"({len(pairs)} pairs in {time.monotonic() - start:.0f} s)")
    if args.update_readme:
        error = update_readme(text)
        if error is not None:
            print(error, file=sys.stderr)
            return 1
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
