"""Build the wgsig .deb for the package tests (scripts/build-deb.sh, out of tree).

``WGSIG_DEB_SOURCE`` names another checkout to build from (default: this one).
The build needs a Debian host with root (build dependencies are installed with
apt-get when missing); elsewhere the calling test is skipped (failed in CI).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILD_DEB = REPO / "scripts" / "build-deb.sh"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# The version in debian/changelog, and a newer one built on the fly for upgrades.
VERSION = "0.1.0-1"
UPGRADE_VERSION = "0.1.1-1"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def build_deb(out_dir: Path, version: str | None = None) -> Path:
    """Build the package (as *version* when given, else debian/changelog's) into *out_dir*."""
    reason = None
    if not sys.platform.startswith("linux") or shutil.which("dpkg-buildpackage", path=SYSTEM_PATH) is None:
        reason = "building the .deb needs a Debian host with dpkg-dev"
    elif os.geteuid() != 0:
        reason = "building the .deb may install build dependencies: needs root"
    if reason:
        if _in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    cmd = [str(BUILD_DEB), "--out", str(out_dir)]
    if version:
        cmd += ["--version", version]
    cmd.append(os.environ.get("WGSIG_DEB_SOURCE", str(REPO)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = SYSTEM_PATH
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-deb.sh failed ({proc.returncode}):\n{proc.stderr[-5000:]}", pytrace=False)
    deb = Path(proc.stdout.strip().splitlines()[-1])
    assert deb.is_file(), proc.stdout
    return deb


def download_deb(package: str, out_dir: Path) -> Path:
    """Debian's .deb of *package* (``apt-get download``, the host's sources) into *out_dir*."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {"PATH": SYSTEM_PATH}
    fetch = ["apt-get", "download", "-qq", package]
    proc = subprocess.run(fetch, cwd=out_dir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:  # stale package lists: update once
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        proc = subprocess.run(fetch, cwd=out_dir, env=env, capture_output=True, text=True)
    debs = sorted(out_dir.glob(f"{package}_*.deb"))
    for deb in debs:
        deb.chmod(0o644)  # downloaded as root, 0600: apt's _apt user must read it in the guest
    if proc.returncode != 0 or not debs:
        reason = f"cannot download {package} from Debian: {proc.stderr.strip()[-300:]}"
        if _in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return debs[-1]


@dataclass(frozen=True)
class GuestRun:
    """The output of one guest run (container or VM) and its "CHECK name rc" lines."""

    output: str

    def check(self, *names: str) -> None:
        checks = {m[1]: int(m[2]) for m in re.finditer(r"^CHECK (\S+) (\d+)$", self.output, re.M)}
        failed = [n for n in names if checks.get(n) != 0]
        assert not failed, f"failed or missing checks {failed}:\n{self.output}"
