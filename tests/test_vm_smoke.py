"""Smoke tests of the VM harness (tests/vm/, tests/vmlib.py).

One QEMU boot (with user networking) checks kernel WireGuard, both pyroute2 versions, a NAT
lab and apt inside the guest, a second one exit codes on the default -nic none path; nspawn
boots check systemd as PID 1 and apt through the host network.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.vmlib import add_pyroute2, run_in_nspawn, run_in_qemu, write_payload

pytestmark = pytest.mark.vm

PYROUTE2_NEW = "0.9.5"

# Each check prints "CHECK <name> <rc>"; the script itself never stops early.
QEMU_SCRIPT = r"""
set +e
check() { name=$1; shift; echo "--- $name: $*"; "$@"; echo "CHECK $name $?"; }
check wg_add ip link add wg0 type wireguard
check wg_show wg show wg0
# Debian's 0.7.2 says __version__ == "unknown": ask the package metadata.
check pyroute2_system python3 -c 'import importlib.metadata as m; print("VERSION", m.version("pyroute2"))'
check pyroute2_new env PYTHONPATH=__PYLIB__ python3 -c '
import pyroute2
from pyroute2 import WireGuard
print("VERSION", pyroute2.__version__, pyroute2.__file__)
WireGuard().set("wg0", listen_port=51820)
'
check wg_port sh -c 'test "$(wg show wg0 listen-port)" = 51820'

# NAT lab: lan -- nat (masquerade on its WAN) -- pub; pub has no route back to the LAN.
nat_lab() {
    set -e
    for n in lan nat pub; do ip netns add $n; ip -n $n link set lo up; done
    ip link add lan0 netns lan type veth peer name nlan netns nat
    ip link add wan0 netns nat type veth peer name pub0 netns pub
    ip -n lan addr add 10.1.0.2/24 dev lan0; ip -n lan link set lan0 up
    ip -n lan route add default via 10.1.0.1
    ip -n nat addr add 10.1.0.1/24 dev nlan; ip -n nat link set nlan up
    ip -n nat addr add 192.0.2.1/24 dev wan0; ip -n nat link set wan0 up
    ip -n pub addr add 192.0.2.2/24 dev pub0; ip -n pub link set pub0 up
    ip netns exec nat sysctl -qw net.ipv4.ip_forward=1
    ip netns exec nat nft -f - <<'NFT'
table ip nat {
    chain post { type nat hook postrouting priority srcnat; oifname "wan0" masquerade; }
}
NFT
    ip netns exec lan ping -c1 -W5 192.0.2.2
    ip netns exec nat conntrack -L 2>/dev/null | grep -q 'src=10.1.0.2'
}
check nat_lab nat_lab
# QEMU user networking (run with network=True): apt reaches the Debian mirror.
check apt_net sh -c 'cd /tmp && apt-get download -q hello && ls hello_*.deb'
"""


def _checks(output: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^CHECK (\S+) (\d+)$", output, re.M)}


@pytest.fixture(scope="module")
def qemu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    payload = tmp_path_factory.mktemp("qemu-payload")
    pylib = add_pyroute2(payload, PYROUTE2_NEW)
    write_payload(payload, QEMU_SCRIPT.replace("__PYLIB__", pylib))
    start = time.monotonic()
    rc, out = run_in_qemu(payload, timeout=180, network=True)
    print(f"\n[qemu smoke run: {time.monotonic() - start:.1f} s]")
    assert rc == 0, out
    return rc, out


def test_qemu_trivial_run_and_exit_code(tmp_path: Path) -> None:
    payload = write_payload(tmp_path / "p", 'uname -r; echo "to stderr" >&2; exit 7')
    start = time.monotonic()
    rc, out = run_in_qemu(payload, timeout=60, result_dir=tmp_path / "r")
    print(f"\n[qemu boot + trivial run: {time.monotonic() - start:.1f} s]")
    assert rc == 7, out
    assert "cloud-amd64" in out and "to stderr" in out
    assert "WGSIG-TEST-RESULT rc=7" in (tmp_path / "r" / "console.log").read_text()


def test_qemu_kernel_wireguard(qemu_run: tuple[int, str]) -> None:
    checks = _checks(qemu_run[1])
    assert checks.get("wg_add") == 0, qemu_run[1]
    assert checks.get("wg_show") == 0, qemu_run[1]


def test_qemu_system_pyroute2_is_bookworms(qemu_run: tuple[int, str]) -> None:
    assert _checks(qemu_run[1]).get("pyroute2_system") == 0, qemu_run[1]
    assert "VERSION 0.7.2\n" in qemu_run[1]


def test_qemu_shipped_pyroute2_on_pythonpath(qemu_run: tuple[int, str]) -> None:
    checks = _checks(qemu_run[1])
    assert checks.get("pyroute2_new") == 0, qemu_run[1]
    assert f"VERSION {PYROUTE2_NEW} /srv/payload/pylib/pyroute2/" in qemu_run[1]
    assert checks.get("wg_port") == 0, qemu_run[1]


def test_qemu_netns_veth_nft_masquerade(qemu_run: tuple[int, str]) -> None:
    assert _checks(qemu_run[1]).get("nat_lab") == 0, qemu_run[1]


def test_qemu_user_network_reaches_debian_mirror(qemu_run: tuple[int, str]) -> None:
    assert _checks(qemu_run[1]).get("apt_net") == 0, qemu_run[1]


def test_nspawn_systemd_pid1_and_timers(tmp_path: Path) -> None:
    payload = write_payload(
        tmp_path / "p",
        """
echo "PID1=$(cat /proc/1/comm)"
echo "STATE=$(systemctl is-system-running --wait || true)"
systemd-run -q --unit=smoke-timer --on-active=1s --timer-property=AccuracySec=1ms \
    touch /run/timer-fired
i=0; while [ ! -e /run/timer-fired ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
test -e /run/timer-fired && echo TIMER_FIRED
""",
    )
    start = time.monotonic()
    rc, out = run_in_nspawn(payload, timeout=60)
    print(f"\n[nspawn boot + run: {time.monotonic() - start:.1f} s]")
    assert rc == 0, out
    assert "PID1=systemd" in out
    assert re.search(r"^STATE=(running|degraded)$", out, re.M), out
    assert "TIMER_FIRED" in out


def test_nspawn_exit_code_and_timeout(tmp_path: Path) -> None:
    rc, out = run_in_nspawn(write_payload(tmp_path / "a", "echo hi; exit 5"), timeout=30)
    assert (rc, out) == (5, "hi\n")
    rc, out = run_in_nspawn(write_payload(tmp_path / "b", "sleep 60"), timeout=2)
    assert rc == 124, out


def test_nspawn_host_network_apt(tmp_path: Path) -> None:
    payload = write_payload(tmp_path / "p", "apt-get install -y -q hello >/dev/null 2>&1; hello")
    rc, out = run_in_nspawn(payload, timeout=120, network=True)
    assert rc == 0, out
    assert "Hello, world!" in out
