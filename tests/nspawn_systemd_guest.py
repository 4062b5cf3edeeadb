#!/usr/bin/python3
"""The systemd checks, run inside ``systemd-nspawn --boot`` by tests/test_systemd_nspawn.py.

systemd 252 is PID 1. The payload holds the project's sources (``src/``) and the units
(``units/``); they are installed the way the package installs them (code in
dist-packages, ``/usr/bin/wgsigd`` and ``/usr/bin/wgsigc``, units in /lib/systemd/system).
Every check prints one line ``CHECK <name> PASS|FAIL <detail>``; measured exposure
scores print ``SCORE <unit> <value>``.  A failing check never stops the later ones.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nspawn_guest_helpers import DIST, PAYLOAD, UNIT_DIR, check, install_project, out, phase, prop, run, wait_for

PORT = 1223
KEYS = Path("/etc/wgsig/keys")
SECRET_FILE = KEYS / "zero.key"
MESSAGE_ID_REGISTERED = "6e3e0d3f6b8a4f0c9a51e0a4c1d2b7f1"
MESSAGE_ID_REJECTED = "b2f5c3a1d9e84c6b8f0a7d3e2c1b4a5f"
IDLE_EXIT = 4


def peer(i: int) -> bytes:
    return bytes([i]) * 31 + b"\x01"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def journal(*matches: str, since: float | None = None) -> list[dict[str, Any]]:
    cmd = ["journalctl", "--no-pager", "-o", "json", *matches]
    if since is not None:
        cmd.append(f"--since=@{since:.0f}")
    return [json.loads(line) for line in out(*cmd).splitlines() if line.startswith("{")]


def wgsigc(*args: str) -> subprocess.CompletedProcess[str]:
    return run("/usr/bin/wgsigc", *args)


# ---------------------------------------------------------------------------------------------


def install() -> None:
    install_project()
    probe = Path("/usr/local/lib/wgsig-test")
    probe.mkdir(parents=True, exist_ok=True)
    shutil.copy(PAYLOAD / "caps_probe.py", probe / "caps_probe.py")


def static_checks() -> None:
    units = [str(UNIT_DIR / u) for u in ("wgsigd.socket", "wgsigd.service", "wgsigc.service", "wgsigc.timer")]
    # --man=no: the test root has no man(1); tests/test_activation.py checks the man pages exist.
    verify = run("systemd-analyze", "verify", "--man=no", *units)
    text = (verify.stdout + verify.stderr).strip()
    check("verify_clean", verify.returncode == 0 and not text, text or "no output")
    for unit, limit in (("wgsigd.service", 2.0), ("wgsigc.service", 2.5)):
        report = run("systemd-analyze", "security", "--no-pager", unit).stdout
        found = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", report)
        score = float(found[1]) if found else 99.0
        print(f"SCORE {unit} {score}", flush=True)
        check(f"security_{unit.split('.')[0]}", score <= limit, f"{score} (limit {limit})")


def boot_order() -> None:
    """Enabled, the repair units order wgsigc.service after the tool that creates the interface."""
    units = [str(UNIT_DIR / u) for u in ("wgsigc-networkd.service", "wgsigc-wg-quick@.service")]
    verify = run("systemd-analyze", "verify", "--man=no", *units)
    text = (verify.stdout + verify.stderr).strip()
    check("verify_repair_units_clean", verify.returncode == 0 and not text, text or "no output")
    enable = run("systemctl", "enable", "wgsigc-networkd.service", "wgsigc-wg-quick@wg0.service")
    # The ordering as systemd 252 loaded it: each repair unit after its tool, before wgsigc.service.
    order = {u: (out("systemctl", "show", "-P", "After", u).split(), out("systemctl", "show", "-P", "Before", u).split())
             for u in ("wgsigc-networkd.service", "wgsigc-wg-quick@wg0.service")}
    check("boot_order_wgsigc_after_interface_tools", enable.returncode == 0
          and "systemd-networkd.service" in order["wgsigc-networkd.service"][0]
          and "wg-quick@wg0.service" in order["wgsigc-wg-quick@wg0.service"][0]
          and all("wgsigc.service" in before for _, before in order.values()), str(order))
    run("systemctl", "disable", "wgsigc-networkd.service", "wgsigc-wg-quick@wg0.service")


def unconfigured() -> None:
    """Enabled but not configured: no port, no run (ConditionPathExists=)."""
    enable = run("systemctl", "enable", "--now", "wgsigd.socket", "wgsigc.timer")
    listening = out("ss", "-Huln", f"sport = :{PORT}")
    check("unconfigured_opens_no_port", enable.returncode == 0 and not listening
          and prop("wgsigd.socket", "ActiveState") != "active"
          and prop("wgsigd.socket", "ConditionResult") == "no", f"enable rc={enable.returncode} ss={listening!r}")
    check("unconfigured_timer_idle", prop("wgsigc.timer", "ActiveState") != "active"
          and prop("wgsigc.service", "ExecMainStartTimestampMonotonic") == "0",
          prop("wgsigc.timer", "ActiveState"))


def configure() -> None:
    KEYS.mkdir(parents=True, mode=0o700)
    genkey = run("/usr/bin/wgsigd", "genkey", str(SECRET_FILE))
    Path("/etc/wgsig/wgsigd.toml").write_text(
        f"idle_exit = {IDLE_EXIT}\n\n[group.zero]\nid = 0\n"
        '# /etc/wgsig/keys/zero.key, handed over by LoadCredential=keys:/etc/wgsig/keys\n'
        'secret_file = "keys_zero.key"\n'
    )
    start = run("systemctl", "start", "wgsigd.socket")
    listening = out("ss", "-Hulnp", f"sport = :{PORT}")
    check("socket_listens_dual_stack", genkey.returncode == 0 and start.returncode == 0
          and prop("wgsigd.socket", "ActiveState") == "active" and (f"*:{PORT}" in listening or f"[::]:{PORT}"
                                                                    in listening),
          f"genkey={genkey.returncode} {genkey.stderr} start={start.returncode} {start.stderr} ss={listening!r}")
    check("service_not_started_before_first_datagram", prop("wgsigd.service", "ActiveState") == "inactive",
          prop("wgsigd.service", "ActiveState"))


def first_datagram() -> None:
    # One attempt only: the datagram that starts the service must itself be answered.
    res = wgsigc("127.0.0.1", str(PORT), b64(peer(0xA1)), str(SECRET_FILE), "40000", "--attempts", "1",
                 "--timeout", "15")
    check("first_datagram_starts_service_and_is_answered",
          res.returncode == 0 and "[Interface]" in res.stdout and prop("wgsigd.service", "ActiveState") == "active",
          f"rc={res.returncode} {res.stdout} {res.stderr}")
    pid = prop("wgsigd.service", "MainPID")
    uid = next((line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("Uid:")), "?")
    check("runs_as_dynamic_user", uid not in ("0", "?"), f"uid={uid}")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    check("allocator_environment_applied",
          b"PYTHONMALLOC=malloc" in environ and b"GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in environ,
          repr([e for e in environ if e.startswith((b"PYTHON", b"GLIBC"))]))
    fds = sorted(os.listdir(f"/proc/{pid}/fd"), key=int)
    sockets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in ("3", "4") if fd in fds]
    started = " ".join(e.get("MESSAGE", "") for e in journal("-u", "wgsigd.service") if "serving on" in
                       str(e.get("MESSAGE", "")) or "cannot attach" in str(e.get("MESSAGE", "")))
    check("socket_passes_known_sources_pair",
          len(sockets) == 2 and all(s.startswith("socket:") for s in sockets)
          and "(a pair: known sources first)" in started and "cannot attach" not in started,
          f"{sockets} {started!r}")
    status = prop("wgsigd.service", "StatusText")
    check("notify_status_text", re.match(r"1 groups, \d+ records, \d+ requests answered", status) is not None,
          status)


def journal_fields() -> None:
    entries = wait_for(lambda: [e for e in journal("-u", "wgsigd.service", f"MESSAGE_ID={MESSAGE_ID_REGISTERED}")
                                if e.get("PEER_KEY") == b64(peer(0xA1))])
    entry = entries[0] if entries else {}
    check("journal_registration_fields",
          entry.get("ENDPOINT") == "127.0.0.1:40000" and entry.get("GROUP") == "0" and entry.get("PRIORITY") == "6"
          and entry.get("SYSLOG_IDENTIFIER") == "wgsigd" and entry.get("_SYSTEMD_UNIT") == "wgsigd.service",
          json.dumps({k: v for k, v in entry.items() if not k.startswith("_") or k == "_SYSTEMD_UNIT"}))
    noise = {"CODE_ARGS", "PROCESS_NAME", "EXCEPTION_INFO", "MSG", "ARGS", "LEVELNAME", "MESSAGE_ID_"} & set(entry)
    check("journal_no_noise_fields", bool(entry) and not noise, str(sorted(entry)))

    # A request 10 minutes in the past: rejected (clock skew, logged at info level with REASON).
    from wgsig.client import GroupCredentials, build_request
    from wgsig.label import label_from_ns

    credentials = GroupCredentials(0, SECRET_FILE.read_bytes())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 40001))
        old = label_from_ns(time.time_ns() - 600 * 10**9)
        sock.sendto(build_request(credentials, peer(0x5C), old, 0, os.urandom), ("127.0.0.1", PORT))
    entries = wait_for(lambda: [e for e in journal("-u", "wgsigd.service", f"MESSAGE_ID={MESSAGE_ID_REJECTED}")
                                if e.get("PEER_KEY") == b64(peer(0x5C))])
    entry = entries[0] if entries else {}
    check("journal_rejection_fields",
          entry.get("REASON") == "clock_skew" and entry.get("ENDPOINT") == "127.0.0.1:40001"
          and entry.get("GROUP") == "0" and "SKEW" in entry,
          json.dumps({k: v for k, v in entry.items() if not k.startswith("_")}))
    everything = out("journalctl", "--no-pager", "-o", "json")
    secret = SECRET_FILE.read_bytes()
    leaked = [form for form in (secret.hex(), base64.b64encode(secret).decode()) if form in everything]
    check("journal_has_no_secret", bool(everything) and not leaked, str(leaked))


def idle_exit_and_reactivation() -> None:
    stopped = wait_for(lambda: prop("wgsigd.service", "ActiveState") == "inactive", timeout=IDLE_EXIT + 20)
    state = Path("/var/lib/private/wgsigd/records.state")
    check("idle_exit_saves_and_exits_0",
          bool(stopped) and prop("wgsigd.service", "Result") == "success"
          and prop("wgsigd.service", "ExecMainStatus") == "0" and state.is_file()
          and prop("wgsigd.socket", "ActiveState") == "active",
          f"state={prop('wgsigd.service', 'ActiveState')} result={prop('wgsigd.service', 'Result')}"
          f" status={prop('wgsigd.service', 'ExecMainStatus')} file={state.is_file()}")
    logged = journal("-u", "wgsigd.service", "MESSAGE=no datagram for 4 s: exiting (the socket unit keeps the port)")
    check("idle_exit_logged", bool(logged), "")

    # Five registrations sent at once while the service is down: they wait in the socket,
    # the first starts the service, and every one is answered with the record saved before.
    from wgsig.client import AnswerCollector, GroupCredentials, build_request
    from wgsig.label import label_from_ns

    credentials = GroupCredentials(0, SECRET_FILE.read_bytes())
    socks = []
    for i in range(5):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 40010 + i))
        sock.sendto(build_request(credentials, peer(0xB0 + i), label_from_ns(time.time_ns()), 0, os.urandom),
                    ("127.0.0.1", PORT))
        socks.append(sock)
    answered = 0
    for sock in socks:
        sock.settimeout(15)
        collector = AnswerCollector(credentials)
        try:
            while not collector.complete:
                collector.receive_datagram(sock.recv(4096))
        except TimeoutError:
            continue
        finally:
            sock.close()
        endpoints = {r.peer_id: r.endpoint for r in collector.records()}
        answered += endpoints.get(peer(0xA1)) == "127.0.0.1:40000"
    check("reactivation_answers_waiting_datagrams_with_saved_records", answered == 5, f"{answered}/5")


def daemon_reload_pair() -> None:
    """systemd matches a passed socket to its ListenDatagram= line by address on daemon-reload: with
    two identical lines it may reopen one. wgsigd must still get a pair and answer (and notice a
    changed order, which the detail reports)."""
    since = time.time() - 1
    reload = run("systemctl", "daemon-reload")
    restart = run("systemctl", "restart", "wgsigd.service")
    listening = out("ss", "-Hulnp", f"sport = :{PORT}").strip().splitlines()
    answered = 0
    for i in range(12):  # a known source, over 3 s: the order check needs 3 of its requests in an interval
        res = wgsigc("127.0.0.1", str(PORT), b64(peer(0xA1)), str(SECRET_FILE), "40000", "--timeout", "5")
        answered += res.returncode == 0
        time.sleep(0.25)
    messages = [str(e.get("MESSAGE", "")) for e in journal("-u", "wgsigd.service", since=since)]
    serving = [m for m in messages if "serving on" in m]
    swapped = any("reading it first" in m for m in messages)
    check("daemon_reload_keeps_pair", reload.returncode == 0 and restart.returncode == 0 and answered == 12
          and len(listening) == 2 and bool(serving) and "(a pair: known sources first)" in serving[-1]
          and not any("cannot attach" in m for m in messages),
          f"answered={answered}/12 sockets={len(listening)} swapped={swapped} {serving}")


def refresh_sees(expected: dict[bytes, str]) -> tuple[bool, str]:
    res = wgsigc("127.0.0.1", str(PORT), b64(peer(0xA1)), str(SECRET_FILE), "40003", "--timeout", "5")
    missing = [b64(k) for k, endpoint in expected.items()
               if f"PublicKey = {b64(k)}" not in res.stdout or f"Endpoint = {endpoint}" not in res.stdout]
    return res.returncode == 0 and not missing, f"rc={res.returncode} missing={missing} {res.stderr}"


def restart_and_reload() -> None:
    expected = {peer(0xB0 + i): f"127.0.0.1:{40010 + i}" for i in range(5)}
    first_pid = prop("wgsigd.service", "MainPID")
    restart = run("systemctl", "restart", "wgsigd.service")
    ok, detail = refresh_sees(expected)
    check("restart_keeps_records", restart.returncode == 0 and ok and prop("wgsigd.service", "MainPID") != first_pid,
          f"restart rc={restart.returncode} {detail}")
    # Reload: a new group (encrypted, id 7, same credential) is served without a restart.
    config = Path("/etc/wgsig/wgsigd.toml")
    config.write_text(config.read_text() + '\n[group.seven]\nid = 7\nencrypt = true\nsecret_file = "keys_zero.key"\n')
    since = time.time() - 1
    reload = run("systemctl", "reload", "wgsigd.service")
    reloaded = wait_for(lambda: [e for e in journal("-u", "wgsigd.service", since=since)
                                 if str(e.get("MESSAGE", "")).startswith("configuration reloaded")])
    ok, detail = refresh_sees(expected)
    encrypted = wgsigc("127.0.0.1", str(PORT), b64(peer(0xE1)), str(SECRET_FILE), "40030", "--encrypt",
                       "--group", "7", "--timeout", "5")
    check("reload_adds_group_keeps_records", reload.returncode == 0 and bool(reloaded) and ok
          and prop("wgsigd.service", "StatusText").startswith("2 groups")
          and encrypted.returncode == 0 and "[Interface]" in encrypted.stdout
          and prop("wgsigd.service", "ActiveState") == "active",
          f"reload rc={reload.returncode} status={prop('wgsigd.service', 'StatusText')} {detail}"
          f" encrypted rc={encrypted.returncode} {encrypted.stderr}")
    stop = run("systemctl", "stop", "wgsigd.service")
    saved = [e for e in journal("-u", "wgsigd.service", "--since=-20s")
             if re.fullmatch(r"saved \d+ records to /var/lib/wgsigd/records.state", str(e.get("MESSAGE")))]
    check("sigterm_saves_and_exits_0", stop.returncode == 0 and prop("wgsigd.service", "Result") == "success"
          and prop("wgsigd.service", "ExecMainStatus") == "0" and bool(saved),
          f"{prop('wgsigd.service', 'Result')} {prop('wgsigd.service', 'ExecMainStatus')} saved={bool(saved)}")


def ip_firewall() -> None:
    """IPAddressDeny=any is enforced here, and yet wgsigd (which has it) answered on the passed socket."""
    blocked = run("systemd-run", "--wait", "--pipe", "-q", "-p", "IPAddressDeny=any", "/usr/bin/python3", "-c",
                  "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))")
    if blocked.returncode == 0:
        print("CHECK ip_firewall_enforced_but_not_on_passed_socket SKIP no cgroup BPF firewall here", flush=True)
        return
    check("ip_firewall_enforced_but_not_on_passed_socket",
          "Operation not permitted" in blocked.stderr
          and "IPAddressDeny=any" in (UNIT_DIR / "wgsigd.service").read_text(),
          f"rc={blocked.returncode} {blocked.stderr[-300:]}")


def rejections_rate_limited() -> None:
    """With -v (drop-in), a flood of forged requests gives only a few debug entries."""
    dropin = Path("/etc/systemd/system/wgsigd.service.d")
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "verbose.conf").write_text(
        "[Service]\nExecStart=\nExecStart=/usr/bin/wgsigd --config /etc/wgsig/wgsigd.toml -v\n")
    run("systemctl", "daemon-reload")
    from wgsig.client import GroupCredentials, build_request
    from wgsig.label import label_from_ns

    forged = GroupCredentials(0, bytes(32))  # wrong secret: the MAC does not verify
    since = time.time() - 1
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(400):
            sock.sendto(build_request(forged, peer(0x70), label_from_ns(time.time_ns()), 1, os.urandom),
                        ("127.0.0.1", PORT))
            if i % 50 == 49:
                time.sleep(0.01)  # stay within the socket's receive buffer
    ok, detail = refresh_sees({peer(0xB0): "127.0.0.1:40010"})  # answered: the flood has been read
    elapsed = time.monotonic() - start
    time.sleep(1)
    entries = [e for e in journal("-u", "wgsigd.service", f"MESSAGE_ID={MESSAGE_ID_REJECTED}", since=since)
               if e.get("REASON") == "bad_mac"]
    bound = 10 + 10 * elapsed + 2  # wgsigd's limiter: a burst of 10, then 10 a second
    check("rejections_logged_at_debug_and_rate_limited",
          ok and 1 <= len(entries) <= bound and all(e.get("PRIORITY") == "7" for e in entries),
          f"{len(entries)} entries for 400 forged datagrams in {elapsed:.2f} s (bound {bound:.0f}); {detail}")
    (dropin / "verbose.conf").unlink()
    run("systemctl", "daemon-reload")


def timer_runs_wgsigc() -> None:
    Path("/etc/wgsig/wgsigc.toml").write_text("# test: the drop-in runs print mode and a capability probe\n")
    dropin = Path("/etc/systemd/system/wgsigc.service.d")
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "test.conf").write_text(
        "[Service]\nExecStart=\n"
        f"ExecStart=/usr/bin/wgsigc 127.0.0.1 {PORT} {b64(peer(0xC1))} %d/keys_zero.key 40020 --timeout 5\n"
        f"ExecStart=/usr/bin/python3 /usr/local/lib/wgsig-test/caps_probe.py %d/keys_zero.key {b64(peer(0xD1))}\n"
    )
    run("systemctl", "daemon-reload")
    start = run("systemctl", "restart", "wgsigc.timer")  # enabled earlier; its condition now holds
    # Finished: both ExecStart= commands ran (ExecMain* is set when the first one exits).
    ran = wait_for(lambda: prop("wgsigc.service", "ExecMainExitTimestampMonotonic") not in ("", "0")
                   and prop("wgsigc.service", "ActiveState") in ("inactive", "failed"), timeout=90)
    result = prop("wgsigc.service", "Result")
    logs = out("journalctl", "--no-pager", "-u", "wgsigc.service")
    check("timer_runs_wgsigc", start.returncode == 0 and bool(ran) and result == "success"
          and "[Interface]" in logs, f"result={result} {logs[-600:]}")
    def registrations() -> dict[str, str]:
        return {e.get("PEER_KEY", ""): e.get("ENDPOINT", "")
                for e in journal("-u", "wgsigd.service", f"MESSAGE_ID={MESSAGE_ID_REGISTERED}")}

    wait_for(lambda: {b64(peer(0xC1)), b64(peer(0xD1))} <= set(registrations()))
    registered = registrations()
    check("timer_run_registered_peer", registered.get(b64(peer(0xC1))) == "127.0.0.1:40020", str(registered))
    check("wgsigc_sandbox_allows_raw_socket_and_netlink",
          "PROBE OK" in logs and registered.get(b64(peer(0xD1))) == "127.0.0.1:51820", logs[-600:])
    check("wgsigc_sandbox_is_not_root", "uid=0 " not in logs and "uid=" in logs, "")
    timers = prop("wgsigc.timer", "TimersMonotonic")
    # The next run is due 30 s after the first one started; that start came up to 3 s
    # (RandomizedDelaySec=) after the first trigger.
    elapse = {name: _seconds(when) for name, when in re.findall(r"(\w+)=\S+ ; next_elapse=([^}]*?) ?}", timers)}
    period = elapse.get("OnUnitActiveUSec", 0) - elapse.get("OnActiveUSec", 0)
    check("timer_schedule", 30 <= period <= 35 and "OnUnitActiveUSec=30s" in timers and "OnActiveUSec=0" in timers
          and prop("wgsigc.timer", "AccuracyUSec") == "1s" and prop("wgsigc.timer", "RandomizedDelayUSec") == "3s"
          and prop("wgsigc.timer", "ActiveState") == "active", timers)


def _seconds(span: str) -> float:
    """systemd's time span text ("1h 25min 47.7s") in seconds."""
    units = {"d": 86400, "h": 3600, "min": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(d|h|min|ms|us|s)\b", span))


def main() -> int:
    install()
    sys.path.insert(0, str(DIST))
    phase("static", static_checks)
    phase("boot_order", boot_order)
    phase("unconfigured", unconfigured)
    phase("configure", configure)
    phase("first_datagram", first_datagram)
    phase("journal", journal_fields)
    phase("idle", idle_exit_and_reactivation)
    phase("restart", restart_and_reload)
    phase("firewall", ip_firewall)
    phase("ratelimit", rejections_rate_limited)
    phase("timer", timer_runs_wgsigc)
    phase("daemon_reload", daemon_reload_pair)  # last: it keeps wgsigd running, which the others do not expect
    return 0


if __name__ == "__main__":
    sys.exit(main())

