#!/usr/bin/python3
"""The relay's unit under systemd as PID 1, run inside ``systemd-nspawn --boot`` by
tests/test_relay_nspawn.py: the project and its units installed as the package installs them,
then wgsigd.socket and wgsig-relay.service as an administrator would use them. One line
``CHECK <name> PASS|FAIL <detail>`` per check (``SCORE`` for the exposure level); a failing
check never stops the later ones.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

from nspawn_guest_helpers import UNIT_DIR, check, install_project, out, phase, prop, run, wait_for

CONFIG = Path("/etc/wgsig/wgsigd.toml")
SECRET_FILE = Path("/etc/wgsig/keys/zero.key")
A, B = b"\xa1" * 32, b"\xb2" * 32


def relay_ports() -> list[str]:
    return [line.split()[3] for line in out("ss", "-Hlun").splitlines() if re.search(r":400\d\d$", line.split()[3])]


def static_checks() -> None:
    verify = run("systemd-analyze", "verify", "--man=no", str(UNIT_DIR / "wgsig-relay.service"))
    text = (verify.stdout + verify.stderr).strip()
    check("relay_verify_clean", verify.returncode == 0 and not text, text or "no output")
    report = run("systemd-analyze", "security", "--no-pager", "wgsig-relay.service").stdout
    found = re.search(r"Overall exposure level for wgsig-relay.service: ([0-9.]+)", report)
    score = float(found[1]) if found else 99.0
    print(f"SCORE wgsig-relay.service {score}", flush=True)
    check("relay_security", score <= 2.5, f"{score} (limit 2.5)")
    check("relay_disabled_by_default", out("systemctl", "is-enabled", "wgsig-relay.service") == "disabled",
          out("systemctl", "is-enabled", "wgsig-relay.service"))


def unconfigured() -> None:
    run("systemctl", "start", "wgsig-relay.service")
    time.sleep(1)
    check("relay_unconfigured_does_nothing", prop("wgsig-relay.service", "ActiveState") == "inactive"
          and prop("wgsig-relay.service", "ConditionResult") == "no" and not relay_ports(),
          f"{prop('wgsig-relay.service', 'ActiveState')} {relay_ports()}")


def without_section() -> None:
    SECRET_FILE.parent.mkdir(parents=True, exist_ok=True)
    run("/usr/bin/wgsigd", "genkey", str(SECRET_FILE))
    CONFIG.write_text('[group.zero]\nid = 0\nsecret_file = "keys_zero.key"\n')
    run("systemctl", "start", "wgsig-relay.service")
    wait_for(lambda: prop("wgsig-relay.service", "ActiveState") in ("inactive", "failed"), 10)
    time.sleep(1)
    log = out("journalctl", "--no-pager", "-o", "cat", "-u", "wgsig-relay.service")
    check("relay_without_section_exits_6_once", prop("wgsig-relay.service", "ExecMainStatus") == "6"
          and "no [relay] section" in log and log.count("no [relay] section") == 1 and "Traceback" not in log, log)


def ask(sock: socket.socket, peer: bytes, clflg: int, relay_to: list[bytes] | None = None) -> Any:
    from x1_exchange import exchange  # imports wgsig: installed by now

    from wgsig.client import GroupCredentials

    return exchange(sock, ("127.0.0.1", 1223), GroupCredentials(0, SECRET_FILE.read_bytes()), peer, clflg, relay_to,
                    timeout=5)


def relayed() -> None:
    from wgsig import x1

    CONFIG.write_text(CONFIG.read_text() + '[relay]\naddress = "127.0.0.1"\nlisten = "127.0.0.1"\n'
                      'ports = "40000-40009"\n')
    run("systemctl", "start", "wgsigd.socket")
    run("systemctl", "start", "wgsig-relay.service")
    wg_a, wg_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wg_a.bind(("127.0.0.2", 0))
    wg_b.bind(("127.0.0.3", 0))
    ask(wg_a, A, 0 | x1.XA)
    ask(wg_b, B, 0 | x1.XA)
    first = ask(wg_a, A, 1 | x1.XA, [B])
    check("relay_bit_announced", bool(first.svext & x1.SV_RELAY), f"svext {first.svext}")
    ask(wg_b, B, 1 | x1.XA, [A])
    answer = ask(wg_a, A, 1 | x1.XA, [B])
    items, _ = answer.entries()
    to_b = next(((i.host, i.port) for i in items.get(B, []) if i.type == x1.ItemType.RELAY), None)
    answer_b = ask(wg_b, B, 1 | x1.XA, [A])
    to_a = next(((i.host, i.port) for i in answer_b.entries()[0].get(A, []) if i.type == x1.ItemType.RELAY), None)
    check("relay_allocated", to_a is not None and to_b is not None, f"{to_a} {to_b}")
    # The relay (its own dynamic user, the same as wgsigd's) read wgsigd's allocation file.
    bound = wait_for(lambda: len(relay_ports()) == 2, 10)
    check("relay_reads_wgsigd_allocations_and_binds", bool(bound),
          f"{relay_ports()} {out('journalctl', '--no-pager', '-o', 'cat', '-u', 'wgsig-relay.service')}")
    assert to_a is not None and to_b is not None
    wg_a.sendto(bytes((1, 0, 0, 0)) + bytes(144), to_b)  # latches A
    hello = bytes((2, 0, 0, 0)) + os.urandom(88)
    wg_b.sendto(hello, to_a)
    wg_a.settimeout(3)
    try:
        got = wg_a.recvfrom(4096)
    except TimeoutError:
        got = (b"", ("", 0))
    check("relay_forwards_under_its_unit", got == (hello, to_b), repr(got[1]))
    relay_user, daemon_user = prop("wgsig-relay.service", "MainPID"), prop("wgsigd.service", "MainPID")
    uid_relay = out("stat", "-c", "%u", f"/proc/{relay_user}")
    uid_daemon = out("stat", "-c", "%u", f"/proc/{daemon_user}")
    check("relay_runs_as_wgsigds_dynamic_user", uid_relay == uid_daemon and uid_relay not in ("", "0"),
          f"relay {uid_relay}, wgsigd {uid_daemon}")
    run("systemctl", "stop", "wgsig-relay.service")
    log = out("journalctl", "--no-pager", "-o", "cat", "-u", "wgsig-relay.service")
    check("relay_stop_reports_counters", "forwarded" in log and "Traceback" not in log, log)


def main() -> int:
    phase("install", install_project)
    phase("static", static_checks)
    phase("unconfigured", unconfigured)
    phase("without_section", without_section)
    phase("relayed", relayed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
