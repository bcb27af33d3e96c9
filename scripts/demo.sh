#!/usr/bin/env bash
# The main job: builds clubcast, creates a source key in a scratch
# directory, runs the end-to-end self-check (sign a synthetic feed, send it
# through the wire format and the verifier, forge blocks and see them
# rejected), then measures verification speed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet

work=$(mktemp -d -t clubcast-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== clubcast keygen"
target/release/clubcast keygen --out "$work/source.key"
echo
echo "== clubcast selfcheck"
target/release/clubcast selfcheck --key "$work/source.key"
echo
echo "== verification speed (scripts/bench-verify.sh)"
bash scripts/bench-verify.sh
