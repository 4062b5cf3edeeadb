"""wgsig-relay.service under systemd as PID 1 (``systemd-nspawn --boot``, Debian bookworm,
systemd 252): one boot runs tests/nspawn_relay_guest.py, which installs the project and the units
of packaging/systemd/ as the package does and prints one ``CHECK name PASS|FAIL`` line per check.
Real components throughout: PID 1, socket activation of wgsigd, DynamicUser shared by the two
units (the relay reads wgsigd's allocation file), journald, the exposure score of bookworm's
systemd-analyze."""

from __future__ import annotations

import re

import pytest

from tests.vmlib import run_in_nspawn, write_unit_guest_payload

pytestmark = pytest.mark.vm

CHECKS = [
    "relay_verify_clean",
    "relay_security",
    "relay_disabled_by_default",
    "relay_unconfigured_does_nothing",
    "relay_without_section_exits_6_once",
    "relay_bit_announced",
    "relay_allocated",
    "relay_reads_wgsigd_allocations_and_binds",
    "relay_forwards_under_its_unit",
    "relay_runs_as_wgsigds_dynamic_user",
    "relay_stop_reports_counters",
]


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = write_unit_guest_payload(tmp_path_factory.mktemp("relay-nspawn"), "nspawn_relay_guest.py",
                                         {"x1_exchange.py": "x1_exchange.py"})
    rc, output = run_in_nspawn(directory, timeout=180)
    print(output)
    assert rc == 0, output
    return output


@pytest.mark.parametrize("name", CHECKS)
def test_relay_unit(guest_run: str, name: str) -> None:
    found = re.search(rf"^CHECK {name} (PASS|FAIL) ?(.*)$", guest_run, re.M)
    assert found is not None, f"{name} did not run:\n{guest_run[-3000:]}"
    assert found[1] == "PASS", found[2]


def test_every_phase_completed(guest_run: str) -> None:
    assert "_completed FAIL" not in guest_run, guest_run
