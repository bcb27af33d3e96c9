#!/usr/bin/env bash
# End-to-end relay fan-out bench: the AF_XDP worker vs the product's
# forwarding core on kernel UDP (recvmmsg, one sendmmsg per block) vs the
# raw AF_XDP TX ceiling, then the worker's latency at half load with the
# worker on a core of its own, side by side in one run on one
# veth topology (two unnamed network namespaces made with
# unshare(CLONE_NEWNET): nothing to clean up afterwards).
#
# A sender thread replays genuinely signed blocks (971-byte payloads,
# 16-block batches, clubs 0..11) as fast as the relay absorbs them; by
# default the relay serves all 12 clubs with 20 subscribers each (240), and
# a tc ingress program on the subscribers' veth end counts and drops the
# copies (--sink socket delivers them to UDP sockets instead).
# It prints figures per phase and one JSON line per backend; the LAST line
# is one JSON object: {"xdp_over_udp_egress":...,"xdp_over_txonly_ceiling":...,
# "lat_us_p99_half_load":...}.
#
# Caveat: on a 2-core machine the relay, the sender, the subscriber drain
# and the veth receive work (which runs on the transmitting CPU) share the
# same two cores, so absolute rates are lower than on dedicated cores and
# vary between runs; compare the backends within one run.
#
# Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN). Without it: says why
# and exits 1 (with CI=true too).
#
# Usage: scripts/bench-relay.sh [--seconds S] [--peers N] [--clubs C]
#        [--warmup-ms MS] [--pool-blocks B] [--window W] [--batch B]
#        [--full-stream] [--sink tc|socket]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "bench-relay: needs root for AF_XDP, XDP programs and network namespaces" \
        "(run: sudo -E $0 $*)" >&2
    exit 1
fi
bash scripts/install-deps.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --example bench_relay
exec cargo run --release --quiet --example bench_relay -- "$@"
