# shellcheck shell=sh disable=SC2034  # variables are used by the scripts that source this file
# Shared shell helpers for tests/vm/*.sh (sourced, POSIX sh).
# Debian/host tools misbehave under pyenv's python: use the system PATH only.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
VM_DIR=$(cd "$(dirname "$0")" && pwd)
CACHE=${WGSIG_VM_CACHE:-/var/cache/wgsig-test}
ROOTFS=$CACHE/rootfs
IMAGE=$CACHE/image.ext4
KERNEL=$CACHE/vmlinuz
INITRD=$CACHE/initrd.img
STAMP=$CACHE/stamp

die() { echo "${0##*/}: $*" >&2; exit 1; }

# apt_uri SUITE: first URI of this machine's apt sources (one-line or deb822) serving SUITE.
apt_uri() {
    suite=$1
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == s) { print $i; exit } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '
            function flush() { if (isdeb && uri != "" && hit) { print uri; done = 1; exit } isdeb = 0; uri = ""; hit = 0 }
            /^[ \t]*$/ { flush(); next }
            /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1 }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) hit = 1 }
            /^Enabled:[ \t]*no/ { isdeb = 0 }
            END { if (!done) flush() }' "$f"
    done
}

debian_mirror() {
    m=${WGSIG_DEBIAN_MIRROR:-$(apt_uri bookworm | head -n1)}
    [ -n "$m" ] || die "no Debian bookworm mirror in /etc/apt/sources.list* (set WGSIG_DEBIAN_MIRROR)"
    echo "${m%/}"
}
