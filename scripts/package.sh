#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (installed if missing): the
# binary, the systemd units (packaging/systemd/, not enabled), a
# configuration example per role in /etc/clubcast (packaging/config/) and
# tuning/. Prints the .deb's path last.
#
# Usage: scripts/package.sh [--no-build]   (--no-build: package the
# release binary already in target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >&2
export PATH="$HOME/.cargo/bin:$PATH"
command -v dpkg-shlibdeps >/dev/null || {
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dpkg-dev >&2
}
cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked >&2
cargo deb "$@" 2>&1 | tail -n 1
