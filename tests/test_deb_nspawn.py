"""The Debian package under systemd as PID 1 (systemd-nspawn --boot, Debian bookworm).

Real .debs built by scripts/build-deb.sh, installed with apt. Two container runs:

* host network (``network=True``): the test image's copies of the runtime dependencies are
  purged first, so ``apt-get install ./wgsig_*.deb`` must fetch them from Debian;
* private network (only ``lo``, so port checks see nothing of the host): installing opens no
  port and enables nothing; the shipped example configuration plus ``wgsigd genkey`` and
  ``systemctl enable --now wgsigd.socket`` give a server that answers wgsigc (print mode) on
  127.0.0.1:1223; an upgrade to a newer version restarts the running daemon and keeps its
  records; ``apt remove`` keeps /etc/wgsig (and takes wgsigd.prom out of node-exporter's
  directory), ``apt purge`` removes configuration and state; wgsigd.prom under the hardened unit:
  Debian's prometheus-node-exporter (its real .deb, installed after wgsig) creates its directory
  as root's, and wgsigd writes there (the package's ACL for the group wgsig-metrics), until purge
  takes the ACL entry and the group away.

Without a container, the built package's contents: the bash completions where bash-completion
loads them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.debpkg import REPO, SYSTEM_PATH, UPGRADE_VERSION, VERSION, GuestRun, build_deb, download_deb
from tests.vmlib import run_in_nspawn, write_payload

pytestmark = pytest.mark.vm

DEPENDENCIES = "python3-cryptography python3-pyroute2 python3-systemd"

# Each check prints "CHECK <name> <rc>"; the script never stops early, so one run reports
# every step. Diagnostics go to the same output.
COMMON = r"""
set +e
export DEBIAN_FRONTEND=noninteractive
check() { name=$1; shift; echo "--- $name: $*"; "$@"; echo "CHECK $name $?"; }
systemctl is-system-running --wait >/dev/null
installed() { for p; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || return 1; done; }
none_installed() { for p; do ! installed "$p" || return 1; done; }
apt_get() { apt-get -y -q "$@" >/tmp/apt.log 2>&1; rc=$?; grep -v "^(Reading database" /tmp/apt.log; return $rc; }
"""

DEPENDENCY_SCRIPT = COMMON + r"""
check purge_image_copies apt_get purge __DEPENDENCIES__
check deps_absent none_installed __DEPENDENCIES__
apt-get update -q >/dev/null
check install apt_get install ./debs/wgsig___VERSION___all.deb
check deps_installed installed __DEPENDENCIES__
check wgsigd_runs wgsigd --help
check wgsigc_runs wgsigc --help
check imports python3 -c 'import systemd.daemon, pyroute2, cryptography'
"""

LIFECYCLE_SCRIPT = COMMON + r"""
udp_sockets() { ss -Hulnp | sort; }
before=$(udp_sockets)
check install apt_get install ./debs/wgsig___VERSION___all.deb
check units_installed systemctl cat wgsigd.socket wgsigd.service wgsigc.service wgsigc.timer
C=/usr/share/bash-completion/completions
check completions_load bash --norc --noprofile -c ". $C/wgsigc && . $C/wgsigd && complete -p wgsigc wgsigd"
check nothing_enabled sh -c '! systemctl is-enabled -q wgsigd.socket && ! systemctl is-enabled -q wgsigc.timer'
check nothing_active sh -c '! systemctl is-active wgsigd.socket wgsigd.service wgsigc.timer wgsigc.service'
check no_new_udp_socket test "$(udp_sockets)" = "$before"
# Started by hand without configuration, the units stay inert (ConditionPathExists=).
systemctl start wgsigd.socket wgsigc.timer
check condition_keeps_inert sh -c '! ss -Huln | grep -q ":1223 " && ! systemctl is-active -q wgsigc.timer'

# The administrator's steps (README "Install"): a secret, the example configuration, enable.
check genkey wgsigd genkey /etc/wgsig/keys/group0.key
check example_config cp /usr/share/doc/wgsig/examples/wgsigd.toml /etc/wgsig/wgsigd.toml
check enable systemctl enable --now wgsigd.socket
check listening sh -c 'ss -Huln | grep ":1223 "'

KEY_A=$(python3 -c 'import base64; print(base64.b64encode(bytes(range(1, 33))).decode())')
KEY_B=$(python3 -c 'import base64; print(base64.b64encode(bytes(range(2, 34))).decode())')
KEY_C=$(python3 -c 'import base64; print(base64.b64encode(bytes(range(3, 35))).decode())')
SECRET=/etc/wgsig/keys/group0.key
check register_a wgsigc 127.0.0.1 1223 "$KEY_A" $SECRET 40000
wgsigc 127.0.0.1 1223 "$KEY_B" $SECRET 40002 >/tmp/b.out
check register_b_sees_a grep -q "PublicKey = $KEY_A" /tmp/b.out
cat /tmp/b.out
check service_active systemctl is-active wgsigd.service

# Metrics under the shipped, hardened unit (DynamicUser=, ProtectSystem=strict, ReadWritePaths=-...).
# Debian's prometheus-node-exporter, installed after wgsig, ships its directory root's, mode 0755;
# wgsig's trigger gives the group wgsig-metrics (the units' SupplementaryGroups=) an ACL entry on
# it, so wgsigd writes wgsigd.prom there (at start, the first write), mode 0644.
# (copied out of the read-only payload, whose directories apt's _apt user cannot read)
cp debs/node-exporter/prometheus-node-exporter_*.deb /tmp/ && chmod 0644 /tmp/prometheus-node-exporter_*.deb
check node_exporter_install apt_get install /tmp/prometheus-node-exporter_*.deb
# (its mode bits now show the ACL's mask, rwx; the owner's group keeps r-x)
check node_exporter_dir_is_roots sh -c 'test "$(stat -c %U:%G /var/lib/prometheus/node-exporter)" = root:root &&
    getfacl -cp /var/lib/prometheus/node-exporter | grep -qx "group::r-x"' 
getfacl -p /var/lib/prometheus/node-exporter
check metrics_acl_granted sh -c 'getfacl -cp /var/lib/prometheus/node-exporter | grep -qx "group:wgsig-metrics:rwx"'
systemctl restart wgsigd.service
for i in 1 2 3 4 5 6 7 8 9 10; do test -e /var/lib/prometheus/node-exporter/wgsigd.prom && break; sleep 1; done
ls -l /var/lib/prometheus/node-exporter/
check metrics_written grep -q '^wgsigd_answers_total{group="0"} ' /var/lib/prometheus/node-exporter/wgsigd.prom
check metrics_mode test "$(stat -c %a /var/lib/prometheus/node-exporter/wgsigd.prom)" = 644
pid_before=$(systemctl show -P MainPID wgsigd.service)
echo "MainPID before upgrade: $pid_before"

check upgrade apt_get install ./debs/wgsig___UPGRADE___all.deb
check upgraded_version test "$(dpkg-query -W -f='${Version}' wgsig)" = "__UPGRADE__"
check still_enabled systemctl is-enabled wgsigd.socket
# The upgrade restarted the running daemon (try-restart) ...
systemctl is-active -q wgsigd.service || sleep 1
pid_after=$(systemctl show -P MainPID wgsigd.service)
echo "MainPID after upgrade: $pid_after"
check daemon_restarted sh -c "[ '$pid_after' != 0 ] && [ '$pid_after' != '$pid_before' ]"
# ... and the records came back: a refresh-only request (odd port) registers nothing.
wgsigc 127.0.0.1 1223 "$KEY_C" $SECRET 40001 >/tmp/c.out
cat /tmp/c.out
check records_kept sh -c "grep -q 'PublicKey = $KEY_A' /tmp/c.out && grep -q 'PublicKey = $KEY_B' /tmp/c.out"
journalctl -q -u wgsigd.service -u wgsigd.socket --no-pager | tail -n 20

check state_saved sh -c 'ls -A /var/lib/private/wgsigd/ /var/lib/wgsigd/ | grep -q .'
check remove apt_get remove wgsig
check config_kept test -f /etc/wgsig/wgsigd.toml -a -f /etc/wgsig/keys/group0.key
check metrics_removed test ! -e /var/lib/prometheus/node-exporter/wgsigd.prom
check stopped_on_remove sh -c '! systemctl is-active wgsigd.socket wgsigd.service'
check port_closed sh -c '! ss -Huln | grep -q ":1223 "'
check config_files_state test "$(dpkg-query -W -f='${Status}' wgsig)" = "deinstall ok config-files"

check purge apt_get purge wgsig
check config_gone test ! -e /etc/wgsig
check state_gone sh -c 'test ! -e /var/lib/wgsigd && test ! -e /var/lib/private/wgsigd && test ! -e /var/lib/wgsig'
check metrics_acl_and_group_gone sh -c '! getfacl -cp /var/lib/prometheus/node-exporter | grep -q wgsig-metrics &&
    ! getent group wgsig-metrics'
check no_enable_symlink sh -c '! ls /etc/systemd/system/*/wgsigd.socket /etc/systemd/system/*/wgsigc.timer 2>/dev/null'
check package_gone sh -c '! dpkg-query -W wgsig 2>/dev/null'
# A second install after a purge is a clean first install again.
check reinstall apt_get install ./debs/wgsig___VERSION___all.deb
check reinstall_inert sh -c '! systemctl is-enabled -q wgsigd.socket && test ! -e /etc/wgsig/wgsigd.toml'
check purge_again apt_get purge wgsig
"""


def _script(template: str) -> str:
    return (
        template.replace("__DEPENDENCIES__", DEPENDENCIES)
        .replace("__VERSION__", VERSION)
        .replace("__UPGRADE__", UPGRADE_VERSION)
    )


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("debs")
    start = time.monotonic()
    build_deb(out)
    build_deb(out, UPGRADE_VERSION)
    download_deb("prometheus-node-exporter", out / "node-exporter")
    print(f"\n[two .deb builds with lintian: {time.monotonic() - start:.1f} s]")
    return out


def test_deb_ships_the_bash_completions(debs: Path, tmp_path: Path) -> None:
    """packaging/bash-completion/<command>, as a plain file where Debian's bash-completion loads it
    on demand (no container needed: the built package's contents)."""
    deb = debs / f"wgsig_{VERSION}_all.deb"
    env = {"PATH": SYSTEM_PATH}
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], env=env, capture_output=True, text=True, check=True).stdout
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], env=env, check=True)
    for command in ("wgsigc", "wgsigd"):
        path = f"usr/share/bash-completion/completions/{command}"
        entry = next((line for line in listing.splitlines() if line.endswith(f" ./{path}")), None)
        assert entry is not None and entry.startswith("-rw-r--r-- root/root "), listing
        assert (tmp_path / path).read_bytes() == (REPO / "packaging" / "bash-completion" / command).read_bytes()


def test_deb_ships_commands_that_load_only_the_program(debs: Path, tmp_path: Path) -> None:
    """/usr/bin/wgsigc and wgsigd are packaging/bin's scripts, not setuptools' console scripts
    (which import re at every start); the packaged wgsigc runs and imports no re, enum or
    argparse on the unit's command line (the built package's contents, run on the host)."""
    deb = debs / f"wgsig_{VERSION}_all.deb"
    env = {"PATH": SYSTEM_PATH}
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], env=env, check=True)
    for command in ("wgsigc", "wgsigd"):
        installed = tmp_path / "usr" / "bin" / command
        assert installed.read_bytes() == (REPO / "packaging" / "bin" / command).read_bytes()
        assert installed.stat().st_mode & 0o777 == 0o755
    done = subprocess.run(["/usr/bin/python3", "-X", "importtime", str(tmp_path / "usr/bin/wgsigc"),
                           "--config", str(tmp_path / "missing.toml")],
                          env={**env, "PYTHONPATH": str(tmp_path / "usr/lib/python3/dist-packages")},
                          capture_output=True, text=True, timeout=60)
    said = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 6 and len(said) == 1 and "missing.toml does not exist" in said[0], done.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "wgsigc.cli" in imported and not imported & {"re", "enum", "argparse"}, sorted(imported)


def _payload(tmp_path: Path, debs: Path, script: str) -> Path:
    payload = write_payload(tmp_path / "p", _script(script))
    shutil.copytree(debs, payload / "debs")
    return payload


@pytest.fixture(scope="module")
def lifecycle(debs: Path, tmp_path_factory: pytest.TempPathFactory) -> GuestRun:
    payload = _payload(tmp_path_factory.mktemp("lifecycle"), debs, LIFECYCLE_SCRIPT)
    start = time.monotonic()
    rc, out = run_in_nspawn(payload, timeout=300)
    print(f"\n[nspawn package lifecycle: {time.monotonic() - start:.1f} s]")
    assert rc == 0, out
    return GuestRun(out)


def test_apt_install_pulls_dependencies_from_debian(debs: Path, tmp_path: Path) -> None:
    payload = _payload(tmp_path, debs, DEPENDENCY_SCRIPT)
    start = time.monotonic()
    rc, out = run_in_nspawn(payload, timeout=400, network=True)
    print(f"\n[nspawn apt install with dependencies: {time.monotonic() - start:.1f} s]")
    assert rc == 0, out
    run = GuestRun(out)
    run.check("purge_image_copies", "deps_absent", "install", "deps_installed")
    run.check("wgsigd_runs", "wgsigc_runs", "imports")


def test_install_enables_nothing_and_opens_no_port(lifecycle: GuestRun) -> None:
    lifecycle.check("install", "units_installed", "nothing_enabled", "nothing_active")
    lifecycle.check("no_new_udp_socket", "condition_keeps_inert")


def test_installed_bash_completions_load(lifecycle: GuestRun) -> None:
    lifecycle.check("completions_load")


def test_configured_socket_answers_wgsigc(lifecycle: GuestRun) -> None:
    lifecycle.check("genkey", "example_config", "enable", "listening")
    lifecycle.check("register_a", "register_b_sees_a", "service_active")


def test_metrics_under_the_hardened_unit(lifecycle: GuestRun) -> None:
    lifecycle.check("node_exporter_install", "node_exporter_dir_is_roots", "metrics_acl_granted")
    lifecycle.check("metrics_written", "metrics_mode", "metrics_removed", "metrics_acl_and_group_gone")


def test_upgrade_restarts_daemon_and_keeps_records(lifecycle: GuestRun) -> None:
    lifecycle.check("upgrade", "upgraded_version", "still_enabled", "daemon_restarted", "records_kept")


def test_remove_keeps_configuration(lifecycle: GuestRun) -> None:
    lifecycle.check("state_saved", "remove", "config_kept", "stopped_on_remove", "port_closed")
    lifecycle.check("config_files_state")


def test_purge_removes_configuration_and_state(lifecycle: GuestRun) -> None:
    lifecycle.check("purge", "config_gone", "state_gone", "no_enable_symlink", "package_gone")
    lifecycle.check("reinstall", "reinstall_inert", "purge_again")
