#!/usr/bin/env bash
# The swarm on an impaired network of real processes in namespaces: clean
# links, 5% loss, 2% loss with 40 ms +- 15 ms of delay, a third of the
# peers at 1 Mbit/s upload, a third with clocks 30 s off, and a 1 s outage
# of one peer's link. One JSON line per scenario:
# {"scenario":..,"peers":..,"continuity_min":..,"continuity_mean":..,
#  "startup_ms_max":..,"dup_ratio":..,"repair_overhead":..,
#  "drops_per_peer_min":..,"bans_added":..,...}
#
# With --relay, a super-peer relay with its BLOCKs on AF_XDP joins every
# scenario on a clean uplink, and each line adds what its data plane did
# ("relay_blocks_forwarded","relay_copies","relay_forged","relay_subscribers").
#
# Usage: scripts/bench-network.sh [--peers N] [--duration S] [--kbps K] [--relay] [SCENARIO...]
# (defaults: 24 peers, 60 s, 2000 kbit/s, no relay, every scenario). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
if [[ $(id -u) -ne 0 ]]; then
    echo "bench-network.sh builds network namespaces: run it as root" >&2
    exit 1
fi
cargo build --release --quiet --bin clubcast --example bench_network
exec target/release/examples/bench_network "$@"
