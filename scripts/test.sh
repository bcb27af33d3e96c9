#!/usr/bin/env bash
# The test command: installs what the build needs, then runs every test
# (unit, property, known-answer, command-line; benches and examples are
# built and run once in test mode) in release mode, where the property
# tests that sign and verify thousands of batches run quickly. Ends with one
# summary line: "tests: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

log=$(mktemp -t clubcast-test.XXXXXX)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --all-targets 2>&1 | tee "$log" || status=$?
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
if [[ $status -ne 0 && $failed -eq 0 ]]; then
    echo "cargo test failed before all tests ran (exit $status)" >&2
    failed=1
fi
echo "tests: $passed passed, $failed failed"
exit "$status"
