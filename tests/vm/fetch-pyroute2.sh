#!/bin/sh
# fetch-pyroute2.sh [VERSION]
# Download pyroute2's pure-Python wheel (default 0.9.5, >= 0.9.3 has the fixed WireGuard
# peer flags) with the HOST's pip into $CACHE/wheels and print the wheel's path. A payload
# can ship the unpacked wheel and put it on PYTHONPATH inside the guest (bookworm has 0.7.2).
set -eu
PIP_PYTHON=$(command -v python3)   # the host's python (may be pyenv's), before lib.sh resets PATH
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
VERSION=${1:-${WGSIG_PYROUTE2_VERSION:-0.9.5}}
DEST=$CACHE/wheels
mkdir -p "$DEST"
for w in "$DEST"/pyroute2-"$VERSION"-*.whl; do
    [ -f "$w" ] && { echo "$w"; exit 0; }
done
# shellcheck disable=SC2086
${WGSIG_PIP:-"$PIP_PYTHON" -m pip} download -q --no-deps --only-binary=:all: "pyroute2==$VERSION" -d "$DEST" >&2 ||
    die "pip download pyroute2==$VERSION failed"
for w in "$DEST"/pyroute2-"$VERSION"-*.whl; do
    [ -f "$w" ] && { echo "$w"; exit 0; }
done
die "no wheel for pyroute2 $VERSION"
