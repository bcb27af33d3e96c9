#!/usr/bin/env bash
# The main job: builds clubcast and runs a whole swarm: a tracker, a source
# with a synthetic 2 Mbit/s feed, a super-peer relay and 60 peers, each on
# its own socket, for 20 s. As root the relay runs on AF_XDP in a network
# namespace of its own, joined to the swarm's namespace by veth; without
# root everything runs on loopback and the relay on kernel UDP (it says
# so). Prints progress once a second and a summary table, and writes the
# summary JSON to target/demo-summary.json.
#
# Usage: scripts/demo.sh [extra `clubcast demo` flags, e.g. --peers 200 --duration 30]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet
exec target/release/clubcast demo --peers 60 --duration 20 --bitrate-kbps 2000 --relay \
    --summary-json target/demo-summary.json "$@"
