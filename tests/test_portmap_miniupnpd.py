"""Port mapping against a real miniupnpd (Debian's miniupnpd-nftables 2.3.1) in network namespaces.

Real components: miniupnpd runs on a NAT namespace (``pmnat``: LAN 10.9.0.1, WAN 192.0.3.2,
``masquerade fully-random``, a symmetric NAT that drops unsolicited inbound traffic but accepts
what miniupnpd forwards: ``ct status dnat accept``); ``wgsigc.portmapping.maintain`` runs in the
inside namespace (``pmin``, 10.9.0.2) as a kernel-mode run calls it; a plain UDP datagram from the
outside namespace (``pmout``, 192.0.3.1) to the mapped endpoint must reach the inside socket —
no WireGuard needed to show that a mapping works. The WAN address is 192.0.3.2, not the lab's
192.0.2.x: miniupnpd refuses the documentation ranges as "reserved / private" external addresses.

Needs root and the miniupnpd binary: ``$WGSIG_MINIUPNPD``, else ``miniupnpd`` on PATH or in
/usr/sbin (``apt install miniupnpd-nftables``, or ``apt-get download`` + ``dpkg-deb -x`` and point
``WGSIG_MINIUPNPD`` at it). UPnP-IGD is tested when python3-miniupnpc is importable
(``$WGSIG_MINIUPNPC_PATH`` adds a directory holding it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MINIUPNPD = os.environ.get("WGSIG_MINIUPNPD") or shutil.which("miniupnpd") or (
    "/usr/sbin/miniupnpd" if os.path.exists("/usr/sbin/miniupnpd") else None)
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(MINIUPNPD is None,
                       reason="miniupnpd not installed (miniupnpd-nftables) and no $WGSIG_MINIUPNPD"),
]
WAN, OUTSIDE, GATEWAY = "192.0.3.2", "192.0.3.1", "10.9.0.1"
NAMESPACES = ("pmin", "pmnat", "pmout")

NAT_RULES = """
table inet filter {
    chain forward { type filter hook forward priority 0; policy accept;
        jump miniupnpd
        iifname "wan0" ct state established,related accept
        iifname "wan0" ct status dnat accept
        iifname "wan0" drop
    }
    chain miniupnpd { }
    chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
    chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd;
        oifname "wan0" masquerade fully-random; }
    chain prerouting_miniupnpd { }
    chain postrouting_miniupnpd { }
}
"""
MINIUPNPD_CONF = """ext_ifname=wan0
listening_ip=lan0
enable_natpmp=yes
enable_upnp=yes
http_port=0
secure_mode=yes
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
allow 1024-65535 10.9.0.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Path]:
    for ns in NAMESPACES:
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    try:
        sh("ip", "link", "add", "lan0", "netns", "pmnat", "type", "veth", "peer", "name", "eth0", "netns", "pmin")
        sh("ip", "link", "add", "wan0", "netns", "pmnat", "type", "veth", "peer", "name", "eth0", "netns", "pmout")
        for ns, dev, address in (("pmnat", "lan0", f"{GATEWAY}/24"), ("pmin", "eth0", "10.9.0.2/24"),
                                 ("pmnat", "wan0", f"{WAN}/24"), ("pmout", "eth0", f"{OUTSIDE}/24")):
            sh("ip", "-n", ns, "addr", "add", address, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", "pmin", "route", "add", "default", "via", GATEWAY)
        sh(*in_ns("pmnat", "sysctl", "-qw", "net.ipv4.ip_forward=1"))
        subprocess.run(in_ns("pmnat", "nft", "-f", "-"), input=NAT_RULES, check=True, text=True, timeout=30)
        yield tmp_path
    finally:
        for ns in NAMESPACES:
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def miniupnpd(lab: Path) -> Iterator[Path]:
    assert MINIUPNPD is not None
    conf = lab / "miniupnpd.conf"
    conf.write_text(MINIUPNPD_CONF)
    log = (lab / "miniupnpd.log").open("w")
    process = subprocess.Popen(in_ns("pmnat", MINIUPNPD, "-d", "-f", str(conf), "-P", str(lab / "miniupnpd.pid")),
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):  # until it listens on 5351 (no timing claim: a bounded wait for readiness)
            if "5351" in sh(*in_ns("pmnat", "ss", "-lun")).stdout:
                break
            time.sleep(0.05)
        yield lab
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


RUN = """
import json, sys, time
from pathlib import Path
from wgsigc import portmapping
mode, port, now = sys.argv[1], int(sys.argv[2]) or None, float(sys.argv[3])
started = time.monotonic()
outcome = portmapping.maintain(mode, port, Path(sys.argv[4]), now, "wgsigc test")
print(json.dumps({"announce": outcome.announce, "lines": outcome.lines, "seconds": time.monotonic() - started}))
"""


def maintain(lab: Path, mode: str, port: int | None, now: float) -> dict:
    path = [str(ROOT), os.environ.get("WGSIG_MINIUPNPC_PATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    out = subprocess.run(in_ns("pmin", sys.executable, "-c", RUN, mode, str(port or 0), str(now),
                               str(lab / "wgsigc-wg0.portmap.json")),
                         check=True, capture_output=True, text=True, timeout=60, env=env)
    return json.loads(out.stdout)


RECEIVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
s.settimeout(3)
try:
    print(s.recvfrom(100)[0].decode(), flush=True)
except TimeoutError:
    print("nothing", flush=True)
"""


def reaches_inside(port: int, external: tuple[str, int]) -> bool:
    """A datagram from outside to the external endpoint arrives at the inside socket on ``port``."""
    receiver = subprocess.Popen(in_ns("pmin", sys.executable, "-c", RECEIVE, str(port)), stdout=subprocess.PIPE,
                                text=True)
    assert receiver.stdout is not None
    assert receiver.stdout.readline().strip() == "ready"
    send = ("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
            f".sendto(b'hello', ('{external[0]}', {external[1]}))")
    sh(*in_ns("pmout", sys.executable, "-c", send))
    got = receiver.stdout.readline().strip()
    receiver.wait(timeout=10)
    return got == "hello"


def nat_rules() -> str:
    return sh(*in_ns("pmnat", "nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd")).stdout


@pytest.mark.parametrize("mode,protocol", [("auto", "PCP"), ("pcp", "PCP"), ("natpmp", "NAT-PMP")])
def test_mapping_obtained_renewed_and_deleted(miniupnpd: Path, mode: str, protocol: str) -> None:
    now = time.time()
    assert not reaches_inside(51820, (WAN, 51820))  # the symmetric NAT drops it without a mapping
    first = maintain(miniupnpd, mode, 51820, now)
    assert first["announce"] == [WAN, 51820]
    assert first["lines"] == [f"port mapping obtained: {protocol} {WAN}:51820 -> port 51820, 7200 s"]
    print(f"FIGURE {mode} mapping obtained in {first['seconds']:.3f} s (noisy host)")
    assert reaches_inside(51820, (WAN, 51820))
    state = json.loads((miniupnpd / "wgsigc-wg0.portmap.json").read_text())
    assert state["mapping"]["protocol"] == protocol.lower().replace("-", "")
    # A later run within half the lifetime: announced, nothing sent; past half: renewed.
    later = maintain(miniupnpd, mode, 51820, now + 60)
    assert (later["announce"], later["lines"]) == ([WAN, 51820], [])
    renewed = maintain(miniupnpd, mode, 51820, now + 3600)
    assert renewed["lines"] == [f"port mapping renewed: {protocol} {WAN}:51820 -> port 51820, 7200 s"]
    assert "dport 51820" in nat_rules()
    # Turned off: deleted on the router, the state file gone, nothing announced.
    off = maintain(miniupnpd, "off", 51820, now + 3700)
    assert off["announce"] is None
    assert off["lines"] == [f"port mapping {protocol} {WAN}:51820 -> port 51820 deleted (port mapping was turned off)"]
    assert "dport 51820" not in nat_rules()
    assert not (miniupnpd / "wgsigc-wg0.portmap.json").exists()
    assert not reaches_inside(51820, (WAN, 51820))


def test_interface_gone_deletes_the_mapping(miniupnpd: Path) -> None:
    now = time.time()
    maintain(miniupnpd, "auto", 51821, now)
    assert "dport 51821" in nat_rules()
    gone = maintain(miniupnpd, "auto", None, now + 30)
    assert gone["lines"] == [f"port mapping PCP {WAN}:51821 -> port 51821 deleted (the interface is gone)"]
    assert "dport 51821" not in nat_rules()


def test_without_miniupnpd_one_line_and_no_retry_for_a_while(lab: Path) -> None:
    now = time.time()
    absent = maintain(lab, "auto", 51820, now)
    assert absent["announce"] is None
    assert len(absent["lines"]) == 1 and absent["lines"][0].startswith("warning: no port mapping (PCP: ")
    assert "next attempt in 300 s" in absent["lines"][0]
    print(f"FIGURE no PCP/NAT-PMP/UPnP server: the run lost {absent['seconds']:.3f} s")
    assert maintain(lab, "auto", 51820, now + 30)["lines"] == []  # not asked again before the retry time


def test_upnp_igd_through_miniupnpc(miniupnpd: Path) -> None:
    check = "import miniupnpc"
    env = dict(os.environ, PYTHONPATH=os.environ.get("WGSIG_MINIUPNPC_PATH", ""))
    if subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, check=False).returncode:
        pytest.skip("python3-miniupnpc not installed (and no $WGSIG_MINIUPNPC_PATH)")
    now = time.time()
    first = maintain(miniupnpd, "upnp", 51822, now)
    assert first["lines"] == [f"port mapping obtained: UPnP-IGD {WAN}:51822 -> port 51822, 7200 s"]
    assert reaches_inside(51822, (WAN, 51822))
    off = maintain(miniupnpd, "off", 51822, now + 10)
    assert "deleted" in off["lines"][0] and "dport 51822" not in nat_rules()
