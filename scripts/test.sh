#!/bin/sh
# Run every test of wgsig on a Debian 12 machine, installing what they need.
#
#   scripts/test.sh [--quick] [PYTEST_ARGS...]
#
# Installs (only what is missing) Debian's Python packages that wgsig ships
# with, the VM/nspawn harness' host packages and the .deb build tools, builds
# or reuses the cached test root filesystem, lints (ruff, mypy in a venv from
# PyPI) and runs pytest with Debian's /usr/bin/python3.  --quick skips the
# tests marked vm (QEMU and systemd-nspawn) and the .deb build.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin   # Debian's python3, not pyenv's
export PATH
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
export DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1

QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi

SUDO=
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "test.sh: run as root, or install sudo" >&2; exit 1; }
    SUDO="sudo env DEBIAN_FRONTEND=noninteractive"
fi

# What the code and the tests import, as Debian bookworm ships it; dpkg-dev and build-essential
# build the .deb (dpkg-buildpackage checks for build-essential), python3-pip fetches pyroute2's wheel
# for the VM tests, bash-completion is the helpers tests/test_completion.py runs the completions with.
PKGS="python3 python3-venv python3-pip python3-pytest python3-hypothesis python3-cryptography
python3-systemd python3-pyroute2 systemd gcc iproute2 procps nftables dpkg-dev build-essential
bash-completion python3-miniupnpc"
missing=
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "test.sh: installing:$missing" >&2
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Linters from PyPI, pinned, in a venv of Debian's Python.
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
LINT=${WGSIG_LINT_VENV:-$HOME/.cache/wgsig/lint-venv}
if [ ! -x "$LINT/bin/ruff" ] || [ ! -x "$LINT/bin/mypy" ]; then
    python3 -m venv --system-site-packages "$LINT"  # mypy sees the Debian packages
    "$LINT/bin/pip" install -q "ruff==0.8.6" "mypy==1.14.1"
fi
# Binaries the tests run but that must not be installed (installing starts a service and creates
# directories): unpacked from Debian's .deb into a cache. The test that needs one is skipped with a
# reason if the download fails.
#   prometheus-node-exporter: tests/test_metrics_node_exporter.py checks that it reads the metrics
#   miniupnpd-nftables: tests/test_portmap_miniupnpd.py runs it on a namespace NAT
fetch_deb() {  # PACKAGE DIR
    (cd "$2" && apt-get download -qq "$1" >/dev/null 2>&1 && dpkg-deb -x "$1"_*.deb . && rm -f "$1"_*.deb)
}
unpack_deb() {  # PACKAGE DIR BINARY
    [ -x "$2/$3" ] && return 0
    mkdir -p "$2"
    # stale package lists (nothing else was missing, so no update ran): update once and retry
    fetch_deb "$1" "$2" || { $SUDO apt-get update -qq && fetch_deb "$1" "$2"; } ||
        echo "test.sh: could not fetch $1; its test will be skipped" >&2
}
NODE_EXPORTER_DIR=${WGSIG_NODE_EXPORTER_CACHE:-$HOME/.cache/wgsig/node-exporter}
unpack_deb prometheus-node-exporter "$NODE_EXPORTER_DIR" usr/bin/prometheus-node-exporter
WGSIG_NODE_EXPORTER=${WGSIG_NODE_EXPORTER:-$NODE_EXPORTER_DIR/usr/bin/prometheus-node-exporter}
MINIUPNPD_DIR=${WGSIG_MINIUPNPD_CACHE:-$HOME/.cache/wgsig/miniupnpd}
unpack_deb miniupnpd-nftables "$MINIUPNPD_DIR" usr/sbin/miniupnpd
export WGSIG_NODE_EXPORTER
if [ -z "${WGSIG_MINIUPNPD:-}" ] && [ -x "$MINIUPNPD_DIR/usr/sbin/miniupnpd" ]; then
    WGSIG_MINIUPNPD=$MINIUPNPD_DIR/usr/sbin/miniupnpd
    export WGSIG_MINIUPNPD
fi

echo "== ruff" >&2
"$LINT/bin/ruff" check wgsig wgsigd wgsigc
echo "== mypy" >&2
"$LINT/bin/mypy"

if [ "$QUICK" = 0 ]; then
    $SUDO sh tests/vm/install-host-deps.sh
    echo "== test root filesystem (cached in ${WGSIG_VM_CACHE:-/var/cache/wgsig-test})" >&2
    $SUDO sh tests/vm/build-rootfs.sh
    set -- "$@"
else
    set -- -m "not vm" "$@"
fi

echo "== pytest" >&2
exec python3 -m pytest -p no:cacheprovider -ra "$@"
