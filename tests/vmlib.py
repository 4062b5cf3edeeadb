"""Run test scripts in a QEMU VM (real kernel WireGuard) or in systemd-nspawn --boot.

Both boot one cached Debian bookworm root filesystem built by ``tests/vm/build-rootfs.sh``
(``$WGSIG_VM_CACHE``, default ``/var/cache/wgsig-test``). A *payload* is a directory with a
``run.sh``; inside the guest it is at ``/srv/payload`` (the working directory), runs as root
and its stdout+stderr come back as the output. ``$WGSIG_ARTIFACTS`` names a directory whose
files are copied back to ``RESULT_DIR/artifacts`` when a result directory is given.

    payload = tmp_path / "p"
    write_payload(payload, "ip link add wg0 type wireguard && wg show wg0")
    rc, out = run_in_qemu(payload, timeout=60)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
VM_DIR = TESTS / "vm"
CACHE = Path(os.environ.get("WGSIG_VM_CACHE", "/var/cache/wgsig-test"))
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Extra seconds on top of a run's timeout for boot and shutdown (QEMU TCG is slow).
_MARGIN = {"qemu": 240, "nspawn": 90}

_image_ready = False


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    """Skip the test, except in CI where a missing environment is a failure."""
    if _in_ci():
        pytest.fail(f"VM test environment unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _host_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = SYSTEM_PATH  # Debian tools break under pyenv's python
    return env


def ensure_image() -> None:
    """Install host packages if needed and build the cached root filesystem (idempotent).

    Skips the calling test when this host cannot do it (not Linux, not root, no apt/dpkg,
    host packages not installable); fails instead when ``CI=true``. A build that fails on a
    capable host is a test failure.
    """
    global _image_ready
    if _image_ready:
        return
    if not sys.platform.startswith("linux"):
        _unavailable("VM tests need a Linux host")
    if os.geteuid() != 0:
        _unavailable("VM tests need root (debootstrap, systemd-nspawn)")
    if shutil.which("dpkg", path=SYSTEM_PATH) is None:
        _unavailable("VM tests need a Debian host (dpkg, apt-get)")
    deps = _run_vm_script("install-host-deps.sh")
    if deps.returncode != 0:
        _unavailable(f"cannot install host packages: {deps.stderr.strip()[-500:]}")
    build = _run_vm_script("build-rootfs.sh")
    if build.returncode != 0:
        pytest.fail(
            f"tests/vm/build-rootfs.sh failed ({build.returncode}):\n{build.stderr[-3000:]}",
            pytrace=False,
        )
    _image_ready = True


def _run_vm_script(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VM_DIR / name)], env=_host_env(), capture_output=True, text=True)


def write_payload(payload_dir: Path, script: str) -> Path:
    """Create ``payload_dir/run.sh`` (``#!/bin/sh`` + ``set -e`` + *script*); return the dir."""
    payload_dir.mkdir(parents=True, exist_ok=True)
    run_sh = payload_dir / "run.sh"
    run_sh.write_text("#!/bin/sh\nset -e\n" + script.strip() + "\n")
    run_sh.chmod(0o755)
    return payload_dir


def write_unit_guest_payload(payload_dir: Path, guest: str, extra: dict[str, str] | None = None) -> Path:
    """A payload that runs the guest script ``tests/GUEST`` under systemd (run_in_nspawn, run_in_qemu):
    the project's packages in ``src/``, the units of packaging/systemd/ in ``units/``, the guest
    script beside tests/nspawn_guest_helpers.py, and each ``extra`` file of tests/ under its new
    name; return the dir."""
    for package in ("wgsig", "wgsigd", "wgsigc"):
        shutil.copytree(ROOT / package, payload_dir / "src" / package, ignore=shutil.ignore_patterns("__pycache__"))
    (payload_dir / "units").mkdir()
    for unit in sorted((ROOT / "packaging" / "systemd").iterdir()):
        if unit.suffix in (".socket", ".service", ".timer"):
            shutil.copy(unit, payload_dir / "units" / unit.name)
    for name, copy_as in {guest: guest, "nspawn_guest_helpers.py": "nspawn_guest_helpers.py", **(extra or {})}.items():
        shutil.copy(TESTS / name, payload_dir / copy_as)
    return write_payload(payload_dir, f"exec /usr/bin/python3 /srv/payload/{guest}")


def fetch_pyroute2(version: str = "0.9.5") -> Path:
    """Download (once, with the host's pip) pyroute2's wheel into the cache; return its path."""
    res = subprocess.run(
        [str(VM_DIR / "fetch-pyroute2.sh"), version],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        _unavailable(f"cannot fetch pyroute2 {version}: {res.stderr.strip()[-500:]}")
    return Path(res.stdout.strip().splitlines()[-1])


def add_pyroute2(payload_dir: Path, version: str = "0.9.5") -> str:
    """Unpack pyroute2 *version* into ``payload_dir/pylib``.

    Returns the guest path to put on PYTHONPATH: ``/srv/payload/pylib``.
    """
    with zipfile.ZipFile(fetch_pyroute2(version)) as wheel:
        wheel.extractall(payload_dir / "pylib")
    return "/srv/payload/pylib"


def _run(
    kind: str,
    payload_dir: Path,
    timeout: int,
    network: bool,
    result_dir: Path | None,
    reboot: bool = False,
) -> tuple[int, str]:
    ensure_image()
    if not (payload_dir / "run.sh").is_file():
        raise FileNotFoundError(payload_dir / "run.sh")
    script = VM_DIR / ("run-qemu.sh" if kind == "qemu" else "run-nspawn.sh")
    with tempfile.TemporaryDirectory(prefix=f"wgsig-{kind}-") as tmp:
        results = result_dir if result_dir is not None else Path(tmp)
        cmd = [str(script)]
        if network:
            cmd.append("--net")
        if reboot:
            cmd.append("--reboot")
        cmd += [str(payload_dir), str(results), str(timeout)]
        limit = (timeout + _MARGIN[kind]) * (2 if reboot else 1)  # the timeout is per boot
        # In a session of its own, so that the whole run (the script, timeout, QEMU or nspawn) can be
        # ended together: at the limit, or by stop_all() when pytest stops before a background lab.
        proc = subprocess.Popen(cmd, env=_host_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        _running.add(proc)
        try:
            _, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return 124, f"[vmlib: {kind} run did not end within {limit} s]"
        finally:
            _running.discard(proc)
        log = results / "output.log"
        output = log.read_text(errors="replace") if log.exists() else ""
        if proc.returncode in (124, 125) and stderr:
            console = results / "console.log"
            tail = console.read_text(errors="replace")[-4000:] if console.exists() else ""
            output += f"\n[vmlib: {stderr.strip()}]\n[console tail]\n{tail}"
        return proc.returncode, output


_running: set[subprocess.Popen[str]] = set()  # VM and container runs under way (any thread)


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` (timeout(1) puts QEMU in a process group of its own)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rpartition(")")[2].split()[3]) == sid:
                members.append(int(stat.parent.name))
    return members


def _stop(proc: subprocess.Popen[str]) -> None:
    """End a run's whole session (its script, timeout and QEMU or nspawn) and reap the script:
    SIGTERM first, so that the script's trap removes its work directory, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, None)):
        for pid in _session(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            proc.wait(timeout=wait)  # not communicate(): the run's own thread may be reading its pipes
            return
        except subprocess.TimeoutExpired:
            continue


def stop_all() -> None:
    """End every run still under way: pytest is stopping (tests/conftest.py), perhaps before the
    background lane's lab (tests/vmlane.py) ended."""
    for proc in list(_running):
        _stop(proc)


def run_in_qemu(
    payload_dir: Path,
    timeout: int = 120,
    network: bool = False,
    result_dir: Path | None = None,
    reboot: bool = False,
) -> tuple[int, str]:
    """Run ``payload_dir/run.sh`` in a QEMU TCG VM with Debian's cloud kernel.

    Returns ``(exit code, stdout+stderr)``; 124 on timeout, 125 if the guest gave no result
    (then the output ends with the harness message and the serial console's tail).
    *network* gives the guest QEMU user networking (apt can reach the Debian mirror).
    *result_dir* keeps output.log, rc, console.log and artifacts/ there.
    *reboot* lets run.sh ask for one real reboot of the guest (create ``$WGSIG_REBOOT_REQUEST``
    and exit 0): run.sh then runs again on the second boot with ``WGSIG_STAGE=2``, the guest's
    writes kept, its output appended; *timeout* is per boot.
    """
    return _run("qemu", Path(payload_dir), timeout, network, result_dir, reboot)


def run_in_nspawn(
    payload_dir: Path,
    timeout: int = 60,
    network: bool = False,
    result_dir: Path | None = None,
) -> tuple[int, str]:
    """Run ``payload_dir/run.sh`` in ``systemd-nspawn --boot`` (systemd as PID 1).

    Default: ``--private-network`` (only ``lo``, CAP_NET_ADMIN). ``network=True`` shares the
    host's network instead (no CAP_NET_ADMIN) so apt can install a .deb's dependencies.
    Returns ``(exit code, stdout+stderr)`` like :func:`run_in_qemu`.
    """
    return _run("nspawn", Path(payload_dir), timeout, network, result_dir)
