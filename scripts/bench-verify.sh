#!/usr/bin/env bash
# Measures block verification: one block at a time vs a complete batch at a
# time, against raw BLAKE3 on 1 KiB and 16 KiB inputs, plus signature checks
# per block, all in one run. The last line is one JSON object.
#
# Usage: scripts/bench-verify.sh [BATCH_BLOCKS]   (default 16)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --example bench_verify
exec target/release/examples/bench_verify "${1:-16}"
