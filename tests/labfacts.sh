# What a lab in a guest observed, as machine-readable lines for the Python tests to judge
# (tests/labfacts.py reads them). POSIX sh; sourced by tests/kernel_lab.sh, tests/x1_lab.sh and
# the story of tests/test_deb_vm.py. The shell does what only the guest can (run wgsigc, read the
# kernel, ping); the tests decide what the values must be.
#
#   fact NAME VALUE...           FACT NAME=VALUE (newlines in VALUE written as \n)
#   fact_run NAME RC OUTPUT      NAME.rc and NAME.out: a wgsigc run's exit code and output
#   fact_endpoint NAME NS IF PUB the endpoint interface IF in namespace NS ("" = this one) holds for
#                                the peer whose key is in file PUB ("" when the peer is not there)
#   fact_ping NAME NS ADDR [S]   "answered" or "no answer": one ping from NS to ADDR (waiting S s, 2);
#                                without an answer also NAME.why, what `wg show all` said in NS

fact() {
    _fact_name=$1; shift
    printf 'FACT %s=%s\n' "$_fact_name" "$(printf '%s' "$*" | awk 'NR > 1 {printf "\\n"} {printf "%s", $0}')"
}

fact_run() { fact "$1.rc" "$2"; fact "$1.out" "$3"; }

_fact_in() { _fact_ns=$1; shift; if [ -n "$_fact_ns" ]; then ip netns exec "$_fact_ns" "$@"; else "$@"; fi; }

fact_endpoint() {
    fact "$1" "$(_fact_in "$2" wg show "$3" endpoints 2>/dev/null | awk -v k="$(cat "$4")" '$1 == k {print $2}')"
}

fact_ping() {  # without an answer, NAME.why: what WireGuard in NS held then (handshakes, endpoints, bytes)
    if _fact_in "$2" ping -c1 -W"${4:-2}" "$3" >/dev/null 2>&1; then fact "$1" answered; else
        fact "$1" "no answer"; fact "$1.why" "$(_fact_in "$2" wg show all 2>&1)"; fi
}
