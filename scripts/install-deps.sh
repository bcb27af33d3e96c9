#!/usr/bin/env bash
# Installs the system packages clubcast needs to build and test, once.
# Runs `apt-get update` only when something is missing, so repeated calls
# cost nothing. Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

# gcc: the C parts of the blake3 crate; pkg-config: -sys crates;
# iproute2: the netns/veth test topologies.
# The relay's XDP program (bpf/, built by build.rs): clang compiles it to
# BPF, llvm brings the BPF tools (llvm-strip, llvm-objdump) to inspect it,
# and linux-libc-dev has the kernel UAPI headers it includes. libelf-dev and
# zlib1g-dev: the libbpf that libbpf-sys vendors and links statically. m4 and
# make (with clang, and binutils from gcc): libxdp-sys builds libxdp and its
# BPF dispatcher for xsk-rs. Both builds honour CLANG. libbpf-dev is not
# needed: libbpf-sys vendors libbpf, and xsk-rs's `use_cc_build` skips
# libxdp's own configure, the one step that wants it.
# ffmpeg (with ffprobe): the media end-to-end tests push and play real
# streams with it, and `clubcast demo --media testsrc` pushes a test pattern.
# ethtool: tuning/apply.sh sets NIC queues, rings and flow steering with it.
# nftables, iptables and faketime: the impaired-network rig (src/swarm/rig.rs)
# drops with nftables, queues datagrams for delay with iptables' NFQUEUE,
# and skews hosts' clocks with faketime.
PACKAGES=(gcc pkg-config iproute2 clang llvm linux-libc-dev libelf-dev zlib1g-dev m4 make ffmpeg ethtool nftables iptables faketime)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo "installing: ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    [[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || {
    echo "cargo not found: install a Rust toolchain (rustup) first" >&2
    exit 1
}
