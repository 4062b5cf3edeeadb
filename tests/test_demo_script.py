"""scripts/demo.sh's argument handling, without running either demo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.sh"
USAGE = "usage: sh scripts/demo.sh [--vm]\n"


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(DEMO), *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("args", [["--bogus"], ["vm"], ["--vm", "extra"], ["--vm", "--vm"]])
def test_a_wrong_argument_gives_one_usage_line_and_exit_2(args: list[str]) -> None:
    res = _demo(*args)
    assert (res.returncode, res.stdout, res.stderr) == (2, "", USAGE)


def test_help_is_the_header_comment_and_names_both_forms() -> None:
    res = _demo("--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith("A tour of wgsig")
    assert "sh scripts/demo.sh --vm" in res.stdout
    assert "#!/bin/sh" not in res.stdout and "set -eu" not in res.stdout
