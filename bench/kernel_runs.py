#!/usr/bin/env python3
"""What one kernel-mode wgsigc run costs, beside a shell doing the same netlink work.

    /usr/bin/python3 bench/kernel_runs.py [--repeat 5] [--compare DIR] [--profile]

Boots the project's QEMU VM (tests/vm/, real kernel WireGuard; needs root and the cached
image that ``sh scripts/test.sh`` builds), sets up the NAT lab of the VM tests (two peers
behind two NATs, one wgsigd) and measures, with bash's ``time`` (wall, user + system CPU of
the process and its children):

- a converging run: a's first run, which registers and writes b's endpoint
  (``converge_seconds = 0``: the run itself, not the wait for b);
- an idle run: every peer healthy, nothing to write, the shipped ``converge_seconds`` (25 s),
  ``$STATE_DIRECTORY`` set as wgsigc.service sets it (after one unmeasured run: the timer's
  runs find the configuration parsed): also counted are the datagrams a sends to the server
  (the polling for a quick tunnel must add none once every peer is healthy) and the modules
  the run imports;
- the baseline: ``wg show wg0 dump`` plus ``wg set wg0 peer B endpoint ...`` (the same read
  and write, without any signalling), one after each idle run (the host's load varies);
- with ``--compare DIR`` (another wgsig tree, e.g. ``git archive main | tar -x -C DIR``), that
  tree's idle run right after each of this tree's: a before and after within one boot (through
  that tree's ``packaging/bin/wgsigc``, or setuptools' console script where it has none, as its
  package installed it).

Every run starts as wgsigc.service starts it: ``/usr/bin/wgsigc`` (``packaging/bin/wgsigc``, its
``#!`` line included), the tree's modules on ``PYTHONPATH``.

The VM is software-emulated (about 14 times slower than the host for Python, more when the
host is busy): the figures compare the three, they are not a small board's.
"""

from __future__ import annotations

import argparse
import compileall
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.vmlib import ensure_image, run_in_qemu, write_payload  # noqa: E402

GUEST = r"""
set -u
cd /srv/payload
. ./natlab.sh
natlab_setup pub
export PYTHONPATH=/srv/payload/src
head -c 32 /dev/urandom > /tmp/secret; chmod 600 /tmp/secret
(cd /tmp && ip netns exec pub python3 -m wgsigd /tmp/secret 1223 >/tmp/wgsigd.log 2>&1 &)
for x in a b; do wg genkey > /tmp/$x.key; wg pubkey < /tmp/$x.key > /tmp/$x.pub; done
for x in a b; do
    case $x in a) o=b; ip=10.99.0.1;; b) o=a; ip=10.99.0.2;; esac
    ip -n $x link add wg0 type wireguard
    ip netns exec $x wg set wg0 private-key /tmp/$x.key listen-port 51820 \
        peer "$(cat /tmp/$o.pub)" allowed-ips "10.99.0.$([ $o = a ] && echo 1 || echo 2)/32"
    ip -n $x addr add $ip/24 dev wg0; ip -n $x link set wg0 up
    printf 'state_directory = "/tmp/state-%s"\n[interface.wg0]\nservers = ["192.0.2.1:1223"]\n' $x > /tmp/$x.toml
    echo 'secret_file = "/tmp/secret"' >> /tmp/$x.toml
    { cat /tmp/$x.toml; echo "converge_seconds = 0"; } > /tmp/$x-once.toml
done
ip netns exec nata nft add table ip count
ip netns exec nata nft add chain ip count post '{ type filter hook postrouting priority 0; }'
ip netns exec nata nft add rule ip count post ip daddr 192.0.2.1 udp dport 1223 counter
sent() { ip netns exec nata nft list chain ip count post | sed -n 's/.*counter packets \([0-9]*\).*/\1/p'; }
for i in $(seq 50); do ip netns exec pub ss -Hlun | grep -q ':1223 ' && break; sleep 0.2; done
TIMEFORMAT='%R %U %S'
measure() {  # measure NAME CMD...: prints "FIGURE NAME wall user sys"
    name=$1; shift
    t=$( { time "$@" >/tmp/out.log 2>&1; } 2>&1 ); rc=$?
    echo "FIGURE $name $t rc=$rc"
}
# Each peer's own StateDirectory= ($STATE_DIRECTORY, as wgsigc.service sets it): where the
# parsed configuration is cached (the records stay in state_directory).
mkdir -m 0700 /tmp/sd-a /tmp/sd-b
export STATE_DIRECTORY=/tmp/sd-a
STATE_DIRECTORY=/tmp/sd-b ip netns exec b python3 -m wgsigc --config /tmp/b-once.toml >/dev/null 2>&1
measure converging ip netns exec a /srv/payload/wgsigc --config /tmp/a-once.toml
cat /tmp/out.log
STATE_DIRECTORY=/tmp/sd-b ip netns exec b python3 -m wgsigc --config /tmp/b-once.toml >/dev/null 2>&1
for i in $(seq 60); do
    ip netns exec a wg show wg0 latest-handshakes | awk '$2 > 0 {f=1} END {exit !f}' && break; sleep 0.25
done
ip netns exec a ping -c1 -W2 10.99.0.2 >/dev/null && echo "tunnel up"
ip netns exec a python3 -m wgsigc --config /tmp/a.toml >/dev/null 2>&1  # parses a.toml (the timer's runs then do not)
endpoint=$(ip netns exec a wg show wg0 endpoints | awk '{print $2}')
baseline() { wg show wg0 dump >/dev/null && wg set wg0 peer "$(cat /tmp/b.pub)" endpoint "$endpoint"; }
# idle runs and baselines in turn, so that both see the same load on the host
for i in $(seq __REPEAT__); do
    before=$(sent)
    measure idle ip netns exec a /srv/payload/wgsigc --config /tmp/a.toml  # as wgsigc.service runs it (its #! line)
    echo "FIGURE idle_datagrams $(( $(sent) - before ))"
    cp /tmp/out.log /tmp/idle.log
    __COMPARE__
    measure baseline ip netns exec a bash -c "$(declare -f baseline); endpoint=$endpoint; baseline"
done
cat /tmp/idle.log
ip netns exec a python3 -S -X importtime /srv/payload/wgsigc --config /tmp/a.toml 2>/tmp/imports.log >/dev/null
echo "FIGURE modules $(grep -c '^import time:' /tmp/imports.log) $(grep -c '| *pyroute2' /tmp/imports.log)"
grep -q 'pyroute2.ndb' /tmp/imports.log && echo "FIGURE imports_ndb 1" || echo "FIGURE imports_ndb 0"
grep -q 'wgsig.metrics' /tmp/imports.log && echo "FIGURE imports_metrics 1" || echo "FIGURE imports_metrics 0"
__PROFILE__
"""

# /usr/bin/wgsigc as setuptools writes it (and wgsig's .deb installed it until packaging/bin/)
SETUPTOOLS_SCRIPT = """#!/usr/bin/python3
# -*- coding: utf-8 -*-
import re
import sys
from wgsigc.cli import main
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(main())
"""

# --compare DIR: the same idle run of another source tree, right after each of this tree's
COMPARE = ("PYTHONPATH=/srv/payload/src-compare measure idle_compare"
           " ip netns exec a /srv/payload/wgsigc-compare --config /tmp/a.toml")

# --profile: where an idle run's time goes (the interpreter's own start, imports, functions)
PROFILE = r"""
for flags in "" "-I" "-I -S"; do
    for i in 1 2 3; do measure "python3_$(echo "$flags" | tr -d ' -')" python3 $flags -c pass; done
done
# what an idle run costs beside its own work: ip netns exec, the standard library it needs, its imports
for i in 1 2 3; do
    measure netns_pass ip netns exec a python3 -c pass
    measure stdlib_floor ip netns exec a python3 -c \
        'import _socket, _json, _sha256, binascii, ipaddress, struct, select'
    measure imports_only ip netns exec a python3 -c 'import wgsigc.cli, wgsigc.kernelmode'
    measure idle_module ip netns exec a python3 -m wgsigc --config /tmp/a.toml
    measure idle_site ip netns exec a python3 /srv/payload/wgsigc --config /tmp/a.toml  # site loaded (no -S)
    measure idle_setuptools ip netns exec a /srv/payload/wgsigc-setuptools --config /tmp/a.toml
done
echo "PROFILE imports (self us, cumulative us, module), the 40 slowest by self time:"
sed -n 's/^import time: *\([0-9]*\) | *\([0-9]*\) | \(.*\)$/\1 \2 \3/p' /tmp/imports.log | sort -rn | head -40
echo "PROFILE imports, top level (cumulative):"
grep -E '^import time: +[0-9]+ \| +[0-9]+ \| [^ ]' /tmp/imports.log | sort -t'|' -k2 -rn | head -25
ip netns exec a python3 -m cProfile -o /tmp/idle.prof -m wgsigc --config /tmp/a.toml >/dev/null 2>&1
python3 -c "import pstats; s = pstats.Stats('/tmp/idle.prof'); s.sort_stats('cumulative').print_stats(30)
s.sort_stats('cumulative').print_stats('/srv/payload/src', 40); s.sort_stats('tottime').print_stats(30)" | cut -c1-160
"""


def figures(output: str, name: str) -> list[list[float]]:
    rows = []
    for match in re.finditer(rf"^FIGURE {name} (.*)$", output, re.M):
        rows.append([float(v) for v in match[1].split() if re.fullmatch(r"-?[0-9.]+", v)])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="idle runs and baseline runs (default 5)")
    parser.add_argument("--compare", metavar="DIR", type=Path,
                        help="also time idle runs of the wgsig tree in DIR (e.g. main's, from git archive), each"
                             " right after one of this tree's: a before/after within one boot")
    parser.add_argument("--profile", action="store_true",
                        help="also the interpreter's start, the slowest imports and a cProfile of an idle run")
    args = parser.parse_args()
    ensure_image()
    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp)
        for package in ("wgsig", "wgsigd", "wgsigc"):
            shutil.copytree(ROOT / package, payload / "src" / package, ignore=shutil.ignore_patterns("__pycache__"))
            if args.compare:
                shutil.copytree(args.compare / package, payload / "src-compare" / package,
                                ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "tests" / "natlab.sh", payload / "natlab.sh")
        # the idle runs start as wgsigc.service starts them: /usr/bin/wgsigc, packaging/bin's script
        shutil.copy(ROOT / "packaging" / "bin" / "wgsigc", payload / "wgsigc")
        compare_script = args.compare / "packaging" / "bin" / "wgsigc" if args.compare else None
        (payload / "wgsigc-compare").write_text(
            compare_script.read_text() if compare_script and compare_script.exists() else SETUPTOOLS_SCRIPT)
        (payload / "wgsigc-setuptools").write_text(SETUPTOOLS_SCRIPT)
        for script in ("wgsigc-compare", "wgsigc-setuptools"):
            (payload / script).chmod(0o755)
        compileall.compile_dir(payload, quiet=2)  # as the package's postinst does
        (payload / "runs.sh").write_text(GUEST.replace("__REPEAT__", str(args.repeat)).replace(
            "__PROFILE__", PROFILE if args.profile else "").replace("__COMPARE__", COMPARE if args.compare else ""))
        write_payload(payload, "exec bash /srv/payload/runs.sh")
        rc, out = run_in_qemu(payload, timeout=300 + 60 * args.repeat)
    if rc != 0 or "tunnel up" not in out:
        print(out)
        print(f"kernel_runs: the VM run failed (rc {rc}, tunnel {'up' if 'tunnel up' in out else 'not up'})")
        return 1

    def line(name: str, rows: list[list[float]]) -> None:
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] + r[2] for r in rows)
        print(f"| {name} | {len(rows)} | {wall:.2f} | {cpu:.2f} |")

    print("| run (VM) | runs | wall s (median) | CPU s, user + system (median) |")
    print("|---|---:|---:|---:|")
    line("converging: a's first run, writes b's endpoint", figures(out, "converging"))
    line("idle: every peer healthy", figures(out, "idle"))
    line("baseline: wg show dump + wg set endpoint", figures(out, "baseline"))
    if args.compare:
        line(f"idle, {args.compare} (each run right after one of this tree's)", figures(out, "idle_compare"))
    baseline = statistics.median(r[1] + r[2] for r in figures(out, "baseline"))
    for name in ("idle", "idle_compare") if args.compare else ("idle",):
        cpu = statistics.median(r[1] + r[2] for r in figures(out, name))
        print(f"{name}: {cpu / baseline:.2f} times the baseline's CPU time")
    sent = [int(r[0]) for r in figures(out, "idle_datagrams")]
    ((modules, pyroute2_modules),) = figures(out, "modules")
    print(f"idle run: datagrams to the server per run {sent}; {modules:.0f} modules imported, "
          f"{pyroute2_modules:.0f} of them pyroute2's; pyroute2's NDB imported: "
          f"{'yes' if figures(out, 'imports_ndb')[0][0] else 'no'}; metrics code imported: "
          f"{'yes' if figures(out, 'imports_metrics')[0][0] else 'no'}")
    if args.profile:
        for flags in ("", "I", "IS"):
            line(f"python3 {'-' + ' -'.join(flags) if flags else ''} -c pass", figures(out, f"python3_{flags}"))
        line("ip netns exec a python3 -c pass", figures(out, "netns_pass"))
        line("the standard library an idle run needs (_socket, _json, _sha256, binascii, ipaddress, struct, select)",
             figures(out, "stdlib_floor"))
        line("import wgsigc.cli, wgsigc.kernelmode", figures(out, "imports_only"))
        line("idle run as python3 -m wgsigc (runpy)", figures(out, "idle_module"))
        line("idle run through packaging/bin/wgsigc with the site module (python3 SCRIPT, no -S)",
             figures(out, "idle_site"))
        line("idle run through setuptools' console script (imports re)", figures(out, "idle_setuptools"))
        print(out[out.find("PROFILE imports"):])
    return 0


if __name__ == "__main__":
    sys.exit(main())
