#!/usr/bin/env bash
# The swarm behind real Linux NAT routers in namespaces (tests/nat_rig.rs):
# 33 peers at 2 Mbit/s, 6 public, 18 behind four `masquerade` routers
# (endpoint-independent mapping), 6 behind two `masquerade fully-random`
# ones (symmetric), no hairpinning, and a late joiner of each class.
# Prints, per run, one line per class (continuity, slowest start, never
# started, uploads held, worst club share) and a summary:
# {"nat_rig":{"peers":..,"seconds":..,"continuity_min":..,
#  "eim_over_public_uploads":..,"eim_direct_links":..}}
#
# Usage: scripts/bench-nat.sh [RUNS] [SECONDS] [LATE_S]
# (defaults: 3 runs of 60 s, late joiners at 35 s). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
if [[ $(id -u) -ne 0 ]]; then
    echo "bench-nat.sh builds network namespaces: run it as root" >&2
    exit 1
fi
runs="${1:-3}"
export NAT_RIG_SECONDS="${2:-60}" NAT_RIG_LATE_S="${3:-35}"
cargo test --release --quiet --test nat_rig --no-run
for run in $(seq 1 "$runs"); do
    echo "run $run of $runs"
    cargo test --release --quiet --test nat_rig a_mix_behind_real_routers -- --nocapture 2>&1 |
        grep -E '^(class |\{"nat_rig"|.*panicked)' || true
done
