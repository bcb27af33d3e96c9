#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60):
# the wire parser (every message), Elias-gamma bit fields, the media
# header, MPEG-TS ingest, the FLV packer (RTMP message bodies), the RTMP
# handshake and chunk stream, batch verification with the proof ledger, and
# the HLS segmenter with its FLV to MPEG-TS muxer.
# Each starts from its committed corpus in fuzz/corpus/. Installs
# cargo-fuzz on the nightly toolchain if it is missing. Crashes are saved
# under fuzz/artifacts/ and fail the script. CI runs it for 10 s a target.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
secs="${1:-60}"
shift || true
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(wire_message bitfield media_header ts_packets flv_tags rtmp_session verify_block hls_segments)
fi
for t in "${targets[@]}"; do
    echo "fuzzing $t for ${secs}s"
    cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -max_len=4096
done
