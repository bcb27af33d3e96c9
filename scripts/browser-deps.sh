#!/usr/bin/env bash
# Installs what the browser tests need, once: Debian's chromium (about
# 500 MB), Node.js with npm when missing, and playwright-core (pinned) in
# target/browser/node_modules. Prints that node_modules directory last.
# Needs root (or sudo) for the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PLAYWRIGHT_CORE=1.65.1

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo "installing: ${missing[*]}" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi
dir="$PWD/target/browser"
if [[ ! -f "$dir/node_modules/playwright-core/package.json" ]] ||
    ! grep -q "\"version\": \"$PLAYWRIGHT_CORE\"" "$dir/node_modules/playwright-core/package.json"; then
    mkdir -p "$dir"
    npm install --silent --no-audit --no-fund --prefix "$dir" "playwright-core@$PLAYWRIGHT_CORE" >&2
fi
echo "$dir/node_modules"
