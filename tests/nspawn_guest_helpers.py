"""What the guest scripts run inside ``systemd-nspawn --boot`` share (tests/nspawn_relay_guest.py,
tests/nspawn_systemd_guest.py): commands, the ``CHECK <name> PASS|FAIL <detail>`` lines, phases
whose exception is a failed check, waiting, a unit's property, and installing the payload's
project and units the way the package does. Shipped next to them in /srv/payload
(tests/vmlib.py ``write_unit_guest_payload``); standard library only, as the project is not
installed yet when the guest imports it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAYLOAD = Path("/srv/payload")
DIST = Path("/usr/lib/python3/dist-packages")
UNIT_DIR = Path("/lib/systemd/system")


def run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def out(*cmd: str) -> str:
    return run(*cmd).stdout.strip()


def check(name: str, ok: bool, detail: str = "") -> bool:
    print(f"CHECK {name} {'PASS' if ok else 'FAIL'} {' '.join(detail.split())[:1500]}", flush=True)
    return ok


def phase(name: str, body: Callable[[], None]) -> None:
    """Run one group of checks; an exception is a failed check, not the end of the run."""
    try:
        body()
    except Exception as error:  # reported as a failed check
        check(f"{name}_completed", False, f"{type(error).__name__}: {error}")


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def prop(unit: str, name: str) -> str:
    return out("systemctl", "show", "-P", name, unit)


def install_project() -> None:
    """The payload's packages in dist-packages, /usr/bin/wgsigd and /usr/bin/wgsigc, its units in
    /lib/systemd/system and the units' SupplementaryGroups= (metrics), as the package's postinst
    creates it; then a daemon-reload."""
    for package in ("wgsig", "wgsigd", "wgsigc"):
        shutil.copytree(PAYLOAD / "src" / package, DIST / package, dirs_exist_ok=True)
    for program in ("wgsigd", "wgsigc"):
        path = Path("/usr/bin") / program
        path.write_text(f"#!/usr/bin/python3\nimport sys\nfrom {program}.cli import main\nsys.exit(main())\n")
        path.chmod(0o755)
    for unit in sorted((PAYLOAD / "units").iterdir()):
        shutil.copy(unit, UNIT_DIR / unit.name)
    run("addgroup", "--system", "--quiet", "wgsig-metrics")
    run("systemctl", "daemon-reload")
