"""debian/tests (DEP-8) run as Debian's CI runs them: Debian's autopkgtest, on the built .deb.

The runner is autopkgtest's ``null`` virtualisation server inside ``systemd-nspawn --boot``
(systemd as PID 1, private network: nothing of the host's ports is seen). autopkgtest installs
the .deb and each test's Depends with apt (everything is in the test image, no mirror needed),
runs each test and writes its summary; this test asserts each test's line is PASS.
``--ignore-restrictions=breaks-testbed``: the null server cannot revert the testbed, but the
container's root is a throw-away overlay, which is what breaks-testbed asks for.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.debpkg import REPO, VERSION, build_deb
from tests.vmlib import run_in_nspawn, write_payload

pytestmark = pytest.mark.vm

TESTS = ("check-examples", "socket-activation", "purge")

SCRIPT = r"""
set +e
systemctl is-system-running --wait >/dev/null
autopkgtest --ignore-restrictions=breaks-testbed --output-dir /tmp/autopkgtest-out \
    /srv/payload/debs/wgsig___VERSION___all.deb /srv/payload/src -- null
echo "AUTOPKGTEST_EXIT $?"
echo "=== summary"
cat /tmp/autopkgtest-out/summary
echo "=== end of summary"
for f in /tmp/autopkgtest-out/*-stderr; do [ ! -s "$f" ] || { echo "=== $f"; cat "$f"; }; done
"""


def _copy_source(target: Path, deb: Path) -> None:
    """The source tree the .deb was built from (no VCS data, no caches), marked as built.

    debian/files (written by a build; scripts/build-deb.sh builds out of tree) tells
    autopkgtest the tree is built, so it neither builds it nor installs dpkg-dev to unpack it.
    """
    ignore = shutil.ignore_patterns(".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "*.deb")
    shutil.copytree(REPO, target, ignore=ignore)
    (target / "debian" / "files").write_text(f"{deb.name} net optional\n")


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    payload = write_payload(tmp_path_factory.mktemp("autopkgtest") / "p", SCRIPT.replace("__VERSION__", VERSION))
    _copy_source(payload / "src", build_deb(payload / "debs"))
    start = time.monotonic()
    rc, out = run_in_nspawn(payload, timeout=400)
    print(out)
    print(f"\n[autopkgtest in nspawn: {time.monotonic() - start:.1f} s]")
    assert rc == 0, out
    found = re.search(r"^=== summary\n(.*?)^=== end of summary$", out, re.M | re.S)
    assert found, out
    results = {}
    for line in found[1].splitlines():
        name, _, result = line.partition(" ")
        results[name] = result.strip()
    exit_line = re.search(r"^AUTOPKGTEST_EXIT (\d+)$", out, re.M)
    results["(exit)"] = exit_line[1] if exit_line else "missing"
    return results


@pytest.mark.parametrize("name", TESTS)
def test_autopkgtest_passes(summary: dict[str, str], name: str) -> None:
    assert summary.get(name) == "PASS", summary


def test_autopkgtest_ran_exactly_the_declared_tests(summary: dict[str, str]) -> None:
    """No test skipped or added: autopkgtest exits 0 only when every test passed."""
    assert set(summary) - {"(exit)"} == set(TESTS), summary
    assert summary["(exit)"] == "0", summary
