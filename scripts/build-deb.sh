#!/bin/sh
# Build the wgsig .deb from a checkout, out of tree, with Debian's own tools.
#
#   scripts/build-deb.sh [--out DIR] [--version VERSION] [--no-lintian] [SRC]
#
# SRC (default: this checkout) is copied into a temporary directory and built
# there with dpkg-buildpackage, so no build artifact lands in the source tree.
# From a git work tree the copy holds the tracked and the untracked, not
# ignored files (the working tree as it is, committed or not).
# --version adds a changelog entry VERSION to the copy (upgrade tests).
# Missing build dependencies are installed with apt-get (needs root).
# Prints the path of the built .deb on its last line; lintian's findings go
# to stderr and any error or warning makes the script fail.
set -eu

PATH=/usr/sbin:/usr/bin:/sbin:/bin   # pyenv's python3 breaks pybuild
export PATH
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV

OUT=.
VERSION=
LINTIAN=1
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --version) VERSION=$2; shift 2 ;;
        --no-lintian) LINTIAN=0; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "build-deb.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
SRC=${1:-$(dirname "$0")/..}
SRC=$(cd "$SRC" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

BUILD_DEPS="debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools dpkg-dev build-essential"
[ "$LINTIAN" = 1 ] && BUILD_DEPS="$BUILD_DEPS lintian"
missing=
for pkg in $BUILD_DEPS; do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "build-deb.sh: installing build dependencies:$missing" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    # shellcheck disable=SC2086  # word splitting wanted
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wgsig-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/wgsig"
if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked files deleted in the work tree are left out.
    # shellcheck disable=SC2016  # $f expands in the inner shell
    (cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
        xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
        tar --null -T - -cf -) | tar -xf - -C "$WORK/wgsig"
else
    cp -a "$SRC/." "$WORK/wgsig"
fi
cd "$WORK/wgsig"

if [ -n "$VERSION" ]; then
    # The new entry must be newer than the last one (lintian, SOURCE_DATE_EPOCH).
    last=$(dpkg-parsechangelog -S Timestamp)
    now=$(date +%s)
    [ "$now" -gt "$last" ] || now=$((last + 1))
    {
        printf 'wgsig (%s) unstable; urgency=medium\n\n' "$VERSION"
        printf '  * Test build.\n\n'
        printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -S Maintainer)" "$(date -R -u -d "@$now")"
        cat debian/changelog
    } > debian/changelog.new
    mv debian/changelog.new debian/changelog
fi

dpkg-buildpackage -us -uc -b >"$WORK/build.log" 2>&1 || {
    tail -n 60 "$WORK/build.log" >&2
    echo "build-deb.sh: dpkg-buildpackage failed (log above)" >&2
    exit 1
}
CHANGES=$(ls "$WORK"/wgsig_*.changes)
if [ "$LINTIAN" = 1 ]; then
    # Errors and warnings fail the build; informational tags are shown only.
    lintian --info --fail-on error,warning "$CHANGES" >&2 || {
        echo "build-deb.sh: lintian reported errors or warnings" >&2
        exit 1
    }
fi
DEB=$(ls "$WORK"/wgsig_*_all.deb)
cp "$DEB" "$OUT/"
echo "$OUT/$(basename "$DEB")"
