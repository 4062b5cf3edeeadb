"""wgsigd and wgsigc under systemd as PID 1 (``systemd-nspawn --boot``, Debian bookworm, systemd 252).

One boot runs tests/nspawn_systemd_guest.py, which installs the project and the units of
packaging/systemd/ the way the package does and prints one ``CHECK name PASS|FAIL`` line per
check; each test below asserts one of them.  Real components throughout: socket activation
by PID 1, journald, DynamicUser, LoadCredential, the timer, a real UDP client (wgsigc print
mode), a raw socket and rtnetlink inside wgsigc's sandbox, and the exposure scores measured
by the systemd-analyze that ships in bookworm.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.vmlib import run_in_nspawn, run_in_qemu, write_unit_guest_payload

pytestmark = pytest.mark.vm

CHECKS = [
    "verify_clean",
    "security_wgsigd",
    "security_wgsigc",
    "verify_repair_units_clean",
    "boot_order_wgsigc_after_interface_tools",
    "unconfigured_opens_no_port",
    "unconfigured_timer_idle",
    "socket_listens_dual_stack",
    "service_not_started_before_first_datagram",
    "first_datagram_starts_service_and_is_answered",
    "socket_passes_known_sources_pair",
    "runs_as_dynamic_user",
    "allocator_environment_applied",
    "notify_status_text",
    "journal_registration_fields",
    "journal_no_noise_fields",
    "journal_rejection_fields",
    "journal_has_no_secret",
    "idle_exit_saves_and_exits_0",
    "idle_exit_logged",
    "reactivation_answers_waiting_datagrams_with_saved_records",
    "restart_keeps_records",
    "reload_adds_group_keeps_records",
    "daemon_reload_keeps_pair",
    "sigterm_saves_and_exits_0",
    "ip_firewall_enforced_but_not_on_passed_socket",
    "rejections_logged_at_debug_and_rate_limited",
    "timer_runs_wgsigc",
    "timer_run_registered_peer",
    "wgsigc_sandbox_allows_raw_socket_and_netlink",
    "wgsigc_sandbox_is_not_root",
    "timer_schedule",
]


def _payload(directory: Path) -> Path:
    return write_unit_guest_payload(directory, "nspawn_systemd_guest.py", {"nspawn_caps_probe.py": "caps_probe.py"})


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    rc, output = run_in_nspawn(_payload(tmp_path_factory.mktemp("systemd-payload")), timeout=240)
    print(output)
    assert rc == 0, output
    return output


def _result(output: str, name: str) -> tuple[str, str]:
    found = re.search(rf"^CHECK {name} (PASS|FAIL|SKIP) ?(.*)$", output, re.M)
    return (found[1], found[2]) if found else ("MISSING", output[-3000:])


@pytest.mark.parametrize("name", CHECKS)
def test_systemd(guest_run: str, name: str) -> None:
    verdict, detail = _result(guest_run, name)
    if verdict == "SKIP":
        pytest.skip(detail)
    assert verdict == "PASS", detail


def test_every_phase_completed(guest_run: str) -> None:
    assert "_completed FAIL" not in guest_run, guest_run


def test_security_scores_reported(guest_run: str) -> None:
    scores = dict(re.findall(r"^SCORE (\S+) ([0-9.]+)$", guest_run, re.M))
    print(f"\n[systemd-analyze security (systemd 252): {scores}]")
    assert float(scores["wgsigd.service"]) <= 2.0
    assert float(scores["wgsigc.service"]) <= 2.5


def test_same_checks_in_qemu_with_cgroup_bpf(tmp_path: Path) -> None:
    """The whole run once more in QEMU (real kernel): there IPAddressDeny= is enforced, so
    wgsigd answering proves the service's IP firewall does not apply to the passed socket."""
    rc, output = run_in_qemu(_payload(tmp_path / "p"), timeout=500)
    assert rc == 0, output
    verdicts = {name: _result(output, name)[0] for name in CHECKS}
    assert verdicts == dict.fromkeys(CHECKS, "PASS"), output
