"""The NAT behaviour matrix: run tests/natmatrix_lab.sh in the QEMU VM and make its table.

    python3 -m tests.natmatrix [--update-readme]     (scripts/natmatrix.sh runs this)

Used by tests/test_natmatrix_vm.py (which checks every pair against ``EXPECTED``) and by
scripts/natmatrix.sh (which prints the table and, with --update-readme, writes it into README.md
between the ``natmatrix`` markers).
"""

from __future__ import annotations

import argparse
import compileall
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KINDS = ("full-cone", "address-restricted", "port-restricted", "symmetric", "cgnat")
# Without a relay or port mapping, a NAT that maps each destination to a new port connects only to
# one that lets any port of a host (or any host) in: the other side learns the real port from the
# first authenticated packet (WireGuard's roaming).
NEEDS_RELAY = {frozenset({"symmetric"}), frozenset({"symmetric", "port-restricted"}),
               frozenset({"symmetric", "cgnat"})}
BEGIN, END = "<!-- natmatrix: begin (scripts/natmatrix.sh --update-readme) -->", "<!-- natmatrix: end -->"


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    tunnel: bool
    path: str
    seconds: float | None

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset({self.a, self.b})


def expected_tunnel(a: str, b: str) -> bool:
    return frozenset({a, b}) not in NEEDS_RELAY


def parse(output: str) -> list[Pair]:
    pairs = []
    for m in re.finditer(r"^MATRIX (\S+) (\S+) (yes|no) (\S+) (\S+)$", output, re.M):
        pairs.append(Pair(m[1], m[2], m[3] == "yes", m[4], None if m[5] == "-" else float(m[5])))
    return pairs


def run_matrix(kinds: tuple[str, ...] = KINDS, timeout: int = 1200) -> tuple[int, str]:
    sys.path.insert(0, str(ROOT))
    from tests.test_kernel_vm import _copy_sources
    from tests.vmlib import run_in_qemu, write_payload

    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp)
        _copy_sources(payload / "src")
        compileall.compile_dir(payload, quiet=2, workers=2)
        write_payload(payload, f"MATRIX_KINDS='{' '.join(kinds)}' exec bash /srv/payload/lab.sh")
        shutil.copy(HERE / "natmatrix_lab.sh", payload / "lab.sh")
        return run_in_qemu(payload, timeout=timeout)


PATHS = {"LAN": "LAN", "public": "public endpoints", "public-roamed": "public, port learned by roaming",
         "none": "?", "-": "—"}


def table(pairs: list[Pair]) -> str:
    lines = ["| peer a's NAT | peer b's NAT | tunnel | path | seconds to the first ping |",
             "|---|---|---|---|---:|"]
    for p in pairs:
        seconds = f"{p.seconds:.1f}" if p.seconds is not None else "—"
        tunnel = "yes" if p.tunnel else "no: needs a relay or port mapping"
        lines.append(f"| {p.a} | {p.b} | {tunnel} | {PATHS.get(p.path, p.path)} | {seconds} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the NAT behaviour matrix in the VM and print its table.")
    parser.add_argument("--update-readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args()
    from tests.vmlib import ensure_image

    ensure_image()
    start = time.monotonic()
    rc, out = run_matrix()
    pairs = parse(out)
    if rc != 0 or not pairs:
        print(out)
        print(f"natmatrix: the VM run failed (exit {rc}, {len(pairs)} pairs)", file=sys.stderr)
        return 1
    text = table(pairs)
    print(text)
    print(f"({len(pairs)} pairs in {time.monotonic() - start:.0f} s)")
    if args.update_readme:
        readme = ROOT / "README.md"
        content = readme.read_text()
        if BEGIN not in content or END not in content:
            print("natmatrix: README.md has no natmatrix markers", file=sys.stderr)
            return 1
        head, rest = content.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
