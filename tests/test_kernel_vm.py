"""wgsigc kernel mode against real kernel WireGuard, in a QEMU VM with a NAT lab (real, no fakes).

One VM boot runs every scenario in sequence (software emulation is slow); the guest script
prints ``RESULT <name> PASS|FAIL <detail>`` lines and each test below checks one of them.

Lab: namespace ``pub`` (bridge 192.0.2.1/24) runs two wgsigd on ports 1223 and 1224 with
one secret; NAT namespaces ``nata`` (WAN 192.0.2.11) and ``natb`` (192.0.2.12) masquerade and
drop unsolicited inbound WAN traffic; peers ``a`` (10.1.0.2) and ``b`` (10.2.0.2) behind them
each have a kernel WireGuard ``wg0`` (port 51820) with keys and allowed IPs but no endpoint.

Keys d and e register with server 1 (the C client's mode, from the public network): d is in
a's ``[[interface.wg0.peer]]`` list but not on its interface, e is known to the server only.

Scenarios:
1. pyroute2 0.7.2 (Debian's): the errors pyroute2 raises for a vanished / non-WireGuard interface
   are those the fake kernel of tests/test_wgsigc_vanish.py raises; wgsigc in a with wg0 down
   (port free) and without CAP_NET_RAW registers from the port itself; then b, a -> handshake,
   ping, allowed IPs unchanged; a fourth run leaves the healthy peer alone and adds d with
   exactly its configured allowed IPs, ignores e; ``wgsigc status --json`` shows it.
2. Same from scratch with pyroute2 0.9.5 (PYTHONPATH).
3. Server 2 stopped, NAT A's public address changes (192.0.2.11 -> .21): the tunnel breaks;
   the next wgsigc runs (a, then b) restore it, with one server answering.
4. NAT A switches to ``masquerade fully-random``: no tunnel, wgsigc names a symmetric NAT
   (a: two servers saw different ports; b: no handshake since the endpoint was set), exits 5,
   and every peer keeps its keys and allowed IPs.
5. Server answers to b delayed 1.5 s (netem); b's wg0 is deleted right after b registered:
   exit 4 with one line; then re-created with a new key mid-run: exit 4, nothing written to it.
"""

from __future__ import annotations

import compileall
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.vmlib import add_pyroute2, run_in_qemu, write_payload

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parent.parent
PYROUTE2_NEW = "0.9.5"

LAB = Path(__file__).resolve().parent / "kernel_lab.sh"


def _results(output: str) -> dict[str, str]:
    return {m[1]: m[2] for m in re.finditer(r"^RESULT (\S+) (PASS|FAIL)", output, re.M)}


def _copy_sources(dest: Path) -> None:
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> str:
    payload = tmp_path_factory.mktemp("kernel-lab")
    _copy_sources(payload / "src")
    add_pyroute2(payload, PYROUTE2_NEW)
    # Byte-compile on the host (same Python 3.11 as the guest): saves seconds per import under TCG.
    compileall.compile_dir(payload, quiet=2, workers=2)
    write_payload(payload, "exec bash /srv/payload/lab.sh")
    shutil.copy(LAB, payload / "lab.sh")
    shutil.copy(LAB.with_name("natlab.sh"), payload / "natlab.sh")
    start = time.monotonic()
    rc, out = run_in_qemu(payload, timeout=420)
    print(f"\n[kernel lab VM run: {time.monotonic() - start:.1f} s]\n{out}")
    if not _results(out):
        pytest.fail(f"the lab produced no results (rc {rc}):\n{out}", pytrace=False)
    return out


def _passed(out: str, *names: str) -> None:
    results = _results(out)
    for name in names:
        assert results.get(name) == "PASS", f"{name}: {results.get(name, 'missing')}\n{out}"


def test_lab_servers_listen(lab: str) -> None:
    _passed(lab, "servers_listening", "nata_ruleset", "natb_ruleset")


@pytest.mark.parametrize("tag", ["p072", "p095"])
def test_tunnel_comes_up_through_two_nats(lab: str, tag: str) -> None:
    _passed(lab, f"{tag}_pyroute2_version", f"{tag}_pyroute2_lite_load", f"{tag}_first_run_a", f"{tag}_first_run_b", f"{tag}_second_run_a",
            f"{tag}_handshake", f"{tag}_ping")


@pytest.mark.parametrize("tag", ["p072", "p095"])
def test_real_pyroute2_errors_match_the_fake_kernel(lab: str, tag: str) -> None:
    _passed(lab, f"{tag}_fake_errors_match")


@pytest.mark.parametrize("tag", ["p072", "p095"])
def test_interface_down_registers_from_the_port_itself_without_raw_socket(lab: str, tag: str) -> None:
    _passed(lab, "raw_denied_without_cap", f"{tag}_down_port_free", f"{tag}_first_run_a", f"{tag}_direct_bind")


@pytest.mark.parametrize("tag", ["p072", "p095"])
def test_configured_peer_added_with_its_allowed_ips_unconfigured_key_ignored(lab: str, tag: str) -> None:
    _passed(lab, "d_registered", "e_registered", f"{tag}_config_peer_added", f"{tag}_unconfigured_key_ignored",
            f"{tag}_config_peer_others_unchanged")


def test_interface_deleted_mid_run_exits_4_with_one_line(lab: str) -> None:
    _passed(lab, "slow_link", "vanish_exit_4", "vanish_one_line")


def test_interface_rekeyed_mid_run_gets_nothing_written(lab: str) -> None:
    _passed(lab, "slow_link", "rekeyed_exit_4", "rekeyed_nothing_written")


@pytest.mark.parametrize("tag", ["p072", "p095"])
def test_allowed_ips_unchanged(lab: str, tag: str) -> None:
    _passed(lab, f"{tag}_allowed_ips_unchanged")


@pytest.mark.parametrize("tag", ["p072", "p095"])
def test_healthy_peer_left_alone(lab: str, tag: str) -> None:
    _passed(lab, f"{tag}_healthy_left_alone")


def test_status_json_reports_both_endpoints(lab: str) -> None:
    _passed(lab, "p072_status_json")


def test_nat_address_change_is_restored_by_next_run(lab: str) -> None:
    _passed(lab, "mapping_change_breaks_tunnel", "mapping_run_a", "mapping_run_b", "mapping_b_follows",
            "mapping_restored_ping", "mapping_allowed_ips_unchanged")


def test_one_server_down_changes_nothing(lab: str) -> None:
    _passed(lab, "server2_stopped", "one_server_down_warns", "mapping_run_a")


def test_fully_random_nat_is_diagnosed(lab: str) -> None:
    _passed(lab, "random_ruleset", "random_a_diagnosis", "random_b_second_candidate", "random_b_diagnosis",
            "random_no_tunnel",
            "random_status_shows_problem")


def test_fully_random_nat_damages_nothing(lab: str) -> None:
    _passed(lab, "random_allowed_ips_unchanged", "random_keys_kept")
