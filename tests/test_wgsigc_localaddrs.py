"""Which of this host's addresses wgsigc announces (wgsigc/localaddrs.py).

The selector is tested with hand-made records (fakes of what rtnetlink reports); the last test
reads a real kernel's addresses through pyroute2 in a network namespace made for it (root).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from wgsig import ipaddr
from wgsigc.localaddrs import (
    IFA_F_DEPRECATED,
    IFA_F_TEMPORARY,
    Address,
    Link,
    select,
)

LINKS = [Link("eth0"), Link("wg0", "wireguard"), Link("docker0", "bridge"), Link("br0", "bridge"),
         Link("tun0", "tun"), Link("down0", up=False), Link("lo")]


def test_lan_addresses_are_announced_tunnels_containers_and_rotating_ones_are_not() -> None:
    addresses = [
        Address("lo", "127.0.0.1", 8, 254),
        Address("eth0", "192.168.1.10", 24),
        Address("eth0", "169.254.3.3", 16),
        Address("eth0", "2001:db8::10", 64),
        Address("eth0", "2001:db8::abcd", 64, flags=IFA_F_TEMPORARY),
        Address("eth0", "2001:db8::dead", 64, flags=IFA_F_DEPRECATED),
        Address("eth0", "fe80::1", 64, 253),
        Address("wg0", "10.99.0.1", 24),
        Address("docker0", "172.17.0.1", 16),
        Address("tun0", "10.8.0.2", 24),
        Address("down0", "10.5.0.2", 24),
        Address("br0", "10.0.0.5", 24),
    ]
    found = select(addresses, LINKS, "wg0", ipv6_default_route=True)
    assert found.announce == ("192.168.1.10", "10.0.0.5", "2001:db8::10")
    assert ipaddr.parse_prefix("192.168.1.0/24") in found.onlink
    assert found.global_ipv6


def test_exclusions_limits_and_two_per_slash64() -> None:
    addresses = [Address("eth0", f"2001:db8::{i}", 64) for i in range(1, 5)]
    addresses += [Address("eth0", "10.1.0.2", 24), Address("eth0", "172.16.5.5", 16)]
    found = select(addresses, LINKS, "wg0", exclude=[ipaddr.parse_prefix("172.16.0.0/12")], limit=3)
    assert found.announce == ("10.1.0.2", "2001:db8::1", "2001:db8::2")
    assert not found.global_ipv6  # no IPv6 default route


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_real_kernel_addresses_through_pyroute2() -> None:
    ns = f"wgsig-la-{os.getpid()}"
    def sh(*cmd: str) -> None:
        subprocess.run(cmd, check=True)
    sh("ip", "netns", "add", ns)
    try:
        for cmd in (
            "link set lo up", "link add eth0 type veth peer name eth1", "link set eth0 up",
            "addr add 192.168.7.2/24 dev eth0", "addr add 2001:db8:7::2/64 dev eth0 nodad",
            "addr add 2001:db8:7::99/64 dev eth0 nodad preferred_lft 0",
            "link add docker0 type bridge", "link set docker0 up", "addr add 172.17.0.1/16 dev docker0",
            "-6 route add default via 2001:db8:7::1 dev eth0",
        ):
            sh("ip", "-n", ns, *cmd.split())
        code = ("from wgsigc.localaddrs import read_local; f = read_local('wg0');"
                "print(' '.join(f.announce), f.global_ipv6)")
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], check=True,
                             capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__))).stdout
    finally:
        sh("ip", "netns", "del", ns)
    # the deprecated address (preferred_lft 0) and the docker bridge are left out
    assert out.split() == ["192.168.7.2", "2001:db8:7::2", "True"]
