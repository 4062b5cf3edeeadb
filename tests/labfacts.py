"""What a lab run in a guest observed, for the VM tests to judge (the reading side of
tests/labfacts.sh).

The guest's shell does what only the guest can do -- run wgsigc, read the kernel's WireGuard
state, ping through a tunnel -- and prints ``FACT name=value`` lines (newlines in a value as
``\\n``); a wgsigc run is ``NAME.rc`` and ``NAME.out``. The tests assert on those values, with
messages that name the behaviour. Lab preconditions that are only the lab's own plumbing stay
shell checks: ``RESULT name PASS|FAIL`` (tests/kernel_lab.sh, tests/x1_lab.sh) or
``CHECK name rc`` (the package story), each asserted with the behaviour it stands for.
``FIGURE name seconds`` lines are measured durations.
"""

from __future__ import annotations

import compileall
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

from tests.vmlib import run_in_qemu, write_payload

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_FACT = re.compile(r"^FACT ([\w.-]+)=(.*)$", re.M)


@dataclass(frozen=True)
class Run:
    """One wgsigc run in the guest: its exit code and its output (stdout and stderr)."""

    name: str
    rc: int
    out: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def __str__(self) -> str:
        return f"run {self.name} (exit code {self.rc}):\n{self.out}"


@dataclass(frozen=True)
class LabRun:
    output: str

    @cached_property
    def facts(self) -> dict[str, str]:
        """Every fact; a name reported twice keeps its last value."""
        return {m[1]: m[2].replace("\\n", "\n") for m in _FACT.finditer(self.output)}

    def fact(self, name: str) -> str:
        assert name in self.facts, f"the lab reported no fact {name!r} (did it get that far?)\n{self.tail()}"
        return self.facts[name]

    def lines(self, name: str) -> list[str]:
        """A fact of several lines (a kernel listing), blank lines left out."""
        return [line for line in self.fact(name).splitlines() if line.strip()]

    def run(self, name: str) -> Run:
        return Run(name, int(self.fact(f"{name}.rc")), self.fact(f"{name}.out"))

    def figure(self, name: str) -> float:
        match = re.search(rf"^FIGURE {name} (-?[0-9.]+)", self.output, re.M)
        assert match, f"the lab printed no figure {name}\n{self.tail()}"
        return float(match[1])

    def figures(self, name: str) -> list[float]:
        return [float(m) for m in re.findall(rf"^FIGURE {name} (-?[0-9.]+)", self.output, re.M)]

    def answered(self, name: str, what: str) -> None:
        """fact_ping NAME was answered; if not, the message shows what WireGuard held then."""
        assert self.fact(name) == "answered", \
            f"a ping through the tunnel is answered: {what}\nwg show all, then:\n{self.facts.get(name + '.why', '')}"

    def passed(self, **behaviours: str) -> None:
        """Shell checks printed as ``RESULT name PASS|FAIL detail``: each name with what it shows."""
        results = dict(re.findall(r"^RESULT (\S+) (PASS|FAIL)", self.output, re.M))
        for name, behaviour in behaviours.items():
            assert results.get(name) == "PASS", f"{behaviour} ({name}: {results.get(name, 'not run')})\n{self.tail()}"

    def checked(self, **behaviours: str) -> None:
        """Shell checks printed as ``CHECK name rc``: each name with what it shows."""
        checks = {m[1]: int(m[2]) for m in re.finditer(r"^CHECK (\S+) (\d+)$", self.output, re.M)}
        for name, behaviour in behaviours.items():
            assert checks.get(name) == 0, f"{behaviour} ({name}: {checks.get(name, 'not run')})\n{self.tail()}"

    def tail(self, lines: int = 60) -> str:
        """The end of the guest's output: where a failed lab stopped."""
        return "\n".join(self.output.splitlines()[-lines:])


def run_lab(payload: Path, script: Path, timeout: int, title: str) -> LabRun:
    """Boot the VM once with ``script`` (bash, as /srv/payload/lab.sh, next to natlab.sh and
    labfacts.sh) on top of what ``payload`` already holds; fails the tests if it reported nothing."""
    write_payload(payload, "exec bash /srv/payload/lab.sh")
    shutil.copy(script, payload / "lab.sh")
    for helper in ("natlab.sh", "labfacts.sh"):
        shutil.copy(HERE / helper, payload / helper)
    start = time.monotonic()
    rc, out = run_in_qemu(payload, timeout=timeout)
    if threading.current_thread() is threading.main_thread():  # not from tests/vmlane.py's lane
        print(f"\n[{title} VM run: {time.monotonic() - start:.1f} s]\n{out}")
    lab = LabRun(out)
    if not lab.facts:
        pytest.fail(f"the lab reported nothing (rc {rc}):\n{out}", pytrace=False)
    return lab


def copy_sources(dest: Path) -> None:
    """Copy the packages; the working tree is shared with other editors, so check that the copy
    imports (a file caught mid-edit does not) and copy again if it does not."""
    for _attempt in range(5):
        shutil.rmtree(dest, ignore_errors=True)
        for package in ("wgsig", "wgsigd", "wgsigc"):
            shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
        check = subprocess.run(
            [sys.executable, "-c", "import wgsigd.cli, wgsigc.cli, wgsigc.kernelmode, wgsigc.status"],
            cwd=dest, capture_output=True, text=True,
        )
        if check.returncode == 0:
            return
        time.sleep(3)
    pytest.fail(f"the sources do not import:\n{check.stderr}", pytrace=False)


def run_sources_lab(payload: Path, script: Path, timeout: int, title: str) -> LabRun:
    """``run_lab`` with the checkout's packages in ``payload/src`` (``copy_sources``), the whole payload
    byte-compiled on the host (the guest's Python 3.11 too): that saves seconds per import under TCG."""
    copy_sources(payload / "src")
    compileall.compile_dir(payload, quiet=2, workers=2)
    return run_lab(payload, script, timeout, title)
