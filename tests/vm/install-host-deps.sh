#!/bin/sh
# Install the host packages the VM/nspawn test harness needs (Debian host, root).
# Only packages that are missing are installed; nothing happens when all are present.
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive

PKGS="qemu-system-x86 qemu-utils debootstrap systemd-container wireguard-tools e2fsprogs iproute2 nftables"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-host-deps: need root to install:$missing" >&2
    exit 1
fi
echo "install-host-deps: installing:$missing" >&2
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
