#!/usr/bin/env bash
# What a forged-BLOCK flood costs the AF_XDP relay's host, per datagram,
# read from a CPU profile rather than from the kernel's 4 ms softirq ticks.
#
# Runs the relay integration test (tests/relay_swarm.rs: a relay on AF_XDP
# serving 40 viewers over veth; mid-run a stranger sends it 20,000 forged
# BLOCKs a second for 4 s from a UDP socket, then 20,000 a second for 4 s
# injected into the veth as xdp_frames under the address of one of the
# relay's uploaders (the source while it is one), without the block tag the
# relay gave it; such
# frames reach the relay's XDP program as a NIC driver's would; the XDP
# sender gate drops them all, as unknown senders and wrong tags) under
# `perf record -a -k CLOCK_MONOTONIC`. The test prints its quiet window and
# its two flood windows in CLOCK_MONOTONIC seconds; this script compares
# the sampled CPU time of kernel functions in each flood window with the
# quiet one and prints, per forged datagram and for each flood:
#   net_rx_action     all receive softirq work (the veth's poll and the rest)
#   veth_poll         the relay veth's receive: copying the sender's skb into
#                     a page with XDP headroom, running the program, dropping
#   skb_pp_cow_data   that copy alone (veth does it for every skb a socket
#                     sent; a NIC, like the injected flood, hands XDP a
#                     page it wrote itself)
#   steer_blocks      the relay's XDP program
# Each figure is (flood - quiet, scaled to the flood's length) / datagrams.
# The last line is one JSON object with the figures of both floods.
#
# Usage: scripts/flood-cost.sh [perf sampling Hz, default 4000]
# Needs root (the test's XDP programs and namespaces) and perf (installed
# with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "flood-cost: needs root for XDP, AF_XDP and network namespaces" >&2
    exit 1
fi
hz=${1:-4000}
bash scripts/install-deps.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v perf > /dev/null; then
    apt-get update -q && apt-get install -y -q linux-perf
fi
bin=$(cargo test --release --test relay_swarm --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$bin" ] || { echo "flood-cost: no relay_swarm test binary built" >&2; exit 1; }
work=$(mktemp -d -t clubcast-flood.XXXXXX)
trap 'rm -rf "$work"' EXIT
perf record -q -a -g -k CLOCK_MONOTONIC -F "$hz" -o "$work/perf.data" -- \
    "$bin" --nocapture > "$work/test.log" 2>&1 || {
    tail -20 "$work/test.log" >&2
    echo "flood-cost: the relay test failed" >&2
    exit 1
}
grep -E '^flood' "$work/test.log"
sent=$(sed -n 's/^flood: \([0-9]*\) forged BLOCKs.*/\1/p' "$work/test.log")
read -r q0 q1 f0 f1 i0 i1 < <(sed -n \
    's/^flood windows (CLOCK_MONOTONIC s): quiet \([0-9.]*\) \([0-9.]*\) flood \([0-9.]*\) \([0-9.]*\) injected \([0-9.]*\) \([0-9.]*\)$/\1 \2 \3 \4 \5 \6/p' \
    "$work/test.log")
[ -n "${sent:-}" ] && [ -n "${i1:-}" ] || { echo "flood-cost: no flood windows in the test's output" >&2; exit 1; }
injected=$(sed -n 's/.* then \([0-9]*\) injected as xdp_frames$/\1/p' "$work/test.log")

# Sampled nanoseconds of each function (with its callees) in one window.
window_ns() {
    perf report -i "$work/perf.data" --time "$1,$2" --children --sort sym \
        -g none --stdio 2> /dev/null | awk '
        /^# Event count/ { total = $NF }
        $1 ~ /%$/ {
            sym = $NF; pct = $1; sub(/%/, "", pct)
            if (sym == "net_rx_action" || sym == "veth_poll" || sym == "skb_pp_cow_data") ns[sym] = pct / 100 * total
            if (sym ~ /_steer_blocks$/) ns["steer_blocks"] = pct / 100 * total
        }
        END { printf "%.0f %.0f %.0f %.0f\n", ns["net_rx_action"], ns["veth_poll"], ns["skb_pp_cow_data"], ns["steer_blocks"] }'
}
read -r qa qb qc qd < <(window_ns "$q0" "$q1")
# Per datagram of a flood window: its samples minus the quiet window's,
# scaled to the flood's length.
per_datagram() { # name count from to
    local a b c d
    read -r a b c d < <(window_ns "$3" "$4")
    awk -v name="$1" -v n="$2" -v q0="$q0" -v q1="$q1" -v f0="$3" -v f1="$4" \
        -v qa="$qa" -v qb="$qb" -v qc="$qc" -v qd="$qd" -v a="$a" -v b="$b" -v c="$c" -v d="$d" 'BEGIN {
        k = (f1 - f0) / (q1 - q0)
        printf "%s: per forged datagram (%d sent, %.2f s, perf samples minus the quiet window):\n", name, n, f1 - f0 > "/dev/stderr"
        printf "  net_rx_action   %5.0f ns\n  veth_poll       %5.0f ns\n  skb_pp_cow_data %5.0f ns\n  steer_blocks    %5.0f ns\n",
            (a - qa * k) / n, (b - qb * k) / n, (c - qc * k) / n, (d - qd * k) / n > "/dev/stderr"
        printf "\"%s\":{\"net_rx_ns\":%.0f,\"veth_poll_ns\":%.0f,\"veth_copy_ns\":%.0f,\"xdp_prog_ns\":%.0f}",
            name, (a - qa * k) / n, (b - qb * k) / n, (c - qc * k) / n, (d - qd * k) / n
    }'
}
socket=$(per_datagram socket "$sent" "$f0" "$f1")
frames=$(per_datagram xdp_frames "$injected" "$i0" "$i1")
echo "{$socket,$frames}"
