#!/usr/bin/python3
"""Run by wgsigc.service in tests/test_systemd_nspawn.py: does the client's sandbox allow what wgsigc needs?

Registers a peer from UDP port 51820 through a raw socket (CAP_NET_RAW; in real use that
port is WireGuard's) and makes an rtnetlink change (CAP_NET_ADMIN), as a non-root user.

    caps_probe.py SECRET_FILE PUBKEY_BASE64
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

from pyroute2 import IPRoute

from wgsig.client import GroupCredentials, build_request
from wgsig.keys import PublicKey
from wgsig.label import label_from_ns


def main() -> int:
    secret_path, key_text = sys.argv[1:3]
    print(f"uid={os.getuid()} ", flush=True)
    key = PublicKey.parse(key_text)
    assert key is not None
    with open(secret_path, "rb") as file:
        credentials = GroupCredentials(0, file.read())
    payload = build_request(credentials, key, label_from_ns(time.time_ns()), 0, os.urandom)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP) as raw:
        # UDP header: source port 51820, destination 1223, length, no checksum (allowed on IPv4).
        raw.sendto(struct.pack("!HHHH", 51820, 1223, 8 + len(payload), 0) + payload, ("127.0.0.1", 0))
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname="lo")[0]
        mtu = ipr.get_links(index)[0].get_attr("IFLA_MTU")
        ipr.link("set", index=index, mtu=mtu)  # a change request: needs CAP_NET_ADMIN
    print("PROBE OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
