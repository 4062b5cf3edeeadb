#!/bin/sh
# A two-minute tour of wgsig on one machine, on loopback only:
# wgsigd on 127.0.0.1 with a fresh secret in a temporary directory, three
# peers registering with wgsigc in print mode, then the resulting table.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
unset PYTHONHOME VIRTUAL_ENV
export PYTHONPATH="$ROOT" PYTHONDONTWRITEBYTECODE=1 DEBIAN_FRONTEND=noninteractive

for p in python3 python3-cryptography; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        SUDO=
        if [ "$(id -u)" != 0 ]; then
            command -v sudo >/dev/null || { echo "demo.sh: run as root, or install sudo" >&2; exit 1; }
            SUDO="sudo env DEBIAN_FRONTEND=noninteractive"
        fi
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends python3 python3-cryptography >/dev/null
        break
    fi
done

DIR=$(mktemp -d /tmp/wgsig-demo.XXXXXX)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
wgsigd() { python3 -m wgsigd "$@"; }
wgsigc() { python3 -m wgsigc "$@"; }
key() { python3 -c "import base64,os; print(base64.b64encode(os.urandom(32)).decode())"; }

echo "### 1. A fresh group secret:  wgsigd genkey $DIR/group.key"
wgsigd genkey "$DIR/group.key"
ls -l "$DIR/group.key"

cat > "$DIR/wgsigd.toml" <<TOML
listen = "127.0.0.1"
port = $PORT
state_directory = "$DIR/state"

[group.demo]
id = 0
secret_file = "$DIR/group.key"
TOML
echo
echo "### 2. The server:  wgsigd --config $DIR/wgsigd.toml   (listening on 127.0.0.1:$PORT)"
python3 -m wgsigd --config "$DIR/wgsigd.toml" 2>"$DIR/wgsigd.log" &
SERVER_PID=$!
sleep 1

i=0
for name in alice bob carol; do
    i=$((i + 1))
    eval "KEY_$name=\$(key)"
    eval "k=\$KEY_$name"
    lport=$((51818 + 2 * i))
    echo
    echo "### 3.$i $name registers from port $lport:  wgsigc 127.0.0.1 $PORT <$name's public key> group.key $lport"
    wgsigc 127.0.0.1 "$PORT" "$k" "$DIR/group.key" "$lport"
    sleep 0.05
done

echo
echo "### 4. The table, as alice sees it when she refreshes from an odd port (51821):"
# shellcheck disable=SC2154
wgsigc 127.0.0.1 "$PORT" "$KEY_alice" "$DIR/group.key" 51821

kill "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=
echo
echo "### 5. What the server logged (it saved its records on exit):"
cat "$DIR/wgsigd.log"
