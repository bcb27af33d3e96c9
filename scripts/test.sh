#!/usr/bin/env bash
# The test command: installs what the build needs, then runs every test
# (unit, property, known-answer, CLI) in release mode, where the property
# tests that sign and verify thousands of batches run quickly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --release --all-targets
