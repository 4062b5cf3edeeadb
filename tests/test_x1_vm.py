"""X1 in a QEMU VM with a NAT lab: real kernel WireGuard, real NATs and stateful firewalls.

One VM boot runs tests/x1_lab.sh; it prints ``RESULT name PASS|FAIL`` lines and ``FIGURE name
seconds`` lines, and each test below checks the results of one behaviour. wgsigc runs with the
shipped defaults (candidates on, converge_seconds 25) unless a scenario says otherwise; one peer's
run starts first and converges while the other peer's run starts, as two timers would.

Lab (tests/natlab.sh): namespace ``pub`` (192.0.2.1 and 2001:db8:ff::1) runs one dual-stack wgsigd
(``listen = "::"``); NATs A (192.0.2.11) and B (.12) masquerade for peers a (10.1.0.2) and b
(10.2.0.2); NAT C (.13) masquerades for l1 (10.3.0.2) and l2 (10.3.0.3) on one LAN; routers r6a and
r6b route 2001:db8:a::/64 and 2001:db8:b::/64 to IPv6-only peers v6a and v6b behind stateful
firewalls (inbound only when established or related). Every NAT drops unsolicited inbound traffic.

1. l1 and l2 behind NAT C without hairpinning: tunnel over the LAN; status shows the LAN candidate.
2. The same with candidates off: no tunnel and the hairpin warning (exit 5, after the public
   endpoint's step failed); with a NAT that hairpins: tunnel through the public endpoints, no warning.
3. v6a and v6b, IPv6 only: tunnel over IPv6 through both firewalls.
4. a (kernel mode, X1) and b (the C-compatible print mode, wg set by hand): tunnel over IPv4.
5. b's LAN also holds a's private address on another host: the LAN candidate fails, the next
   (public) one is used.
7. h1 and h2 behind NAT D, candidates off, each other's LAN endpoint set by hand: wgsigc (shipped
   handshake_threshold, 180 s) keeps it while the handshake is young and after it grew older than
   180 s (the lab waits that long while the other scenarios run), never writing the hairpin one.
8. a and b dual-stack (IPv4 behind the NATs, IPv6 behind stateful firewalls, a server name with A
   and AAAA): the tunnel goes over IPv6; with IPv6 UDP blocked at b's router, over IPv4.
"""

from __future__ import annotations

import compileall
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.test_kernel_vm import _copy_sources, _passed, _results
from tests.vmlib import run_in_qemu, write_payload

pytestmark = pytest.mark.vm

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> str:
    payload = tmp_path_factory.mktemp("x1-lab")
    _copy_sources(payload / "src")
    compileall.compile_dir(payload, quiet=2, workers=2)
    write_payload(payload, "exec bash /srv/payload/lab.sh")
    shutil.copy(HERE / "x1_lab.sh", payload / "lab.sh")
    shutil.copy(HERE / "natlab.sh", payload / "natlab.sh")
    start = time.monotonic()
    rc, out = run_in_qemu(payload, timeout=600)
    print(f"\n[X1 lab VM run: {time.monotonic() - start:.1f} s]\n{out}")
    if not _results(out):
        pytest.fail(f"the lab produced no results (rc {rc}):\n{out}", pytrace=False)
    return out


def _figure(out: str, name: str) -> float:
    match = re.search(rf"^FIGURE {name} ([0-9.]+)", out, re.M)
    assert match, f"no figure {name}\n{out}"
    return float(match[1])


def test_lab_is_up(lab: str) -> None:
    _passed(lab, "server_dual_stack", "v6_reaches_server", "lan_reaches_server")


def test_same_lan_without_hairpinning_connects_over_the_lan(lab: str) -> None:
    _passed(lab, "lan_run_l1", "lan_run_l2", "lan_ping", "lan_endpoint_l1", "lan_endpoint_l2")


def test_status_shows_the_candidate_in_use_and_what_worked(lab: str) -> None:
    _passed(lab, "lan_status_json")


def test_journal_says_which_extension_was_used(lab: str) -> None:
    _passed(lab, "journal_names_x1", "journal_names_ipv6")


def test_no_hairpinning_and_no_candidates_is_diagnosed(lab: str) -> None:
    _passed(lab, "nohairpin_exit_5", "nohairpin_no_tunnel")


def test_hairpinning_nat_with_candidates_off_connects_through_public_endpoints_without_warning(lab: str) -> None:
    _passed(lab, "hairpin_run_l1", "hairpin_run_l2", "hairpin_ping", "hairpin_public_endpoint")


def test_ipv6_only_peers_behind_stateful_firewalls_connect(lab: str) -> None:
    _passed(lab, "v6_firewall_drops_unsolicited", "v6_run_a", "v6_run_b", "v6_ping", "v6_endpoint")


def test_mixed_group_with_a_print_mode_peer_connects_over_ipv4(lab: str) -> None:
    _passed(lab, "mixed_print_mode_sees_a", "mixed_print_mode_plain_ipv4", "mixed_run_a", "mixed_ping",
            "mixed_endpoint")


def test_a_hand_set_lan_endpoint_is_kept_after_its_handshake_grew_old(lab: str) -> None:
    _passed(lab, "handset_young_ping", "handset_young_kept", "handset_old_kept", "handset_old_no_hairpin_written",
            "handset_old_ping")


def test_dual_stack_peers_prefer_the_path_that_works(lab: str) -> None:
    _passed(lab, "dual_ipv6_preferred", "dual_falls_back_to_ipv4")


def test_a_wrong_first_candidate_is_cycled_past(lab: str) -> None:
    _passed(lab, "cycle_run_b", "cycle_tried_lan_first", "cycle_ping", "cycle_public_endpoint")
    # one LAN step (2 s) and the public one, plus the run's own start-up under emulation
    assert _figure(lab, "cycle_seconds") < 25
