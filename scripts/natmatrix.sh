#!/bin/sh
# The NAT behaviour matrix: boot the project's VM, connect two peers for every pair of NAT
# behaviours, print the table (README "NAT behaviours").  --update-readme writes it there.
# Needs what scripts/test.sh installs (root, a Debian 12 host): run that once first.
set -eu
cd "$(dirname "$0")/.."
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin   # Debian's python3, not pyenv's
export PATH
exec python3 -m tests.natmatrix "$@"
