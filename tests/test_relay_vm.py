"""The relay in a QEMU VM (issue 15): real kernel WireGuard on two peers, each behind a NAT that
maps every destination to a new port (nftables ``masquerade fully-random``, unsolicited inbound
traffic dropped), no port mapping, so no hole punching can work. One boot runs
tests/relay_lab.sh: wgsigd with a ``[relay]`` section and the relay process (``wgsigd relay``)
in the "public" namespace, wgsigc with the shipped defaults on both peers, as two timers would.
It prints what it saw as FACT lines (tests/labfacts.sh); each test judges one behaviour.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from tests import vmlane
from tests.labfacts import LabRun, run_sources_lab

pytestmark = pytest.mark.vm

HERE = Path(__file__).resolve().parent


VM_LANE_ORDER = 3  # tests/vmlane.py: after the kernel lab and the NAT matrix


def boot_lab() -> LabRun:
    with tempfile.TemporaryDirectory(prefix="wgsig-relay-lab.") as tmp:
        return run_sources_lab(Path(tmp), HERE / "relay_lab.sh", 480, "relay lab")


@pytest.fixture(scope="module")
def lab() -> LabRun:
    return vmlane.lab_of(__name__, boot_lab)


def test_two_peers_behind_fully_random_nats_get_a_tunnel_through_the_relay(lab: LabRun) -> None:
    assert lab.fact("ping_relayed") == "answered", lab.tail()
    ep_a, ep_b = lab.fact("ep_in_a"), lab.fact("ep_in_b")
    # Both kernels point at the relay's address, each at its own port of the allocation.
    assert re.fullmatch(r"192\.0\.2\.1:400\d\d", ep_a) and re.fullmatch(r"192\.0\.2\.1:400\d\d", ep_b), (ep_a, ep_b)
    assert ep_a != ep_b
    lines = lab.lines("allocations")
    assert lines[0] == "wgsig-relay-allocations 1" and len(lines) == 2, lines
    # The allocation admits each side from its NAT's public address only.
    fields = lines[1].split()
    assert {fields[2], fields[4]} == {"192.0.2.11", "192.0.2.12"}, fields
    print(f"first ping reply {lab.figure('first_reply')} s after a's first run started, round {lab.fact('rounds')}")


def test_the_relay_is_used_only_after_the_direct_candidates_failed(lab: LabRun) -> None:
    rounds = int(lab.fact("rounds"))
    runs = [lab.run(f"a{i}") for i in range(1, rounds + 1)]
    # The endpoints a wrote, in order: the public one (its step), and only later the relay.
    said = [line for run in runs for line in run.lines if line.startswith("wg0: peer ")]
    public = next(i for i, line in enumerate(said) if "(public)" in line)
    relay = next(i for i, line in enumerate(said) if "(relay)" in line)
    assert public < relay, "\n".join(map(str, runs))
    assert runs[-1].rc == 0, runs[-1]  # the run that saw the tunnel up through the relay succeeds


def test_status_says_the_relay_is_in_use_and_why(lab: LabRun) -> None:
    for side in ("status_a", "status_b"):
        status = lab.fact(side)
        assert re.search(r"in use: 192\.0\.2\.1:400\d\d \(relay\)", status), status
        assert "relay: in use" in status and "no direct candidate got a handshake" in status, status


def test_the_relays_byte_rate_limit_is_observed(lab: LabRun) -> None:
    flood = lab.fact("flood")
    loss = float(re.search(r"([\d.]+)% packet loss", flood)[1])  # type: ignore[index]
    assert 20 <= loss < 100, flood  # about 290 kB/s offered, 100 kB/s allowed after the burst
    assert lab.fact("ping_after_flood") == "answered", "the tunnel survives its budget running out"
    log = lab.fact("relay_log")
    assert re.search(r"dropped: .*rate \d+", log), log


def test_without_renewal_the_allocation_expires_and_nothing_is_forwarded(lab: LabRun) -> None:
    assert lab.fact("expired") == "yes", lab.tail()
    # LIFETIME (45 s) after the last requests: at most that long after the lab stopped running wgsigc.
    assert lab.figure("expired_after") <= 45 + 15
    assert lab.lines("allocations_after") == ["wgsig-relay-allocations 1"]
    assert "Traceback" not in lab.fact("relay_log") and "Traceback" not in lab.fact("wgsigd_log")
